"""Server-rendered console shell: login, overview, password change, logout."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from deploymate.auth import service as auth_service
from deploymate.auth import tokens
from deploymate.auth.cookies import clear_session_cookie, set_session_cookie
from deploymate.deployments import pages as deployment_pages
from deploymate.deployments.deps import ServicesDep
from deploymate.deps import (
    CurrentPrincipal,
    DbDep,
    Principal,
    SettingsDep,
    client_address,
    optional_principal,
    session_secret,
)
from deploymate.errors import DeployMateError
from deploymate.servers.deps import ViewerDep
from deploymate.web import overview
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
    settings = request.app.state.settings
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
async def login_form(
    request: Request, principal: Annotated[Principal | None, Depends(optional_principal)]
) -> Response:
    if principal is not None:
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
        new = await auth_service.login(
            db,
            settings,
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
async def logout(principal: CurrentPrincipal, db: DbDep, settings: SettingsDep) -> Response:
    await auth_service.logout(db, actor=principal.actor, secret=principal.session_secret)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, settings)
    return response


@router.get("/app", response_class=HTMLResponse)
async def app_overview(
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    services: ServicesDep,
    viewer: ViewerDep,
) -> Response:
    context: dict[str, Any] = {
        "steps": await overview.first_steps(db, principal),
        "ops": None,
        "deployment_cards": await deployment_pages.cards(db, services, viewer),
    }
    if principal.user.is_admin:
        from deploymate.ops import service as ops

        context["ops"] = await ops.overview(db)
    return render(request, "overview.html", context, principal=principal)


@router.get("/app/change-password", response_class=HTMLResponse)
async def change_password_form(request: Request, principal: CurrentPrincipal) -> Response:
    return render(request, "change_password.html", {"error": None}, principal=principal)


@router.post("/app/change-password", response_class=HTMLResponse)
async def change_password_submit(
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    settings: SettingsDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
    confirm_password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    error = None
    if new_password != confirm_password:
        error = "The new passwords do not match."
    else:
        try:
            await auth_service.change_password(
                db,
                actor=principal.actor,
                user=principal.user,
                current_password=current_password,
                new_password=new_password,
            )
        except DeployMateError as exc:
            error = exc.detail.replace("current_password: ", "Current password ").replace(
                "new_password: ", "New password "
            )
    if error:
        return render(
            request, "change_password.html", {"error": error}, principal=principal, status=422
        )
    new = await auth_service.issue_session(
        db,
        settings,
        principal.user,
        client_address=client_address(request),
        user_agent=request.headers.get("user-agent"),
    )
    response = RedirectResponse("/app?notice=password-changed", status_code=303)
    set_session_cookie(response, settings, new.secret)
    return response
