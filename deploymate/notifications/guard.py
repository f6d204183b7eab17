"""The webhook URL guard: what DeployMate may POST to on an admin's behalf (SSRF rules).

Only http(s); the host is resolved and every address checked (core/addresses.py), at creation
and again before each attempt (DNS can change); the request goes to the checked address (the
name is kept for the Host header and TLS). Webhook URLs may hold tokens (Slack), so they are
shown masked and never logged or audited.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from deploymate.core import addresses
from deploymate.core.addresses import IPAddress
from deploymate.core.config import Settings
from deploymate.core.errors import ValidationFailed

MAX_URL = 2048
PRIVATE_SETTING = "DEPLOYMATE_WEBHOOK_ALLOW_PRIVATE"


class RefusedUrl(Exception):
    """A webhook URL that must not be called; the message names the host, never the path."""


@dataclass(frozen=True)
class Target:
    """A checked URL: the request goes to `address`, with the original name for Host and TLS."""

    url: httpx.URL
    address: IPAddress

    @property
    def request_url(self) -> httpx.URL:
        return self.url.copy_with(host=str(self.address))

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")


def _parse(url: str) -> httpx.URL:
    if not url or not url.strip():
        raise RefusedUrl("a URL is required")
    if len(url) > MAX_URL:
        raise RefusedUrl(f"at most {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise RefusedUrl("must not contain spaces or control characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise RefusedUrl("not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise RefusedUrl("only http:// and https:// URLs are allowed")
    if not parsed.host:
        raise RefusedUrl("the URL needs a host")
    return parsed


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why a webhook must not be sent to this address ("a ... address"), or None when it may."""
    return addresses.address_problem(ip, allow_private=allow_private, setting=PRIVATE_SETTING)


async def check_url(url: str, *, allow_private: bool) -> Target:
    """Parse, resolve and check every address the host resolves to; raises RefusedUrl."""
    parsed = _parse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        address = await addresses.check_host(
            parsed.host, port, allow_private=allow_private, setting=PRIVATE_SETTING
        )
    except ValueError as exc:
        raise RefusedUrl(str(exc)) from None
    return Target(url=parsed, address=address)


async def validate_url(url: str, settings: Settings) -> str:
    """The URL as stored, or ValidationFailed on `url` naming the problem."""
    try:
        await check_url(url, allow_private=settings.webhook_allow_private)
    except RefusedUrl as exc:
        raise ValidationFailed(str(exc), field="url") from None
    return url.strip()


def mask_url(url: str) -> str:
    """scheme://host[:port]/…last4 — enough to recognise an endpoint, never its token."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "…"
    if not parsed.host:
        return "…"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    tail = parsed.raw_path.decode("ascii", "replace") + (
        f"#{parsed.fragment}" if parsed.fragment else ""
    )
    if tail in ("", "/"):
        return f"{parsed.scheme}://{host}/"
    return f"{parsed.scheme}://{host}/…" + (tail[-4:] if len(tail) >= 12 else "")


def url_host(url: str) -> str:
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, ValueError, TypeError):
        return "?"
