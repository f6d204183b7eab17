"""Record audit events; every domain calls `record` for security-relevant actions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit.models import AuditEvent
from deploymate.core.caller import Caller

# Detail keys whose values are never written to the log, whatever a caller passes.
_SECRET_NAMES = frozenset(
    {
        "password",
        "token",
        "secret",
        "private_key",
        "passphrase",
        "credentials",
        "api_token",
        "secret_env",
        "env_values",
    }
)
_SECRET_SUFFIXES = ("_password", "_token", "_secret", "_passphrase")


def _is_secret(key: str) -> bool:
    key = key.lower()
    return key in _SECRET_NAMES or key.endswith(_SECRET_SUFFIXES)


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "[redacted]" if _is_secret(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


async def record(
    db: AsyncSession,
    *,
    caller: Caller,
    action: str,
    target_type: str | None = None,
    target_id: str | int | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the session; the caller's commit makes it durable with its change."""
    event = AuditEvent(
        actor_id=caller.user_id,
        actor_name=caller.username,
        client_address=caller.client_address,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        outcome=outcome,
        details=_scrub(details or {}),
    )
    db.add(event)
    return event


async def count_failures(
    db: AsyncSession,
    *,
    action: str,
    since: datetime,
    username: str | None = None,
    address: str | None = None,
) -> int:
    """Failures of `action` since a time, for one username or one client address."""
    stmt = (
        select(func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.action == action,
            AuditEvent.outcome == "failure",
            AuditEvent.created_at >= since,
        )
    )
    if username is not None:
        stmt = stmt.where(AuditEvent.actor_name == username)
    if address is not None:
        stmt = stmt.where(AuditEvent.client_address == address)
    return int((await db.execute(stmt)).scalar_one())


async def last_success(db: AsyncSession, *, action: str, username: str) -> datetime | None:
    stmt = select(func.max(AuditEvent.created_at)).where(
        AuditEvent.action == action,
        AuditEvent.outcome == "success",
        AuditEvent.actor_name == username,
    )
    value = (await db.execute(stmt)).scalar_one_or_none()
    if isinstance(value, str):  # SQLite returns MAX() of a datetime column as text
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value
