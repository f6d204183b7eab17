"""Console pages of accounts: sign in, sign out, change the password."""

from __future__ import annotations

import secrets
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.auth import service
from deploymate.auth.cookies import clear_session_cookie, set_session_cookie
from deploymate.auth.schemas import TokenCreate
from deploymate.core import scopes, tokens
from deploymate.core.caller import Caller
from deploymate.core.db import utcnow
from deploymate.core.errors import DeployMateError
from deploymate.deps import (
    CallerDep,
    DbDep,
    IdPath,
    OptionalCaller,
    SettingsDep,
    client_address,
    session_secret,
)
from deploymate.web.forms import Refusal, refused
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "deploymate_login_csrf"


def _login_page(
    request: Request, csrf: str, *, error: str | None = None, username: str = "", status: int = 200
) -> Response:
    response = render(
        request,
        "login.html",
        {"csrf_token": csrf, "error": error, "username": username},
        status=status,
    )
    settings = request.app.state.context.settings
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=settings.secure_cookies,
    )
    return response


@router.get("/", response_class=HTMLResponse)
async def root() -> Response:
    return RedirectResponse("/app", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, me: OptionalCaller) -> Response:
    if me is not None:
        return RedirectResponse("/app", status_code=303)
    return _login_page(request, secrets.token_urlsafe(24))


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    username: Annotated[str, Form(max_length=256)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    fresh = secrets.token_urlsafe(24)
    if not expected or not csrf_token or not tokens.same(expected, csrf_token):
        return _login_page(
            request,
            fresh,
            error="Your form expired. Please sign in again.",
            username=username,
            status=403,
        )
    if not username or not password:
        return _login_page(
            request, fresh, error="Enter your username and password.", username=username, status=422
        )
    try:
        new = await service.login(
            db,
            settings=settings,
            username=username,
            password=password,
            client_address=client_address(request),
            user_agent=request.headers.get("user-agent"),
            previous_secret=session_secret(request, settings),
        )
    except DeployMateError as exc:
        return _login_page(
            request,
            fresh,
            error=exc.detail.capitalize() + ".",
            username=username,
            status=exc.status,
        )
    target = "/app/change-password" if new.user.must_change_password else "/app"
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, settings, new.secret)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(me: CallerDep, db: DbDep, settings: SettingsDep) -> Response:
    await service.logout(db, caller=me)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, settings)
    return response


@router.get("/app/change-password", response_class=HTMLResponse)
async def change_password_form(request: Request, me: CallerDep) -> Response:
    return render(request, "change_password.html", {"error": None}, me=me)


@router.post("/app/change-password", response_class=HTMLResponse)
async def change_password_submit(
    request: Request,
    me: CallerDep,
    db: DbDep,
    settings: SettingsDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    confirm_password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    labels = {"current_password": "Current password", "new_password": "New password"}
    if new_password != confirm_password:
        error: str | None = "The new passwords do not match."
    else:
        try:
            user = await service.change_password(
                db, caller=me, current_password=current_password, new_password=new_password
            )
            error = None
        except DeployMateError as exc:
            refusal = Refusal.of(exc)
            field, message = next(iter(refusal.fields.items()), ("", refusal.message))
            error = f"{labels[field]} {message}" if field in labels else refusal.message
    if error:
        return render(request, "change_password.html", {"error": error}, me=me, status=422)
    new = await service.issue_session(
        db,
        settings=settings,
        user=user,
        client_address=client_address(request),
        user_agent=request.headers.get("user-agent"),
    )
    response = RedirectResponse("/app?notice=password-changed", status_code=303)
    set_session_cookie(response, settings, new.secret)
    return response


# --- API tokens ----------------------------------------------------------------------------


async def _tokens_page(
    request: Request, me: Caller, db: AsyncSession, *, status: int = 200, **extra: Any
) -> Response:
    context: dict[str, Any] = {
        "tokens": await service.list_api_tokens(db, caller=me),
        "base_url": str(request.base_url).rstrip("/"),
        "created": None,
        "form": {},
        "error": None,
        "message": None,
        "scope_choices": scopes.SCOPES,
        "now": utcnow(),
        **extra,
    }
    return render(request, "tokens.html", context, me=me, status=status)


@router.get("/app/tokens", response_class=HTMLResponse)
async def tokens_page(request: Request, me: CallerDep, db: DbDep) -> Response:
    message = "Token revoked." if request.query_params.get("revoked") else None
    return await _tokens_page(request, me, db, message=message)


@router.post("/app/tokens", response_class=HTMLResponse)
async def create_token(
    request: Request,
    me: CallerDep,
    db: DbDep,
    name: Annotated[str, Form(max_length=200)] = "",
    scope: Annotated[list[str] | None, Form(max_length=40)] = None,
    expires_in_days: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """The token is shown on this answer only: it is stored hashed and cannot be shown again."""
    form = {"name": name, "scopes": scope or [], "expires_in_days": expires_in_days}
    try:
        body = TokenCreate.model_validate(
            {"name": name, "scopes": scope or [], "expires_in_days": expires_in_days or None}
        )
        row, token = await service.create_api_token(
            db,
            caller=me,
            name=body.name,
            scopes=scopes.normalise(body.scopes),
            expires_in_days=body.expires_in_days,
        )
    except (ValidationError, DeployMateError) as exc:
        page = partial(_tokens_page, request, me, db)
        return await refused(db, exc, page, form=form)
    created = {"name": row.name, "token": token, "scopes": scopes.describe(row.scope_list)}
    return await _tokens_page(request, me, db, created=created)


@router.post("/app/tokens/{token_id}/revoke")
async def revoke_token(token_id: IdPath, me: CallerDep, db: DbDep) -> Response:
    await service.revoke_api_token(db, caller=me, token_id=token_id)
    return RedirectResponse("/app/tokens?revoked=1", status_code=303)
