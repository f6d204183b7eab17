"""Post/redirect/get: a console POST that changes something answers with a redirect, and the
sentence saying what happened rides along in a one-shot cookie that the next page shows."""

from __future__ import annotations

from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

COOKIE = "dm_flash"
MAX_LENGTH = 300


def redirect(url: str, message: str) -> RedirectResponse:
    """A 303 to `url` whose page says `message` once (reloading it does not repeat the POST)."""
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        COOKIE,
        quote(message[:MAX_LENGTH]),
        max_age=60,
        path="/",
        httponly=True,
        samesite="strict",
    )
    return response


def waiting(request: Request) -> str | None:
    """The message waiting for this page; `forget` it on the response that shows it."""
    raw = request.cookies.get(COOKIE)
    if raw is None:
        return None
    return unquote(raw)[:MAX_LENGTH] or None


def forget(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
