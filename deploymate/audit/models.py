"""The security audit log: append-only, never updated or deleted by the application."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, event
from sqlalchemy.orm import Mapped, mapped_column

from deploymate.core.db import Base, UTCDateTime, utcnow


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(default=None, index=True)
    actor_name: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    client_address: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str | None] = mapped_column(String(32), default=None)
    target_id: Mapped[str | None] = mapped_column(String(64), default=None)
    outcome: Mapped[str] = mapped_column(String(16), default="success")
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _append_only(mapper: object, connection: object, target: AuditEvent) -> None:
    """The application never changes or removes an audit row once written."""
    raise PermissionError(f"audit event {target.id} is append-only")
