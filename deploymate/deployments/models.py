"""Deployments, their releases (full configuration snapshots), activity and templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from deploymate.core.db import Base, UTCDateTime, utcnow


class Deployment(Base):
    """The desired configuration of one container service; `current_release_id` is what serves."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    server_id: Mapped[int | None] = mapped_column(
        ForeignKey("servers.id"), default=None, index=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    image: Mapped[str] = mapped_column(String(512))
    internal_port: Mapped[int]
    external_port: Mapped[int | None] = mapped_column(default=None)  # None: behind the proxy
    env: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret_env: Mapped[str | None] = mapped_column(
        Text, default=None
    )  # Fernet token of a JSON object
    command: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    restart_policy: Mapped[str] = mapped_column(String(32), default="unless-stopped")
    health_check: Mapped[dict[str, Any]] = mapped_column(default=dict)
    memory_limit: Mapped[str | None] = mapped_column(String(16), default=None)
    cpu_limit: Mapped[float | None] = mapped_column(default=None)
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    tls: Mapped[str] = mapped_column(String(16), default="auto")
    volumes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    required_env: Mapped[list[str]] = mapped_column(JSON, default=list)
    smoke: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    drain_seconds: Mapped[float] = mapped_column(default=10.0)
    # The container:port the target's proxy sends this deployment's domains to; set at the
    # switch (before the release is recorded), so the proxy config rendered from the records is
    # right at every moment.
    routed_to: Mapped[str | None] = mapped_column(String(200), default=None)
    smoke_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # A service of an app environment on one server (None: a deployment of its own).
    app_id: Mapped[int | None] = mapped_column(default=None, index=True)
    app_environment: Mapped[str | None] = mapped_column(String(64), default=None)
    app_service: Mapped[str | None] = mapped_column(String(40), default=None)
    status: Mapped[str] = mapped_column(String(16), default="deploying")
    status_message: Mapped[str | None] = mapped_column(Text, default=None)
    current_release_id: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Release(Base):
    """One deploy: the image pinned by ID and every setting that ran, so rollback restores all."""

    __tablename__ = "releases"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    number: Mapped[int]
    reason: Mapped[str] = mapped_column(String(16))  # create | redeploy | rollback
    image: Mapped[str] = mapped_column(String(512))
    image_id: Mapped[str | None] = mapped_column(String(128), default=None)
    repo_digest: Mapped[str | None] = mapped_column(String(600), default=None)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    container_name: Mapped[str | None] = mapped_column(String(128), default=None)
    created_by: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    rollback_of: Mapped[int | None] = mapped_column(default=None)
    log: Mapped[dict[str, Any]] = mapped_column(
        default=dict
    )  # {"lines": [...]}: steps, container logs


class DeploymentEvent(Base):
    """Activity: every action and state change of a deployment, with its actor."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(64), default=None)
    action: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(default=None)


class DeploymentTemplate(Base):
    """Saved settings to create deployments from; secret values are never part of a template."""

    __tablename__ = "deployment_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
