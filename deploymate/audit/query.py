"""Reading the audit log with filters and pages (the log itself is append-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from deploymate.audit.models import AuditEvent
from deploymate.audit.schemas import AuditFilters
from deploymate.core.errors import ValidationFailed

EXPORT_LIMIT = 50_000


def _filtered(filters: AuditFilters, *, columns: Any = AuditEvent) -> Select[Any]:
    if filters.since and filters.until and filters.since > filters.until:
        raise ValidationFailed("must be before until", field="since")
    stmt = select(columns)
    if filters.actor:
        stmt = stmt.where(AuditEvent.actor_name == filters.actor)
    if filters.action:
        stmt = stmt.where(AuditEvent.action.startswith(filters.action, autoescape=True))
    if filters.target_type:
        stmt = stmt.where(AuditEvent.target_type == filters.target_type)
    if filters.outcome:
        stmt = stmt.where(AuditEvent.outcome == filters.outcome)
    if filters.since:
        stmt = stmt.where(AuditEvent.created_at >= filters.since)
    if filters.until:
        stmt = stmt.where(AuditEvent.created_at <= filters.until)
    if filters.q:
        like = f"%{filters.q.lower()}%"
        stmt = stmt.where(
            or_(
                *(
                    func.lower(col).contains(filters.q.lower(), autoescape=True)
                    for col in (
                        AuditEvent.action,
                        AuditEvent.actor_name,
                        AuditEvent.target_id,
                        AuditEvent.client_address,
                    )
                ),
                func.lower(cast(AuditEvent.details, String)).like(like),
            )
        )
    return stmt


async def page(
    db: AsyncSession, *, filters: AuditFilters, page_no: int, per_page: int
) -> tuple[list[AuditEvent], int]:
    stmt = _filtered(filters)
    counted = _filtered(filters, columns=func.count(AuditEvent.id))
    total = int((await db.execute(counted)).scalar_one())
    rows = await db.execute(
        stmt.order_by(AuditEvent.id.desc()).offset((page_no - 1) * per_page).limit(per_page)
    )
    return list(rows.scalars()), total


async def export(db: AsyncSession, *, filters: AuditFilters) -> list[AuditEvent]:
    rows = await db.execute(_filtered(filters).order_by(AuditEvent.id.desc()).limit(EXPORT_LIMIT))
    return list(rows.scalars())
