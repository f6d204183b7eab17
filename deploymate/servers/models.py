"""Servers: SSH targets with encrypted credentials and a pinned host key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from deploymate.core.db import Base, UTCDateTime, utcnow


class Server(Base):
    __tablename__ = "servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(default=22)
    username: Mapped[str] = mapped_column(String(32))
    auth_type: Mapped[str] = mapped_column(String(16))
    # Fernet token of a JSON object {private_key?, passphrase?, password?}; never plaintext at rest.
    credentials: Mapped[str] = mapped_column(Text)
    host_key: Mapped[str | None] = mapped_column(Text, default=None)
    purpose: Mapped[str] = mapped_column(String(16), default="production")
    criticality: Mapped[str] = mapped_column(String(16), default="medium")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    notes: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_check_ok: Mapped[bool | None] = mapped_column(default=None)
    last_check_message: Mapped[str | None] = mapped_column(Text, default=None)

    # The deployments on this server, named rather than imported: the deployments domain builds
    # on servers, never the other way round. Deleted ones keep their release history here.
    deployments: Mapped[list[Any]] = relationship(
        "Deployment", viewonly=True, lazy="raise", order_by="Deployment.name"
    )
    live_deployments: Mapped[list[Any]] = relationship(
        "Deployment",
        primaryjoin="and_(Server.id == Deployment.server_id, Deployment.status != 'deleted')",
        viewonly=True,
        lazy="raise",
    )
