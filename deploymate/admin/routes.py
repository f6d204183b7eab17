"""Admin API; every route here requires the admin role through the router's dependency."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import Response

from deploymate.admin import service
from deploymate.admin.schemas import (
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
from deploymate.audit.schemas import AuditEventOut, AuditFilters, AuditPage
from deploymate.auth import service as auth_service
from deploymate.auth.schemas import UserCreate, UserCreated, UserOut
from deploymate.core.errors import DeployMateError
from deploymate.deps import AdminDep, DbDep, IdPath, PageDep, require_admin
from deploymate.web import exports

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


async def _exported(request: Request, me: AdminDep, db: DbDep, what: str, count: int) -> None:
    await audit.record(
        db,
        caller=me,
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
    response: Response,
    me: AdminDep,
    db: DbDep,
    page: PageDep,
    filters: Annotated[UserFilters, Depends(user_filters)],
    format: Format = None,
) -> list[UserOut] | Response:
    """A page of users; `?format=csv|json` exports every user that matches, not a page."""
    if format is None:
        page.total(response, await service.count_users(db, filters=filters))
        found = await service.list_users(db, filters=filters, limit=page.limit, offset=page.offset)
        return [UserOut.model_validate(u) for u in found]
    users = [UserOut.model_validate(u) for u in await service.list_users(db, filters=filters)]
    rows = [u.model_dump() for u in users]
    await _exported(request, me, db, "users", len(rows))
    if format == "csv":
        return exports.csv_response("deploymate-users", USER_COLUMNS, rows)
    return exports.json_response("deploymate-users", rows)


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, me: AdminDep, db: DbDep) -> UserCreated:
    """New users get a temporary password (shown once) and change it at first login."""
    user, generated = await auth_service.create_user(
        db,
        caller=me,
        username=body.username,
        role=body.role,
        password=body.password,
        must_change_password=True,
    )
    return UserCreated(user=UserOut.model_validate(user), temporary_password=generated)


@router.get("/users/{user_id}")
async def get_user(user_id: IdPath, db: DbDep) -> UserOut:
    return UserOut.model_validate(await service.get_user(db, user_id=user_id))


@router.patch("/users/{user_id}")
async def update_user(user_id: IdPath, body: UserUpdate, me: AdminDep, db: DbDep) -> UserOut:
    """Role, active flag (disabling ends sessions and tokens), local deployments, server limit."""
    user = await service.update_user(db, caller=me, user_id=user_id, change=body)
    return UserOut.model_validate(user)


@router.post("/users/{user_id}/reset-password")
async def reset_password(user_id: IdPath, me: AdminDep, db: DbDep) -> dict[str, str]:
    """A new temporary password, shown once; the user's sessions and tokens end."""
    return {"temporary_password": await service.reset_password(db, caller=me, user_id=user_id)}


@router.post("/users/bulk")
async def bulk_users(body: BulkUsers, me: AdminDep, db: DbDep) -> list[BulkResult]:
    return await service.bulk(db, caller=me, action=body.action, ids=body.ids, role=body.role)


def _upgrade_filters(
    status: str | None = None, kind: str | None = None, q: str | None = None
) -> UpgradeFilters:
    return UpgradeFilters.model_validate({"status": status, "kind": kind, "q": q})


@router.get("/upgrade-requests")
async def upgrade_inbox(
    response: Response,
    db: DbDep,
    page: PageDep,
    filters: Annotated[UpgradeFilters, Depends(_upgrade_filters)],
) -> list[UpgradeRequestOut]:
    """A page of the requests, pending first."""
    page.total(response, await service.count_requests(db, filters=filters))
    found = await service.list_requests(db, filters=filters, limit=page.limit, offset=page.offset)
    return [
        UpgradeRequestOut.model_validate(r).model_copy(update={"username": name})
        for r, name in found
    ]


@router.post("/upgrade-requests/{request_id}/decision")
async def decide(request_id: IdPath, body: Decision, me: AdminDep, db: DbDep) -> UpgradeRequestOut:
    row = await service.decide(
        db, caller=me, request_id=request_id, decision=body.decision, note=body.note
    )
    return UpgradeRequestOut.model_validate(row)


@router.post("/upgrade-requests/bulk")
async def decide_bulk(body: BulkDecision, me: AdminDep, db: DbDep) -> list[BulkResult]:
    results = []
    for request_id in dict.fromkeys(body.ids):
        try:  # decide() checks before it changes anything: a refused item leaves nothing behind
            await service.decide(
                db, caller=me, request_id=request_id, decision=body.decision, note=body.note
            )
        except DeployMateError as exc:
            await db.rollback()
            results.append(BulkResult(id=request_id, ok=False, detail=exc.detail))
            continue
        results.append(BulkResult(id=request_id, ok=True, detail=f"{body.decision}d"))
    return results


@router.get("/audit", response_model=None)
async def audit_log(
    request: Request,
    me: AdminDep,
    db: DbDep,
    filters: Annotated[AuditFilters, Depends(audit_filters)],
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
    format: Format = None,
) -> AuditPage | Response:
    if format is None:
        items, total = await audit_query.page(db, filters=filters, page_no=page, per_page=per_page)
        return AuditPage(
            items=[AuditEventOut.model_validate(e) for e in items],
            total=total,
            page=page,
            per_page=per_page,
        )
    rows: list[dict[str, Any]] = [
        AuditEventOut.model_validate(e).model_dump()
        for e in await audit_query.export(db, filters=filters)
    ]
    await _exported(request, me, db, "audit", len(rows))
    if format == "csv":
        return exports.csv_response("deploymate-audit", AUDIT_COLUMNS, rows)
    return exports.json_response("deploymate-audit", rows)
