"""Template rendering with the navigation and CSRF token every page needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.routing import Match

from deploymate import __version__
from deploymate.core import tokens
from deploymate.core.caller import Caller
from deploymate.web import flash

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# The console's sections; an entry shows once its page is served and the user may see it.
NAVIGATION: list[tuple[str, str, bool]] = [
    ("/app", "Overview", False),
    ("/app/deployments", "Deployments", False),
    ("/app/servers", "Servers", False),
    ("/app/deployment-workflow", "Deploy", False),
    ("/app/templates", "Templates", False),
    ("/app/apps", "Apps", False),
    ("/app/approvals", "Approvals", False),
    ("/app/users", "Users", True),
    ("/app/upgrade-requests", "Upgrade requests", False),
    ("/app/audit", "Audit log", True),
    ("/app/backup", "Backup", True),
    ("/app/webhooks", "Webhooks", True),
    ("/app/registries", "Registries", True),
]

NOTICES = {"password-changed": "Your password was changed. Other sessions were signed out."}


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.globals["version"] = __version__
    return templates


def _nav(request: Request, me: Caller | None) -> list[dict[str, Any]]:
    if me is None or me.must_change_password:
        return []
    return [
        {"path": path, "label": label, "active": request.url.path == path}
        for path, label, admin_only in NAVIGATION
        if (me.is_admin or not admin_only) and _served(request, path)
    ]


def _served(request: Request, path: str) -> bool:
    """Whether the app serves a console section (its routes are fixed once it runs)."""
    cache: dict[str, bool] = request.app.state.__dict__.setdefault("served_paths", {})
    if path not in cache:
        scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
        routes = request.app.router.routes
        cache[path] = any(route.matches(scope)[0] == Match.FULL for route in routes)
    return cache[path]


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    me: Caller | None = None,
    status: int = 200,
) -> Response:
    """A page; `me` is who is signed in (None on the login page)."""
    flashed = flash.waiting(request) if me is not None else None
    notice = flashed or NOTICES.get(request.query_params.get("notice", ""))
    full = {
        "me": me,
        "nav": _nav(request, me),
        "notice": notice,
        "csrf_token": tokens.csrf_for(me.session_secret) if me and me.session_secret else None,
        "field_errors": {},
        **context,
    }
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, template, full, status_code=status)
    response.headers["cache-control"] = "no-store"
    if flashed:
        flash.forget(response)
    return response


def pager(request: Request, *, page: int, size: int, total: int) -> dict[str, Any]:
    """Previous/next links for a console list, keeping the other query parameters."""
    pages = max(1, (total + size - 1) // size)

    def link(number: int) -> str:
        url = request.url.include_query_params(page=number)
        return f"{url.path}?{url.query}"

    return {
        "page": page,
        "pages": pages,
        "total": total,
        "prev": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < pages else None,
    }
