"""`deploymate smoke --url URL`: a live DeployMate answers as it should: health, a sign-in,
the main console pages and the API's list endpoints. Each check says what failed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from deploymate.core.errors import ValidationFailed

PAGES = ("/app", "/app/deployments", "/app/servers", "/app/apps", "/app/tokens")
LISTS = ("/api/deployments", "/api/servers", "/api/apps", "/api/templates", "/api/registries")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


def base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationFailed(
            f"{url!r} is not an http(s) URL; give the instance's address, like "
            "https://deploy.example.com",
            field="url",
        )
    return url.rstrip("/")


def run(url: str, username: str | None, password: str | None, timeout: float = 10) -> list[Check]:
    """Every check, in order; the sign-in and what needs it are skipped (and failed) without
    credentials."""
    checks: list[Check] = []

    def check(name: str, call: object) -> httpx.Response | None:
        started = time.monotonic()
        try:
            res = call()  # type: ignore[operator]
        except httpx.HTTPError as exc:
            checks.append(Check(name, False, f"no answer: {exc}", time.monotonic() - started))
            return None
        took = time.monotonic() - started
        ok = res.status_code == 200
        detail = f"HTTP {res.status_code}"
        if ok and name.startswith("api "):
            try:
                ok = isinstance(res.json(), list)
            except ValueError:
                ok = False
            detail += "" if ok else ", not a JSON list"
        checks.append(Check(name, ok, detail, took))
        return res

    with httpx.Client(base_url=base_url(url), timeout=timeout, follow_redirects=False) as http:
        health = check("health", lambda: http.get("/api/health"))
        if health is None:
            return checks
        if not username or not password:
            checks.append(
                Check(
                    "sign-in",
                    False,
                    "set DEPLOYMATE_SMOKE_USERNAME and DEPLOYMATE_SMOKE_PASSWORD (a read-only "
                    "member is enough)",
                    0.0,
                )
            )
            return checks
        login = check(
            "sign-in",
            lambda: http.post("/api/auth/login", json={"username": username, "password": password}),
        )
        if login is None or login.status_code != 200:
            return checks
        for page in PAGES:
            check(f"page {page}", lambda page=page: http.get(page))
        for path in LISTS:
            check(f"api {path}", lambda path=path: http.get(path))
        csrf = login.json().get("csrf_token")
        http.post("/api/auth/logout", headers={"X-CSRF-Token": csrf or ""})
    return checks
