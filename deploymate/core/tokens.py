"""Random secrets for sessions and API tokens (stored only as SHA-256 digests), and the CSRF
token derived from a session."""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_TOKEN_PREFIX = "dmt_"  # noqa: S105  (a marker, not a secret)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def csrf_for(session_secret: str) -> str:
    """CSRF token bound to the session: derived, so nothing more is stored."""
    return hmac.new(session_secret.encode(), b"deploymate-csrf", hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
