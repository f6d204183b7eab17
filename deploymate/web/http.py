"""HTTP edge: error mapping, security headers, request limits and HEAD, for every route."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deploymate.core.errors import (
    DeployMateError,
    NotAuthenticated,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
    describe,
    field_errors,
)

log = logging.getLogger("deploymate.http")

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        b"object-src 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
# Paths that take uploads: multipart as well as JSON, and the larger upload size limit.
MULTIPART_PATHS = ("/api/admin/restore/",)
UPLOAD_PATHS = ("/api/admin/restore/", "/app/backup")
# A commit's source archive for app builds: gzip, and its own (larger) size limit.
SOURCE_PATH = re.compile(r"^/api/apps/[^/]+/sources/[^/]+$")


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


class ErrorOut(BaseModel):
    """Every API error: what went wrong in words, a stable code, and per-field details."""

    model_config = ConfigDict(extra="allow")
    detail: str
    code: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


_ERROR = {"model": ErrorOut}
# The answers any API route may give besides its own: documented once for every route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {**_ERROR, "description": "The request could not be read"},
    401: {**_ERROR, "description": "Not signed in, or the API token is invalid or expired"},
    403: {**_ERROR, "description": "Signed in but not allowed (role, token scope, CSRF)"},
    404: {**_ERROR, "description": "No such object, or none the caller may see"},
    409: {**_ERROR, "description": "The state does not allow it now"},
    413: {**_ERROR, "description": "The body is over the size limit"},
    415: {**_ERROR, "description": "The body's content type is not accepted"},
    422: {**_ERROR, "description": "Input refused, with the field and what was expected"},
    429: {**_ERROR, "description": "Too many attempts; retry after the Retry-After seconds"},
    502: {**_ERROR, "description": "A target server could not be reached or failed"},
    503: {**_ERROR, "description": "A part DeployMate depends on does not answer"},
}


def error_response(
    status: int, detail: str, code: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "code": code, **extra}, status_code=status, headers=headers
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DeployMateError)
    if not is_api(request):
        if isinstance(exc, NotAuthenticated):
            return RedirectResponse("/login", status_code=303)
        if isinstance(exc, PermissionDenied) and exc.code == "password_change_required":
            return RedirectResponse("/app/change-password", status_code=303)
        templates = request.app.state.templates
        return templates.TemplateResponse(
            request,
            "error.html",
            {"status": exc.status, "detail": exc.detail},
            status_code=exc.status,
        )
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationFailed):
        extra.update({"field": exc.field} if exc.field else {})
        extra.update({"problems": exc.problems} if exc.problems else {})
    return error_response(exc.status, exc.detail, exc.code, headers, **extra)


async def _validation_error(request: Request, exc: Exception) -> Response:
    """Request validation, and models validated inside dependencies or services."""
    assert isinstance(exc, (RequestValidationError, PydanticValidationError))
    found = field_errors(exc.errors())
    errors = [{"field": e.field or "body", "message": e.message} for e in found]
    detail = describe(found)
    if not is_api(request):
        templates = request.app.state.templates
        return templates.TemplateResponse(
            request, "error.html", {"status": 422, "detail": detail}, status_code=422
        )
    return error_response(422, detail, "validation_error", errors=errors)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods: JSON under /api/, a page in the console."""
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    if not is_api(request) and exc.status_code == 404 and request.method in ("GET", "HEAD"):
        templates = request.app.state.templates
        context = {"status": 404, "detail": f"There is no page at {request.url.path}."}
        return templates.TemplateResponse(request, "error.html", context, status_code=404)
    return error_response(exc.status_code, detail, codes.get(exc.status_code, "http_error"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    # Answered by Starlette's outermost middleware, so the edge headers are added here.
    headers = {k.decode(): v.decode() for k, v in SECURITY_HEADERS}
    if request.app.state.context.settings.secure_cookies:
        headers[HSTS[0].decode()] = HSTS[1].decode()
    return error_response(500, "internal error; see the server log", "internal_error", headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DeployMateError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(PydanticValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class EdgeMiddleware:
    """Security headers on every response; body size and content-type limits on requests."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int,
        max_upload: int,
        hsts: bool = False,
        max_source: int | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload
        self.max_source = max_source or max_upload
        self.headers = [*SECURITY_HEADERS, *([HSTS] if hsts else [])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        answered = False  # set once the edge itself answered; the app's reply is then dropped
        head = scope["method"] == "HEAD"
        if head:  # answered as GET without the body, wherever GET is (monitors use HEAD)
            scope = {**scope, "method": "GET"}

        async def send_with_headers(message: Message) -> None:
            if answered:
                return
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                present = {k.lower() for k, _ in message["headers"]}
                message["headers"].extend(h for h in self.headers if h[0] not in present)
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        rejection = self._reject(scope, headers)
        if rejection is not None:
            await rejection(scope, receive, send_with_headers)
            return

        received = 0
        limit = self._limit(scope)

        async def limited_receive() -> Message:
            nonlocal received, answered
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not answered:
                    # A chunked body without Content-Length: answer 413 now, end the app's read.
                    await self._too_large(limit)(scope, receive, send_with_headers)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, limited_receive, send_with_headers)

    def _limit(self, scope: Scope) -> int:
        """Uploads (backup bundles, to upload paths) may be larger than ordinary requests."""
        path: str = scope["path"]
        if SOURCE_PATH.match(path):
            return self.max_source
        return self.max_upload if path.startswith(UPLOAD_PATHS) else self.max_body

    @staticmethod
    def _too_large(limit: int) -> Response:
        return error_response(413, f"request body exceeds {limit} bytes", "payload_too_large")

    def _reject(self, scope: Scope, headers: dict[str, str]) -> Response | None:
        length = headers.get("content-length")
        limit = self._limit(scope)
        if length is not None and (not length.isdigit() or int(length) > limit):
            return self._too_large(limit)
        path: str = scope["path"]
        has_body = (length not in (None, "0")) or "transfer-encoding" in headers
        if path.startswith("/api/") and scope["method"] in ("POST", "PUT", "PATCH") and has_body:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            allowed = {"application/json"}
            if path.startswith(MULTIPART_PATHS):
                allowed.add("multipart/form-data")
            if SOURCE_PATH.match(path):
                allowed = {"application/gzip"}
            if ctype not in allowed:
                return error_response(
                    415,
                    f"content type must be {' or '.join(sorted(allowed))}",
                    "unsupported_media_type",
                )
        return None
