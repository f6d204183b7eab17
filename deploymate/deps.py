"""FastAPI dependencies for every route and page, in one place: the context, the database
session, the caller (session cookie or API token, CSRF, forced password change) and roles.

The edge layer: routes and pages import it; no use case does. Who a session cookie or an API
token belongs to is the accounts domain's answer, handed in by the composition root (app.py)
as `app.state.identify`."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Path, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.context import AppContext
from deploymate.core import scopes, tokens
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.errors import NotAuthenticated, PermissionDenied
from deploymate.core.ids import MAX_ID

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


class Identify(Protocol):
    """Who holds this API token (tried first) or session cookie; None when nobody valid does.

    Raises NotAuthenticated for a token that is invalid or revoked."""

    async def __call__(
        self,
        db: AsyncSession,
        *,
        settings: Settings,
        api_token: str | None,
        session_secret: str | None,
        client_address: str | None,
    ) -> Caller | None: ...


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


def get_settings(request: Request) -> Settings:
    return get_context(request).settings


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with get_context(request).sessions() as session:
        yield session


ContextDep = Annotated[AppContext, Depends(get_context)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[AsyncSession, Depends(get_db)]
# Every id in a path: a positive 32-bit integer; anything else is a 422, never a 500.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]

PAGE_SIZE = 50  # the default page of every list endpoint
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class Page:
    """`?limit=&offset=` of a list endpoint; the answer's `X-Total-Count` holds the total."""

    limit: int
    offset: int

    def total(self, response: Response, count: int) -> None:
        response.headers["X-Total-Count"] = str(count)


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="page size")] = PAGE_SIZE,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="rows to skip")] = 0,
) -> Page:
    return Page(limit, offset)


PageDep = Annotated[Page, Depends(page_params)]


def client_address(request: Request) -> str | None:
    """The peer's address; behind a trusted reverse proxy, the client it names in
    X-Forwarded-For (the right-most address that is not itself a trusted proxy)."""
    peer = request.client.host if request.client else None
    trusted = get_settings(request).trusted_proxy_networks
    if peer is None or not trusted or not _within(peer, trusted):
        return peer
    forwarded = [p.strip() for p in request.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed([p for p in forwarded if p]):
        if not _within(hop, trusted):
            return hop if _is_address(hop) else peer
    return peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _within(
    address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


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


async def optional_caller(request: Request, db: DbDep, settings: SettingsDep) -> Caller | None:
    identify: Identify = request.app.state.identify
    return await identify(
        db,
        settings=settings,
        api_token=bearer_token(request),
        session_secret=session_secret(request, settings),
        client_address=client_address(request),
    )


async def current_caller(
    request: Request, caller: Annotated[Caller | None, Depends(optional_caller)]
) -> Caller:
    """Every authenticated route goes through here: login, CSRF and forced password change."""
    if caller is None:
        raise NotAuthenticated("authentication required")
    if caller.via == "session" and request.method not in SAFE_METHODS:
        assert caller.session_secret is not None
        await check_csrf(request, caller.session_secret)
    if caller.must_change_password and request.url.path not in PENDING_PASSWORD_ALLOWED:
        raise PermissionDenied(
            "you must change your password first", code="password_change_required"
        )
    scopes.check_request(caller.scopes, request.method, request.url.path)
    return caller


async def require_admin(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise PermissionDenied("admin role required", code="admin_required")
    return caller


OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]
CallerDep = Annotated[Caller, Depends(current_caller)]
AdminDep = Annotated[Caller, Depends(require_admin)]


def csrf_token(caller: Caller | None) -> str | None:
    return tokens.csrf_for(caller.session_secret) if caller and caller.session_secret else None
