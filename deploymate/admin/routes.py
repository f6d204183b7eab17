"""Admin API; every route here requires the admin role through the router's dependency."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import Response

from deploymate import exports
from deploymate.admin import service
from deploymate.admin.schemas import (
    AuditEventOut,
    AuditFilters,
    AuditPage,
    BulkDecision,
    BulkResult,
    BulkUsers,
    Decision,
    UpgradeFilters,
    UpgradeRequestOut,
    UserFilters,
    UserUpdate,
)
from deploymate.audit import query as audit_query
from deploymate.audit import service as audit
from deploymate.auth import service as auth_service
from deploymate.auth.schemas import UserCreate, UserCreated, UserOut
from deploymate.deps import AdminPrincipal, DbDep, require_admin
from deploymate.errors import DeployMateError
from deploymate.notifications import service as notifications

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(require_admin)])

Format = Literal["csv", "json"] | None
USER_COLUMNS = (
    "id",
    "username",
    "role",
    "is_active",
    "must_change_password",
    "can_deploy_local",
    "server_limit",
    "created_at",
    "last_login_at",
)
AUDIT_COLUMNS = (
    "id",
    "created_at",
    "actor_name",
    "client_address",
    "action",
    "target_type",
    "target_id",
    "outcome",
    "details",
)


def user_filters(
    q: str | None = None, role: str | None = None, status: str | None = None
) -> UserFilters:
    return UserFilters.model_validate({"q": q, "role": role, "status": status})


def audit_filters(
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    outcome: str | None = None,
    since: str | None = None,
    until: str | None = None,
    q: str | None = None,
) -> AuditFilters:
    return AuditFilters.model_validate(
        {
            "actor": actor,
            "action": action,
            "target_type": target_type,
            "outcome": outcome,
            "since": since,
            "until": until,
            "q": q,
        }
    )


async def _exported(
    request: Request, principal: AdminPrincipal, db: DbDep, what: str, count: int
) -> None:
    await audit.record(
        db,
        actor=principal.actor,
        action=f"{what}.export",
        target_type=what,
        details={
            "format": request.query_params.get("format"),
            "rows": count,
            "filters": {k: v for k, v in request.query_params.items() if k != "format"},
        },
    )
    await db.commit()


@router.get("/users", response_model=None)
async def list_users(
    request: Request,
    principal: AdminPrincipal,
    db: DbDep,
    filters: Annotated[UserFilters, Depends(user_filters)],
    format: Format = None,
) -> list[UserOut] | Response:
    users = [UserOut.model_validate(u) for u in await service.list_users(db, filters)]
    if format is None:
        return users
    rows = [u.model_dump() for u in users]
    await _exported(request, principal, db, "users", len(rows))
    if format == "csv":
        return exports.csv_response("deploymate-users", USER_COLUMNS, rows)
    return exports.json_response("deploymate-users", rows)


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, principal: AdminPrincipal, db: DbDep) -> UserCreated:
    """New users get a temporary password (shown once) and change it at first login."""
    user, generated = await auth_service.create_user(
        db,
        actor=principal.actor,
        username=body.username,
        role=body.role,
        password=body.password,
        must_change_password=True,
    )
    return UserCreated(user=UserOut.model_validate(user), temporary_password=generated)


@router.get("/users/{user_id}")
async def get_user(user_id: int, db: DbDep) -> UserOut:
    return UserOut.model_validate(await service.get_user(db, user_id))


@router.patch("/users/{user_id}")
async def update_user(
    user_id: int, body: UserUpdate, principal: AdminPrincipal, db: DbDep
) -> UserOut:
    """Role, active flag (disabling ends sessions and tokens), local deployments, server limit."""
    return UserOut.model_validate(await service.update_user(db, principal.actor, user_id, body))


@router.post("/users/{user_id}/reset-password")
async def reset_password(user_id: int, principal: AdminPrincipal, db: DbDep) -> dict[str, str]:
    """A new temporary password, shown once; the user's sessions and tokens end."""
    return {"temporary_password": await service.reset_password(db, principal.actor, user_id)}


@router.post("/users/bulk")
async def bulk_users(body: BulkUsers, principal: AdminPrincipal, db: DbDep) -> list[BulkResult]:
    return await service.bulk(db, principal.actor, body.action, body.ids, body.role)


def _upgrade_filters(
    status: str | None = None, kind: str | None = None, q: str | None = None
) -> UpgradeFilters:
    return UpgradeFilters.model_validate({"status": status, "kind": kind, "q": q})


@router.get("/upgrade-requests")
async def upgrade_inbox(
    db: DbDep, filters: Annotated[UpgradeFilters, Depends(_upgrade_filters)]
) -> list[UpgradeRequestOut]:
    return [
        UpgradeRequestOut.model_validate(r).model_copy(update={"username": name})
        for r, name in await service.list_requests(db, filters)
    ]


async def _decide_and_notify(
    request: Request, principal: AdminPrincipal, db: DbDep, request_id: int, decision: Decision
) -> UpgradeRequestOut:
    row = await service.decide(db, principal.actor, request_id, decision.decision, decision.note)
    await db.commit()
    await notify_decision(request, row.user_id, row.kind, row.status, row.note)
    return UpgradeRequestOut.model_validate(row)


async def notify_decision(
    request: Request, user_id: int, kind: str, state: str, note: str | None
) -> None:
    """Tell the member; publishing never raises, so it never undoes the decision."""
    text = f"Your request for {kind.replace('_', ' ')} was {state}" + (f": {note}" if note else ".")
    await notifications.publish(
        request.app.state.services,
        event="upgrade_request.decided",
        text=text,
        link="/app/upgrade-requests",
        user_ids=[user_id],
    )


@router.post("/upgrade-requests/{request_id}/decision")
async def decide(
    request_id: int, body: Decision, request: Request, principal: AdminPrincipal, db: DbDep
) -> UpgradeRequestOut:
    return await _decide_and_notify(request, principal, db, request_id, body)


@router.post("/upgrade-requests/bulk")
async def decide_bulk(
    body: BulkDecision, request: Request, principal: AdminPrincipal, db: DbDep
) -> list[BulkResult]:
    results = []
    for request_id in dict.fromkeys(body.ids):
        try:  # decide() checks before it changes anything: a refused item leaves nothing behind
            await _decide_and_notify(request, principal, db, request_id, body)
        except DeployMateError as exc:
            results.append(BulkResult(id=request_id, ok=False, detail=exc.detail))
            continue
        results.append(BulkResult(id=request_id, ok=True, detail=f"{body.decision}d"))
    return results


@router.get("/audit", response_model=None)
async def audit_log(
    request: Request,
    principal: AdminPrincipal,
    db: DbDep,
    filters: Annotated[AuditFilters, Depends(audit_filters)],
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
    format: Format = None,
) -> AuditPage | Response:
    if format is None:
        items, total = await audit_query.page(db, filters, page, per_page)
        return AuditPage(
            items=[AuditEventOut.model_validate(e) for e in items],
            total=total,
            page=page,
            per_page=per_page,
        )
    rows: list[dict[str, Any]] = [
        AuditEventOut.model_validate(e).model_dump() for e in await audit_query.export(db, filters)
    ]
    await _exported(request, principal, db, "audit", len(rows))
    if format == "csv":
        return exports.csv_response("deploymate-audit", AUDIT_COLUMNS, rows)
    return exports.json_response("deploymate-audit", rows)
