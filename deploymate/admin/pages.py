"""Console pages: /app/users, /app/upgrade-requests, /app/audit, and saved views."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from deploymate.admin import service
from deploymate.admin.routes import notify_decision
from deploymate.admin.schemas import AuditFilters, UpgradeFilters, UserFilters, UserUpdate
from deploymate.audit import query as audit_query
from deploymate.auth import service as auth_service
from deploymate.auth.models import Role
from deploymate.deps import AdminPrincipal, CurrentPrincipal, DbDep, Principal
from deploymate.errors import DeployMateError, ValidationFailed
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)

USER_FILTERS = ("q", "role", "status")
AUDIT_FILTERS = ("actor", "action", "target_type", "outcome", "since", "until", "q")
UPGRADE_FILTERS = ("status", "kind", "q")
PAGES = {"users": "/app/users", "audit": "/app/audit", "upgrade-requests": "/app/upgrade-requests"}


def _query(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k in names if (v := request.query_params.get(k, "").strip())}


def _message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'input'}: {str(e['msg']).removeprefix('Value error, ')}"
        for e in exc.errors()
    )


async def _views(db: Any, principal: Principal, page: str) -> list[Any]:
    return await service.list_views(db, principal.user, page)


async def _users_page(
    request: Request, principal: Principal, db: Any, *, status: int = 200, **extra: Any
) -> Response:
    filters = _query(request, USER_FILTERS)
    error = extra.pop("error", None)
    try:
        users = await service.list_users(db, UserFilters.model_validate(filters))
    except ValidationError as exc:
        users, error, status = [], _message(exc), 422
    context = {
        "users": users,
        "filters": filters,
        "querystring": urlencode(filters),
        "error": error,
        "views": await _views(db, principal, "users"),
        "roles": [r.value for r in Role],
        "me": principal.user.id,
        "results": None,
        "temporary": None,
        "message": None,
        **extra,
    }
    return render(request, "users.html", context, principal=principal, status=status)


@router.get("/app/users", response_class=HTMLResponse)
async def users(request: Request, principal: AdminPrincipal, db: DbDep) -> Response:
    return await _users_page(request, principal, db)


@router.post("/app/users", response_class=HTMLResponse)
async def create_user(
    request: Request,
    principal: AdminPrincipal,
    db: DbDep,
    username: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "member",
) -> Response:
    from deploymate.auth.schemas import UserCreate

    try:
        body = UserCreate.model_validate({"username": username, "role": role})
        user, temp = await auth_service.create_user(
            db,
            actor=principal.actor,
            username=body.username,
            role=body.role,
            password=None,
            must_change_password=True,
        )
    except ValidationError as exc:
        return await _users_page(request, principal, db, status=422, error=_message(exc))
    except DeployMateError as exc:
        return await _users_page(request, principal, db, status=exc.status, error=exc.detail)
    return await _users_page(
        request, principal, db, temporary={"username": user.username, "password": temp}
    )


@router.post("/app/users/bulk", response_class=HTMLResponse)
async def bulk(request: Request, principal: AdminPrincipal, db: DbDep) -> Response:
    form = await request.form()
    ids = [
        int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isascii() and v.isdigit()
    ]
    action, role = str(form.get("action", "")), str(form.get("role", "")) or None
    if not ids or action not in ("disable", "enable", "set_role"):
        return await _users_page(
            request, principal, db, status=422, error="Select at least one user and an action."
        )
    try:
        results = await service.bulk(db, principal.actor, action, ids, Role(role) if role else None)
    except (DeployMateError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, DeployMateError) else "role: choose admin or member"
        return await _users_page(request, principal, db, status=422, error=detail)
    names = {u.id: u.username for u in await service.list_users(db, UserFilters())}
    rows = [
        {"username": names.get(r.id, f"#{r.id}"), "ok": r.ok, "detail": r.detail} for r in results
    ]
    return await _users_page(request, principal, db, results=rows)


@router.post("/app/users/{user_id}/update", response_class=HTMLResponse)
async def update_user(
    user_id: int, request: Request, principal: AdminPrincipal, db: DbDep
) -> Response:
    form = await request.form()
    values: dict[str, Any] = {}
    if "role" in form:
        values["role"] = form["role"]
    if "is_active" in form:
        values["is_active"] = form["is_active"] == "true"
    if "can_deploy_local" in form:
        values["can_deploy_local"] = form["can_deploy_local"] == "true"
    try:
        user = await service.update_user(
            db, principal.actor, user_id, UserUpdate.model_validate(values)
        )
    except ValidationError as exc:
        return await _users_page(request, principal, db, status=422, error=_message(exc))
    except DeployMateError as exc:
        return await _users_page(request, principal, db, status=exc.status, error=exc.detail)
    return await _users_page(request, principal, db, message=f"{user.username} updated.")


@router.post("/app/users/{user_id}/reset-password", response_class=HTMLResponse)
async def reset_password(
    user_id: int, request: Request, principal: AdminPrincipal, db: DbDep
) -> Response:
    try:
        temp = await service.reset_password(db, principal.actor, user_id)
        user = await service.get_user(db, user_id)
    except DeployMateError as exc:
        return await _users_page(request, principal, db, status=exc.status, error=exc.detail)
    return await _users_page(
        request, principal, db, temporary={"username": user.username, "password": temp}
    )


@router.post("/app/views", response_class=HTMLResponse)
async def save_view(
    principal: CurrentPrincipal,
    db: DbDep,
    page: Annotated[str, Form(max_length=32)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    query: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    from deploymate.admin.schemas import SavedViewIn

    view = SavedViewIn.model_validate({"page": page, "name": name, "query": query})
    await service.save_view(db, principal.user, view.page, view.name, view.query)
    return RedirectResponse(f"{PAGES[view.page]}?{view.query}", status_code=303)


@router.post("/app/views/{view_id}/delete", response_class=HTMLResponse)
async def delete_view(
    view_id: int,
    principal: CurrentPrincipal,
    db: DbDep,
    page: Annotated[str, Form(max_length=32)] = "users",
) -> Response:
    await service.delete_view(db, principal.user, view_id)
    return RedirectResponse(PAGES.get(page, "/app"), status_code=303)


# Upgrade requests


async def _upgrades_page(
    request: Request, principal: Principal, db: Any, *, status: int = 200, **extra: Any
) -> Response:
    filters = _query(request, UPGRADE_FILTERS)
    error = extra.pop("error", None)
    inbox: list[Any] = []
    if principal.user.is_admin:
        try:
            inbox = await service.list_requests(db, UpgradeFilters.model_validate(filters))
        except ValidationError as exc:
            error, status = _message(exc), 422
    context = {
        "inbox": inbox,
        "mine": await service.my_requests(db, principal.user),
        "filters": filters,
        "querystring": urlencode(filters),
        "views": await _views(db, principal, "upgrade-requests"),
        "error": error,
        "message": None,
        "results": None,
        **extra,
    }
    return render(request, "upgrade_requests.html", context, principal=principal, status=status)


@router.get("/app/upgrade-requests", response_class=HTMLResponse)
async def upgrade_requests(request: Request, principal: CurrentPrincipal, db: DbDep) -> Response:
    return await _upgrades_page(request, principal, db)


@router.post("/app/upgrade-requests", response_class=HTMLResponse)
async def ask(
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    kind: Annotated[str, Form(max_length=40)] = "",
    reason: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    from deploymate.admin.schemas import UpgradeRequestCreate

    try:
        body = UpgradeRequestCreate.model_validate({"kind": kind, "reason": reason})
        await service.request_upgrade(db, principal.actor, principal.user, body.kind, body.reason)
    except ValidationError as exc:
        return await _upgrades_page(request, principal, db, status=422, error=_message(exc))
    except DeployMateError as exc:
        return await _upgrades_page(request, principal, db, status=exc.status, error=exc.detail)
    return await _upgrades_page(request, principal, db, message="Request sent to the admins.")


@router.post("/app/upgrade-requests/decide", response_class=HTMLResponse)
async def decide(request: Request, principal: AdminPrincipal, db: DbDep) -> Response:
    """One decision (a row's button) or the same decision for every ticked request."""
    form = await request.form()
    ids = [
        int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isascii() and v.isdigit()
    ]
    decision, note = str(form.get("decision", "")), str(form.get("note", ""))[:2000]
    if not ids or decision not in ("approve", "reject"):
        return await _upgrades_page(
            request,
            principal,
            db,
            status=422,
            error="Select at least one request and approve or reject.",
        )
    results = []
    for request_id in dict.fromkeys(ids):
        try:
            row = await service.decide(db, principal.actor, request_id, decision, note)
            await db.commit()
            await notify_decision(request, row.user_id, row.kind, row.status, row.note)
            results.append({"id": request_id, "ok": True, "detail": row.status})
        except DeployMateError as exc:
            results.append({"id": request_id, "ok": False, "detail": exc.detail})
    return await _upgrades_page(request, principal, db, results=results)


# Audit log


@router.get("/app/audit", response_class=HTMLResponse)
async def audit(request: Request, principal: AdminPrincipal, db: DbDep) -> Response:
    filters = _query(request, AUDIT_FILTERS)
    page_no = request.query_params.get("page", "1")
    page_no_int = (
        int(page_no) if page_no.isascii() and page_no.isdigit() and int(page_no) > 0 else 1
    )
    error, total, status = None, 0, 200
    items: list[Any] = []
    try:
        parsed = AuditFilters.model_validate(filters)
        items, total = await audit_query.page(db, parsed, page_no_int, 50)
    except ValidationError as exc:
        error, status = _message(exc), 422
    except ValidationFailed as exc:
        error, status = exc.detail, 422
    context = {
        "events": items,
        "total": total,
        "page": page_no_int,
        "pages": max(1, (total + 49) // 50),
        "filters": filters,
        "querystring": urlencode(filters),
        "error": error,
        "views": await _views(db, principal, "audit"),
    }
    return render(request, "audit.html", context, principal=principal, status=status)
