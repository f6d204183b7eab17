"""Apps (a stored deploymate.yaml) and their secrets, sealed per environment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from deploymate.core.db import Base, UTCDateTime, utcnow


class App(Base):
    __tablename__ = "apps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    spec_text: Mapped[str] = mapped_column(Text)  # as submitted: errors point at its lines
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the validated data
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AppSecret(Base):
    """One secret value of one app environment; never returned, never logged."""

    __tablename__ = "app_secrets"
    __table_args__ = (UniqueConstraint("app_id", "environment", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[str] = mapped_column(Text)  # Fernet token
    updated_by: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class AppRelease(Base):
    """One deploy of an app to one environment: the spec and the commit it came from, and the
    releases of its services, which move together."""

    __tablename__ = "app_releases"

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(64))
    number: Mapped[int]
    commit: Mapped[str | None] = mapped_column(String(64), default=None)
    branch: Mapped[str | None] = mapped_column(String(255), default=None)
    clean: Mapped[bool] = mapped_column(default=True)
    shipped_from: Mapped[int | None] = mapped_column(default=None)  # the staging app release
    spec: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # service -> server -> {"deployment_id", "release_id", "image_id"}
    parts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The files under the spec's migrations.path at the commit; at a ship, those production's
    # `applied` command did not name (shown, never run).
    migration_files: Mapped[list[str]] = mapped_column(JSON, default=list)
    pending_migrations: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A changed-surface deploy: service -> why it moved (the others kept their releases).
    surface: Mapped[dict[str, str] | None] = mapped_column(JSON, default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    job_id: Mapped[int | None] = mapped_column(default=None)
    created_by: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ShipRequest(Base):
    """A member's ship to production, waiting for an admin; it is for one staging release."""

    __tablename__ = "ship_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    environment: Mapped[str] = mapped_column(String(64))
    source_release_id: Mapped[int]
    requested_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    requested_by_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # approved|rejected|stale
    decided_by: Mapped[str | None] = mapped_column(String(64), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    app_release_id: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AppPreview(Base):
    """A branch's preview environment (`preview-<slug>`): made by its first deploy, kept alive
    by each one, removed with its volumes when it expires or is destroyed."""

    __tablename__ = "app_previews"
    __table_args__ = (UniqueConstraint("app_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    branch: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(40))
    environment: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | removed
    created_by: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
