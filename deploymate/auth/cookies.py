"""Setting and clearing the session cookie with the same attributes everywhere."""

from __future__ import annotations

from fastapi import Response

from deploymate.core.config import Settings


def set_session_cookie(response: Response, settings: Settings, secret: str) -> None:
    response.set_cookie(
        settings.session_cookie_name,
        secret,
        max_age=settings.session_max_hours * 3600,
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        settings.session_cookie_name,
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
