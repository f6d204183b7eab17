"""Console pages: /app/users, /app/upgrade-requests, /app/audit, and saved views."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.admin import service
from deploymate.admin.schemas import (
    SavedViewIn,
    UpgradeFilters,
    UpgradeRequestCreate,
    UserFilters,
    UserUpdate,
)
from deploymate.audit import query as audit_query
from deploymate.audit.schemas import AuditFilters
from deploymate.auth import service as auth_service
from deploymate.auth.models import Role
from deploymate.auth.schemas import UserCreate
from deploymate.core.caller import Caller
from deploymate.core.errors import DeployMateError, ValidationFailed, describe, field_errors
from deploymate.core.ids import parse_id
from deploymate.deps import AdminDep, CallerDep, DbDep, IdPath
from deploymate.web import flash
from deploymate.web.forms import refused
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)

USER_FILTERS = ("q", "role", "status")
AUDIT_FILTERS = ("actor", "action", "target_type", "outcome", "since", "until", "q")
UPGRADE_FILTERS = ("status", "kind", "q")
PAGES = {"users": "/app/users", "audit": "/app/audit", "upgrade-requests": "/app/upgrade-requests"}
AUDIT_PAGE_SIZE = 50


def _query(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k in names if (v := request.query_params.get(k, "").strip())}


def _ids(values: list[Any]) -> list[int]:
    return [i for v in values if isinstance(v, str) and (i := parse_id(v)) is not None]


async def _users_page(
    request: Request, me: Caller, db: AsyncSession, *, status: int = 200, **extra: Any
) -> Response:
    filters = _query(request, USER_FILTERS)
    error = extra.pop("error", None)
    try:
        users = await service.list_users(db, filters=UserFilters.model_validate(filters))
    except ValidationError as exc:
        users, error, status = [], describe(field_errors(exc)), 422
    context = {
        "users": users,
        "filters": filters,
        "querystring": urlencode(filters),
        "error": error,
        "views": await service.list_views(db, caller=me, page="users"),
        "roles": [r.value for r in Role],
        "results": None,
        "temporary": None,
        "message": None,
        **extra,
    }
    return render(request, "users.html", context, me=me, status=status)


@router.get("/app/users", response_class=HTMLResponse)
async def users(request: Request, me: AdminDep, db: DbDep) -> Response:
    return await _users_page(request, me, db)


@router.post("/app/users", response_class=HTMLResponse)
async def create_user(
    request: Request,
    me: AdminDep,
    db: DbDep,
    username: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "member",
) -> Response:
    try:
        body = UserCreate.model_validate({"username": username, "role": role})
        user, temp = await auth_service.create_user(
            db,
            caller=me,
            username=body.username,
            role=body.role,
            password=None,
            must_change_password=True,
        )
    except (ValidationError, DeployMateError) as exc:
        return await refused(db, exc, partial(_users_page, request, me, db))
    return await _users_page(
        request, me, db, temporary={"username": user.username, "password": temp}
    )


@router.post("/app/users/bulk", response_class=HTMLResponse)
async def bulk(request: Request, me: AdminDep, db: DbDep) -> Response:
    form = await request.form()
    ids = _ids(form.getlist("ids"))
    action, role = str(form.get("action", "")), str(form.get("role", "")) or None
    if not ids or action not in ("disable", "enable", "set_role"):
        return await _users_page(
            request, me, db, status=422, error="Select at least one user and an action."
        )
    try:
        chosen = Role(role) if role else None
    except ValueError:
        chosen = None
        error = ValidationFailed("choose admin or member", field="role")
        return await refused(db, error, partial(_users_page, request, me, db))
    try:
        results = await service.bulk(db, caller=me, action=action, ids=ids, role=chosen)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_users_page, request, me, db))
    names = {u.id: u.username for u in await service.list_users(db, filters=UserFilters())}
    rows = [
        {"username": names.get(r.id, f"#{r.id}"), "ok": r.ok, "detail": r.detail} for r in results
    ]
    return await _users_page(request, me, db, results=rows)


@router.post("/app/users/{user_id}/update", response_class=HTMLResponse)
async def update_user(user_id: IdPath, request: Request, me: AdminDep, db: DbDep) -> Response:
    form = await request.form()
    values: dict[str, Any] = {}
    if "role" in form:
        values["role"] = form["role"]
    if "is_active" in form:
        values["is_active"] = form["is_active"] == "true"
    if "can_deploy_local" in form:
        values["can_deploy_local"] = form["can_deploy_local"] == "true"
    try:
        change = UserUpdate.model_validate(values)
        user = await service.update_user(db, caller=me, user_id=user_id, change=change)
    except (ValidationError, DeployMateError) as exc:
        return await refused(db, exc, partial(_users_page, request, me, db))
    return flash.redirect("/app/users", f"{user.username} updated.")


@router.post("/app/users/{user_id}/reset-password", response_class=HTMLResponse)
async def reset_password(user_id: IdPath, request: Request, me: AdminDep, db: DbDep) -> Response:
    try:
        temp = await service.reset_password(db, caller=me, user_id=user_id)
        user = await service.get_user(db, user_id=user_id)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_users_page, request, me, db))
    return await _users_page(
        request, me, db, temporary={"username": user.username, "password": temp}
    )


@router.post("/app/views", response_class=HTMLResponse)
async def save_view(
    me: CallerDep,
    db: DbDep,
    page: Annotated[str, Form(max_length=32)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    query: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    view = SavedViewIn.model_validate({"page": page, "name": name, "query": query})
    await service.save_view(db, caller=me, page=view.page, name=view.name, query=view.query)
    return RedirectResponse(f"{PAGES[view.page]}?{view.query}", status_code=303)


@router.post("/app/views/{view_id}/delete", response_class=HTMLResponse)
async def delete_view(
    view_id: IdPath,
    me: CallerDep,
    db: DbDep,
    page: Annotated[str, Form(max_length=32)] = "users",
) -> Response:
    await service.delete_view(db, caller=me, view_id=view_id)
    return RedirectResponse(PAGES.get(page, "/app"), status_code=303)


# --- upgrade requests ------------------------------------------------------------------------


async def _upgrades_page(
    request: Request, me: Caller, db: AsyncSession, *, status: int = 200, **extra: Any
) -> Response:
    filters = _query(request, UPGRADE_FILTERS)
    error = extra.pop("error", None)
    inbox: list[Any] = []
    if me.is_admin:
        try:
            inbox = await service.list_requests(db, filters=UpgradeFilters.model_validate(filters))
        except ValidationError as exc:
            error, status = describe(field_errors(exc)), 422
    context = {
        "inbox": inbox,
        "mine": await service.my_requests(db, caller=me),
        "filters": filters,
        "querystring": urlencode(filters),
        "views": await service.list_views(db, caller=me, page="upgrade-requests"),
        "error": error,
        "message": None,
        "results": None,
        **extra,
    }
    return render(request, "upgrade_requests.html", context, me=me, status=status)


@router.get("/app/upgrade-requests", response_class=HTMLResponse)
async def upgrade_requests(request: Request, me: CallerDep, db: DbDep) -> Response:
    return await _upgrades_page(request, me, db)


@router.post("/app/upgrade-requests", response_class=HTMLResponse)
async def ask(
    request: Request,
    me: CallerDep,
    db: DbDep,
    kind: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    try:
        body = UpgradeRequestCreate.model_validate({"kind": kind, "reason": reason})
        await service.request_upgrade(db, caller=me, kind=body.kind, reason=body.reason)
    except (ValidationError, DeployMateError) as exc:
        return await refused(db, exc, partial(_upgrades_page, request, me, db))
    return flash.redirect("/app/upgrade-requests", "Request sent to the admins.")


@router.post("/app/upgrade-requests/decide", response_class=HTMLResponse)
async def decide(request: Request, me: AdminDep, db: DbDep) -> Response:
    """One decision (a row's button) or the same decision for every ticked request."""
    form = await request.form()
    ids = _ids(form.getlist("ids"))
    decision, note = str(form.get("decision", "")), str(form.get("note", ""))[:2000]
    if not ids or decision not in ("approve", "reject"):
        return await _upgrades_page(
            request, me, db, status=422, error="Select at least one request and approve or reject."
        )
    results = []
    for request_id in dict.fromkeys(ids):
        try:
            row = await service.decide(
                db, caller=me, request_id=request_id, decision=decision, note=note
            )
            results.append({"id": request_id, "ok": True, "detail": row.status})
        except DeployMateError as exc:
            await db.rollback()
            results.append({"id": request_id, "ok": False, "detail": exc.detail})
    return await _upgrades_page(request, me, db, results=results)


# --- audit log -------------------------------------------------------------------------------


@router.get("/app/audit", response_class=HTMLResponse)
async def audit(request: Request, me: AdminDep, db: DbDep) -> Response:
    filters = _query(request, AUDIT_FILTERS)
    page_no = parse_id(request.query_params.get("page", "1")) or 1
    error, total, status = None, 0, 200
    items: list[Any] = []
    try:
        parsed = AuditFilters.model_validate(filters)
        items, total = await audit_query.page(
            db, filters=parsed, page_no=page_no, per_page=AUDIT_PAGE_SIZE
        )
    except ValidationError as exc:
        error, status = describe(field_errors(exc)), 422
    except ValidationFailed as exc:
        error, status = exc.detail, 422
    context = {
        "events": items,
        "total": total,
        "page": page_no,
        "pages": max(1, (total + AUDIT_PAGE_SIZE - 1) // AUDIT_PAGE_SIZE),
        "filters": filters,
        "querystring": urlencode(filters),
        "error": error,
        "views": await service.list_views(db, caller=me, page="audit"),
    }
    return render(request, "audit.html", context, me=me, status=status)
