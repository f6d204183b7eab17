"""Users admin, upgrade requests and saved views: the use cases behind /api/admin and the console.

The last active admin can be neither disabled nor demoted, even by two requests at once: every
change that takes an admin away first locks the active admins' rows (an UPDATE: row locks on
PostgreSQL, the write lock on SQLite), then counts, so concurrent changes are counted in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.admin.models import SavedView, UpgradeRequest
from deploymate.admin.schemas import BulkResult, UpgradeFilters, UserFilters, UserUpdate
from deploymate.audit import service as audit
from deploymate.auth import service as auth_service
from deploymate.auth.models import Role, User
from deploymate.core import events
from deploymate.core.caller import Caller
from deploymate.core.db import utcnow
from deploymate.core.errors import Conflict, DeployMateError, NotFound, ValidationFailed

MORE_SERVERS_STEP = 5
DECIDED = "upgrade_request.decided"


def _user_filters(filters: UserFilters) -> list[Any]:
    clauses: list[Any] = []
    if filters.q:
        clauses.append(User.username.ilike(f"%{_escape_like(filters.q)}%", escape="\\"))
    if filters.role:
        clauses.append(User.role == filters.role.value)
    if filters.status:
        clauses.append(User.is_active.is_(filters.status == "active"))
    return clauses


async def list_users(
    db: AsyncSession, *, filters: UserFilters, limit: int | None = None, offset: int = 0
) -> list[User]:
    stmt = select(User).where(*_user_filters(filters)).order_by(User.username).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await db.execute(stmt)).scalars())


async def count_users(db: AsyncSession, *, filters: UserFilters) -> int:
    stmt = select(func.count()).select_from(User).where(*_user_filters(filters))
    return int((await db.execute(stmt)).scalar_one())


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def get_user(db: AsyncSession, *, user_id: int) -> User:
    return await auth_service.get(db, user_id=user_id)


async def _other_active_admins(db: AsyncSession, user: User) -> int:
    """Active admins besides `user`, counted after locking every active admin's row."""
    active_admin = (User.role == Role.admin.value, User.is_active.is_(True))
    await db.execute(
        update(User)
        .where(*active_admin)
        .values(role=User.role)
        .execution_options(synchronize_session=False)
    )
    stmt = select(func.count()).select_from(User).where(*active_admin, User.id != user.id)
    return int((await db.execute(stmt)).scalar_one())


async def apply_update(
    db: AsyncSession, *, caller: Caller, user: User, change: UserUpdate
) -> list[str]:
    """Apply a change in the caller's transaction; returns the names of the fields changed."""
    losing_admin = (
        user.is_admin
        and user.is_active
        and ((change.role is not None and change.role != Role.admin) or change.is_active is False)
    )
    if losing_admin and await _other_active_admins(db, user) == 0:
        raise Conflict(
            "the last active admin can be neither disabled nor demoted", code="last_admin"
        )
    changed = []
    for field, value in change.model_dump(exclude_none=True).items():
        value = value.value if isinstance(value, Role) else value
        if getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(field)
    if "is_active" in changed and not user.is_active:
        await auth_service.end_access(db, user_id=user.id)  # sessions and API tokens end now
    if changed:
        await audit.record(
            db,
            caller=caller,
            action="user.update",
            target_type="user",
            target_id=user.id,
            details={"username": user.username, "changes": {f: getattr(user, f) for f in changed}},
        )
    return changed


async def update_user(
    db: AsyncSession, *, caller: Caller, user_id: int, change: UserUpdate
) -> User:
    user = await get_user(db, user_id=user_id)
    await apply_update(db, caller=caller, user=user, change=change)
    await db.commit()
    return user


async def reset_password(db: AsyncSession, *, caller: Caller, user_id: int) -> str:
    user = await get_user(db, user_id=user_id)
    generated = await auth_service.reset_password(
        db, caller=caller, username=user.username, new_password=None
    )
    assert generated is not None
    return generated


async def bulk(
    db: AsyncSession, *, caller: Caller, action: str, ids: Sequence[int], role: Role | None
) -> list[BulkResult]:
    """Each item succeeds or fails on its own; the results say which and why."""
    if action == "set_role" and role is None:
        raise ValidationFailed("required for set_role", field="role")
    change = {
        "disable": UserUpdate(is_active=False),
        "enable": UserUpdate(is_active=True),
        "set_role": UserUpdate(role=role),
    }[action]
    results = []
    for user_id in dict.fromkeys(ids):
        user = await db.get(User, user_id)
        if user is None:
            results.append(BulkResult(id=user_id, ok=False, detail="no such user"))
            continue
        try:  # every check runs before any change, so a refused item leaves nothing behind
            changed = await apply_update(db, caller=caller, user=user, change=change)
            await db.commit()
        except DeployMateError as exc:
            await db.rollback()
            results.append(BulkResult(id=user_id, ok=False, detail=exc.detail))
            continue
        results.append(
            BulkResult(id=user_id, ok=True, detail="changed" if changed else "unchanged")
        )
    return results


# Upgrade requests


