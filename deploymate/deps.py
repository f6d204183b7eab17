"""FastAPI dependencies: the database session, the caller, CSRF and role checks, in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit.service import Actor
from deploymate.auth import service as auth_service
from deploymate.auth import tokens
from deploymate.auth.models import User
from deploymate.config import Settings
from deploymate.errors import NotAuthenticated, PermissionDenied

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
# Routes a user with a forced password change may still use.
PENDING_PASSWORD_ALLOWED = frozenset(
    {
        "/api/auth/me",
        "/api/auth/change-password",
        "/api/auth/logout",
        "/app/change-password",
        "/logout",
    }
)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[AsyncSession, Depends(get_db)]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and how they authenticated."""

    user: User
    via: Literal["session", "token"]
    session_secret: str | None
    client_address: str | None

    @property
    def actor(self) -> Actor:
        return Actor(self.user.id, self.user.username, self.client_address)

    @property
    def csrf_token(self) -> str | None:
        return tokens.csrf_for(self.session_secret) if self.session_secret else None


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def session_secret(request: Request, settings: Settings) -> str | None:
    return request.cookies.get(settings.session_cookie_name) or None


def bearer_token(request: Request) -> str | None:
    """Tokens are read from the Authorization header only, never from the URL."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _foreign_origin(request: Request) -> bool:
    """A concrete Origin naming another site. Browsers send "null" for same-origin forms under
    Referrer-Policy: no-referrer, so "null" and a missing header leave it to the CSRF token."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return False
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") != host


async def check_csrf(request: Request, secret: str) -> None:
    if _foreign_origin(request):
        raise PermissionDenied("cross-origin request refused", code="csrf_failed")
    expected = tokens.csrf_for(secret)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not tokens.same(sent, expected):
        raise PermissionDenied("missing or invalid CSRF token", code="csrf_failed")


async def optional_principal(
    request: Request, db: DbDep, settings: SettingsDep
) -> Principal | None:
    address = client_address(request)
    token = bearer_token(request)
    if token is not None:
        user = await auth_service.user_for_api_token(db, token)
        if user is None:
            raise NotAuthenticated("invalid or revoked API token", code="invalid_token")
        return Principal(user=user, via="token", session_secret=None, client_address=address)
    secret = session_secret(request, settings)
    if secret is None:
        return None
    user = await auth_service.user_for_session(db, settings, secret)
    if user is None:
        return None
    return Principal(user=user, via="session", session_secret=secret, client_address=address)


async def current_principal(
    request: Request, principal: Annotated[Principal | None, Depends(optional_principal)]
) -> Principal:
    """Every authenticated route goes through here: login, CSRF and forced password change."""
    if principal is None:
        raise NotAuthenticated("authentication required")
    if principal.via == "session" and request.method not in SAFE_METHODS:
        assert principal.session_secret is not None
        await check_csrf(request, principal.session_secret)
    if principal.user.must_change_password and request.url.path not in PENDING_PASSWORD_ALLOWED:
        raise PermissionDenied(
            "you must change your password first", code="password_change_required"
        )
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def require_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.user.is_admin:
        raise PermissionDenied("admin role required", code="admin_required")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]
