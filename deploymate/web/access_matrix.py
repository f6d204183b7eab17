"""Who may call what, read from the application's own routes: for every route, what an
anonymous caller, a member, a member on another member's object and an admin get. Written to
docs/authorization.md (`python -m deploymate.authorization > docs/authorization.md`) and
walked by tests/api/test_access_matrix.py, so a route without a rule fails the suite."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from deploymate import deps

# Path parameters that name an object someone owns: another member's is invisible (404).
OWNED = {
    "server_id": "server",
    "deployment_id": "deployment",
    "template_id": "template",
    "registry_id": "registry",
    "token_id": "API token",
    "job_id": "job",
    "name": "app",
    "target": "server (or local)",
    "view_id": "saved view",
    "notification_id": "notification",
}


@dataclass(frozen=True)
class Rule:
    method: str
    path: str
    access: str  # public | optional | signed-in | admin
    owned: str | None  # the kind of object its path names, if someone owns it

    @property
    def api(self) -> bool:
        return self.path.startswith("/api/")

    def expected(self) -> dict[str, str]:
        """caller -> what it gets: a status, or "allowed" (anything but 401/403/5xx)."""
        if self.access in ("public", "optional"):
            return {"anonymous": "allowed", "member": "allowed", "other": "-", "admin": "allowed"}
        anonymous = "401" if self.api else "303 /login"
        if self.access == "admin":
            return {"anonymous": anonymous, "member": "403", "other": "403", "admin": "allowed"}
        return {
            "anonymous": anonymous,
            "member": "allowed",
            "other": "404" if self.owned else "-",
            "admin": "allowed",
        }


def _calls(dependant: Any, found: set[Any]) -> set[Any]:
    for sub in dependant.dependencies:
        found.add(sub.call)
        _calls(sub, found)
    return found


def _routes(app: FastAPI) -> list[Any]:
    out: list[Any] = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:
            out += list(contexts())
        elif hasattr(route, "dependant"):
            out.append(route)
    return out


def rules(app: FastAPI) -> list[Rule]:
    out = []
    for route in _routes(app):
        calls = _calls(route.dependant, set())
        access = (
            "admin"
            if deps.require_admin in calls
            else "signed-in"
            if deps.current_caller in calls
            else "optional"
            if deps.optional_caller in calls
            else "public"
        )
        names = re.findall(r"{(\w+)}", route.path)
        owned = next((OWNED[n] for n in names if n in OWNED), None)
        for method in sorted(route.methods - {"HEAD"}):
            out.append(Rule(method, route.path, access, owned))
    return sorted(out, key=lambda r: (r.path, r.method))


def markdown(found: list[Rule]) -> str:
    counts = {
        a: sum(1 for r in found if r.access == a)
        for a in ("public", "optional", "signed-in", "admin")
    }
    lines = [
        "# Authorization matrix",
        "",
        "Generated from the application's routes by `python -m deploymate.authorization`;",
        "tests/api/test_access_matrix.py fails when this file differs from the routes, and walks",
        "every row with the four callers. *allowed*: anything but 401, 403 or a 5xx (the input",
        "decides the rest); *other*: a member on an object another member owns (invisible: 404);",
        "*-*: the route names no owned object.",
        "",
        f"{len(found)} routes: " + ", ".join(f"{n} {a}" for a, n in counts.items()) + ".",
        "",
        "| Method | Path | Access | Object | Anonymous | Member | Other's object | Admin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in found:
        e = r.expected()
        lines.append(
            f"| {r.method} | `{r.path}` | {r.access} | {r.owned or '-'} | {e['anonymous']} | "
            f"{e['member']} | {e['other']} | {e['admin']} |"
        )
    return "\n".join(lines) + "\n"