async def request_upgrade(
    db: AsyncSession, *, caller: Caller, kind: str, reason: str
) -> UpgradeRequest:
    assert caller.user_id is not None
    user = await get_user(db, user_id=caller.user_id)
    pending = await db.execute(
        select(UpgradeRequest.id).where(
            UpgradeRequest.user_id == user.id,
            UpgradeRequest.kind == kind,
            UpgradeRequest.status == "pending",
        )
    )
    if pending.first() is not None:
        raise Conflict("you already have a pending request of this kind", code="already_requested")
    if (kind == "admin_role" and user.is_admin) or (
        kind == "local_deployments" and (user.is_admin or user.can_deploy_local)
    ):
        raise ValidationFailed("you already have this right", field="kind")
    row = UpgradeRequest(user_id=user.id, kind=kind, reason=reason)
    db.add(row)
    await db.flush()
    await audit.record(
        db,
        caller=caller,
        action="upgrade_request.create",
        target_type="upgrade_request",
        target_id=row.id,
        details={"kind": kind},
    )
    await db.commit()
    return row


async def my_requests(db: AsyncSession, *, caller: Caller) -> list[UpgradeRequest]:
    rows = await db.execute(
        select(UpgradeRequest)
        .where(UpgradeRequest.user_id == caller.user_id)
        .order_by(UpgradeRequest.id.desc())
    )
    return list(rows.scalars())


def _request_filters(filters: UpgradeFilters) -> list[Any]:
    clauses: list[Any] = []
    if filters.status:
        clauses.append(UpgradeRequest.status == filters.status)
    if filters.kind:
        clauses.append(UpgradeRequest.kind == filters.kind)
    if filters.q:
        like = f"%{_escape_like(filters.q)}%"
        clauses.append(
            or_(
                User.username.ilike(like, escape="\\"),
                UpgradeRequest.reason.ilike(like, escape="\\"),
            )
        )
    return clauses


async def list_requests(
    db: AsyncSession, *, filters: UpgradeFilters, limit: int | None = None, offset: int = 0
) -> list[tuple[UpgradeRequest, str]]:
    """Pending first, then the newest."""
    stmt = (
        select(UpgradeRequest, User.username)
        .join(User, User.id == UpgradeRequest.user_id)
        .where(*_request_filters(filters))
        .order_by(UpgradeRequest.status != "pending", UpgradeRequest.id.desc())
        .offset(offset)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [(r, name) for r, name in (await db.execute(stmt)).all()]


async def count_requests(db: AsyncSession, *, filters: UpgradeFilters) -> int:
    stmt = (
        select(func.count())
        .select_from(UpgradeRequest)
        .join(User, User.id == UpgradeRequest.user_id)
        .where(*_request_filters(filters))
    )
    return int((await db.execute(stmt)).scalar_one())


async def decide(
    db: AsyncSession, *, caller: Caller, request_id: int, decision: str, note: str
) -> UpgradeRequest:
    """Approve (and apply) or reject a pending request, and tell the member (event)."""
    row = await db.get(UpgradeRequest, request_id)
    if row is None:
        raise NotFound(f"no such upgrade request: {request_id}")
    if row.status != "pending":
        raise Conflict(f"request {request_id} was already {row.status}", code="already_decided")
    user = await get_user(db, user_id=row.user_id)
    if decision == "approve":
        if row.kind == "local_deployments":
            user.can_deploy_local = True
        elif row.kind == "admin_role":
            user.role = Role.admin.value
        else:
            user.server_limit += MORE_SERVERS_STEP
    row.status = "approved" if decision == "approve" else "rejected"
    row.note = note or None
    row.decided_by = caller.username
    row.decided_at = utcnow()
    await audit.record(
        db,
        caller=caller,
        action=f"upgrade_request.{row.status}",
        target_type="upgrade_request",
        target_id=row.id,
        details={"kind": row.kind, "user": user.username},
    )
    text = f"Your request for {row.kind.replace('_', ' ')} was {row.status}" + (
        f": {row.note}" if row.note else "."
    )
    events.emit(db, DECIDED, {"text": text, "link": "/app/upgrade-requests", "user_ids": [user.id]})
    await db.commit()
    return row


# Saved views


async def list_views(db: AsyncSession, *, caller: Caller, page: str) -> list[SavedView]:
    rows = await db.execute(
        select(SavedView)
        .where(SavedView.user_id == caller.user_id, SavedView.page == page)
        .order_by(SavedView.name)
    )
    return list(rows.scalars())


async def save_view(
    db: AsyncSession, *, caller: Caller, page: str, name: str, query: str
) -> SavedView:
    assert caller.user_id is not None
    existing = (
        await db.execute(
            select(SavedView).where(
                SavedView.user_id == caller.user_id, SavedView.page == page, SavedView.name == name
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        existing.query = query
        view = existing
    else:
        view = SavedView(user_id=caller.user_id, page=page, name=name, query=query.lstrip("?"))
        db.add(view)
    await db.commit()
    return view


async def delete_view(db: AsyncSession, *, caller: Caller, view_id: int) -> None:
    view = await db.get(SavedView, view_id)
    if view is None or view.user_id != caller.user_id:
        raise NotFound(f"no such view: {view_id}")
    await db.delete(view)
    await db.commit()
