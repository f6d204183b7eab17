"""Record audit events; every module calls `record` for security-relevant actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit.models import AuditEvent

# Keys whose values are never written to the log, whatever a caller passes.
_SECRET_KEYS = ("password", "token", "secret", "private_key", "passphrase", "key")


@dataclass(frozen=True)
class Actor:
    """Who did something and from where."""

    user_id: int | None
    username: str | None
    client_address: str | None


def _scrub(details: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("[redacted]" if any(s in k.lower() for s in _SECRET_KEYS) else v)
        for k, v in details.items()
    }


async def record(
    db: AsyncSession,
    *,
    actor: Actor,
    action: str,
    target_type: str | None = None,
    target_id: str | int | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the session; the caller's commit makes it durable with its change."""
    event = AuditEvent(
        actor_id=actor.user_id,
        actor_name=actor.username,
        client_address=actor.client_address,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        outcome=outcome,
        details=_scrub(details or {}),
    )
    db.add(event)
    return event


async def count_failures_since(
    db: AsyncSession, *, action: str, since: datetime, username: str | None, address: str | None
) -> tuple[int, int]:
    """Failures of `action` since a time, per username and per client address."""

    async def _count(*conds: Any) -> int:
        stmt = (
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.action == action,
                AuditEvent.outcome == "failure",
                AuditEvent.created_at >= since,
                or_(*conds),
            )
        )
        return int((await db.execute(stmt)).scalar_one())

    by_user = await _count(AuditEvent.actor_name == username) if username else 0
    by_addr = await _count(AuditEvent.client_address == address) if address else 0
    return by_user, by_addr
