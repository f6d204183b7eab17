"""Template rendering with the navigation and CSRF token every page needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates
from starlette.routing import Match

from deploymate import __version__
from deploymate.deps import Principal

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

# The console's sections; an entry shows once its page is served and the user may see it.
NAVIGATION: list[tuple[str, str, bool]] = [
    ("/app", "Overview", False),
    ("/app/server-review", "Servers", False),
    ("/app/deployment-workflow", "Deploy", False),
    ("/app/users", "Users", True),
    ("/app/upgrade-requests", "Upgrade requests", False),
    ("/app/audit", "Audit log", True),
    ("/app/backup", "Backup", True),
    ("/app/webhooks", "Webhooks", True),
]

NOTICES = {"password-changed": "Your password was changed. Other sessions were signed out."}


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.globals["version"] = __version__
    return templates


def _nav(request: Request, principal: Principal | None) -> list[dict[str, Any]]:
    if principal is None or principal.user.must_change_password:
        return []
    return [
        {"path": path, "label": label, "active": request.url.path == path}
        for path, label, admin_only in NAVIGATION
        if (principal.user.is_admin or not admin_only) and _served(request, path)
    ]


def _served(request: Request, path: str) -> bool:
    scope = {"type": "http", "path": path, "method": "GET", "root_path": ""}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    principal: Principal | None = None,
    status: int = 200,
) -> Response:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    full = {
        "principal": principal,
        "nav": _nav(request, principal),
        "notice": notice,
        "csrf_token": principal.csrf_token if principal else None,
        **context,
    }
    templates: Jinja2Templates = request.app.state.templates
    response = templates.TemplateResponse(request, template, full, status_code=status)
    response.headers["cache-control"] = "no-store"
    return response
