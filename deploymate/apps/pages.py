"""Console pages /app/apps and /app/apps/{name} (every signed-in user; members see their own).

The list of stored apps and a form taking a spec's text (YAML or JSON): a refused spec is shown
again as typed, one numbered line per row, each problem under the line it is about. An app's
page shows its environments side by side (servers, domains, which secrets have a value: never
a value), its services and the spec as stored, with the actions an environment takes from
the console: ship a production environment (an admin types the app's name; a member's ship is a
request for the admins) and roll an environment back to an earlier release that served (in
production: admins only, with the name typed). Deploying an app from the console comes later.
"""

from __future__ import annotations

import re
import shlex
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.apps import previews, releases, service
from deploymate.apps.models import App, AppRelease, ShipRequest
from deploymate.apps.spec import environment_kind
from deploymate.core.caller import Caller
from deploymate.core.db import utcnow
from deploymate.core.errors import DeployMateError, NotFound, ValidationFailed
from deploymate.deps import CallerDep, ContextDep, DbDep
from deploymate.web import flash
from deploymate.web.forms import number, refused
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)
PAGE = "/app/apps"
APP_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
RUNNING = ("pending", "running")  # an app release whose job has not ended
EARLIER_SHOWN = 50  # rollback choices offered per environment


# --- presenting -------------------------------------------------------------------------------


def what(problem: dict[str, Any]) -> str:
    """A problem without its place: "services.web.port: expected ..."."""
    path = f"{problem['path']}: " if problem.get("path") else ""
    return f"{path}{problem['message']}"


def where(problem: dict[str, Any]) -> str:
    """One problem as the page lists it: "line 5, column 11: services.web.port: expected ..."."""
    line = int(problem.get("line") or 0)
    place = f"line {line}, column {problem.get('column') or 1}" if line else "the whole file"
    return f"{place}: {what(problem)}"


def numbered(text: str, problems: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The text one line per row, numbered from 1, with the problems found on each line (a
    problem past the last line, like an unexpected end of the file, gets an empty row)."""
    found: dict[int, list[dict[str, Any]]] = {}
    for problem in problems or []:
        line = int(problem.get("line") or 0)
        if line > 0:
            column = max(1, int(problem.get("column") or 1))
            found.setdefault(line, []).append({"column": column, "text": what(problem)})
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    lines += [""] * (max(found, default=0) - len(lines))
    width = len(str(len(lines)))
    return [
        {
            "number": number,
            "gutter": str(number).rjust(width),
            "blank": " " * width,
            "text": line,
            "problems": found.get(number, []),
        }
        for number, line in enumerate(lines, start=1)
    ]


def _summary(app: App) -> dict[str, Any]:
    environments = app.spec.get("environments") or {}
    return {
        "name": app.name,
        "services": list(app.spec.get("services") or {}),
        "environments": [
            {"name": name, "kind": environment_kind(name, env)}
            for name, env in environments.items()
        ],
        "updated_at": app.updated_at,
    }


def _health(health: dict[str, Any] | None) -> str:
    if not health:
        return ""
    kind = str(health.get("type") or "http")
    shown = kind.upper() if kind in ("http", "tcp") else kind
    if kind == "http":
        shown += f" {health.get('path') or '/'}"
        if "expect" in health:
            shown += f" expecting {health['expect']}"
    timing = [
        f"{key.replace('_', ' ')} {health[key]}{'' if key == 'retries' else 's'}"
        for key in ("interval", "timeout", "retries", "start_period")
        if key in health
    ]
    return shown + (f" ({', '.join(timing)})" if timing else "")


def _smoke(check: dict[str, Any]) -> str:
    if "command" in check:
        shown = shlex.join(check["command"])
    else:
        shown = f"{check.get('method') or 'GET'} {check.get('http')}"
        if "expect" in check:
            shown += f" expecting {check['expect']}"
        if "contains" in check:
            shown += f" containing {check['contains']!r}"
    return shown + (f" (timeout {check['timeout']}s)" if "timeout" in check else "")


def _services(spec: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, svc in (spec.get("services") or {}).items():
        build = svc.get("build") or {}
        built = ""
        if build:
            built = f"context {build.get('context')}"
            for key in ("dockerfile", "target"):
                if build.get(key):
                    built += f", {key} {build[key]}"
        out.append(
            {
                "name": name,
                "image": svc.get("image") or "",
                "build": built,
                "port": svc.get("port"),
                "command": shlex.join(svc["command"]) if svc.get("command") else "",
                "health": _health(svc.get("health")),
                "domains": list(svc.get("domains") or []),
                "volumes": [
                    f"{v['name']} → {v['path']}" + (" (read-only)" if v.get("read_only") else "")
                    for v in svc.get("volumes") or []
                ],
                "smoke": [_smoke(c) for c in svc.get("smoke") or []],
            }
        )
    return out


def _environments(spec: dict[str, Any], have: dict[str, list[str]]) -> list[dict[str, Any]]:
    services = spec.get("services") or {}
    declared = list(spec.get("secrets") or [])
    out = []
    for name, env in (spec.get("environments") or {}).items():
        overrides = env.get("domains") or {}
        secrets = [{"name": s, "set": s in have.get(name, [])} for s in declared]
        missing = [s["name"] for s in secrets if not s["set"]]
        out.append(
            {
                "name": name,
                "kind": environment_kind(name, env),
                "servers": list(env.get("servers") or []),
                "rollout": env.get("rollout") or "",
                "domains": [
                    {
                        "service": svc_name,
                        "domains": list(overrides.get(svc_name, svc.get("domains") or [])),
                        "override": svc_name in overrides,
                    }
                    for svc_name, svc in services.items()
                ],
                "secrets": secrets,
                # The command to give a value, naming the first secret that has none.
                "secret_hint": (missing or declared or ["NAME"])[0],
                "all_set": not missing,
            }
        )
    return out


def _release(r: AppRelease) -> dict[str, Any]:
    """The latest app release of an environment, as the page shows it."""
    images = sorted(
        {
            (service, p.get("image_id") or "")
            for service, per in r.parts.items()
            for p in per.values()
        }
    )
    return {
        "id": r.id,
        "number": r.number,
        "status": r.status,
        "commit": (r.commit or "")[:12],
        "branch": r.branch,
        "clean": r.clean,
        "shipped_from": r.shipped_from,
        "images": [{"service": s, "image_id": i[:19]} for s, i in images],
        "by": r.created_by,
        "at": r.created_at,
        "pending": list(r.pending_migrations or []),
        "surface": r.surface,
        "detail": r.detail,
    }


# --- pages ------------------------------------------------------------------------------------


async def _list_page(
    request: Request, me: Caller, db: AsyncSession, *, status: int = 200, **context: Any
) -> Response:
    rows = await service.list_for(db, caller=me)
    text = context.pop("text", None)
    if text is None:
        # ?edit=NAME: the form holds that app's stored spec, to change and send again.
        editing = request.query_params.get("edit", "")
        text = next((a.spec_text for a in rows if a.name == editing), "")
    problems = context.pop("problems", None) or []
    base: dict[str, Any] = {
        "apps": [_summary(a) for a in rows],
        "text": text,
        "problems": [where(p) for p in problems],
        "lines": numbered(text, problems) if problems else [],
        "error": None,
    }
    return render(request, "apps_list.html", {**base, **context}, me=me, status=status)


@router.get(PAGE, response_class=HTMLResponse)
async def apps_page(request: Request, me: CallerDep, db: DbDep) -> Response:
    return await _list_page(request, me, db)


@router.post(PAGE, response_class=HTMLResponse)
async def save(request: Request, me: CallerDep, db: DbDep) -> Response:
    """Create the app a spec names, or store a new spec for one of the caller's apps."""
    raw = (await request.form()).get("spec")
    # A browser sends the textarea's lines ending in CRLF: stored as typed, with LF.
    text = raw.replace("\r\n", "\n") if isinstance(raw, str) else ""
    page = partial(_list_page, request, me, db)
    try:
        app, created = await service.save(db, caller=me, text=text)
    except ValidationFailed as exc:
        if not exc.problems:
            return await refused(db, exc, page, text=text)
        count = len(exc.problems)
        said = "1 problem" if count == 1 else f"{count} problems"
        await db.rollback()
        return await page(
            status=exc.status,
            error=f"The spec was refused ({said}); nothing was stored. Fix it and send it again.",
            text=text,
            problems=exc.problems,
        )
    except DeployMateError as exc:
        return await refused(db, exc, page, text=text)
    said = "added" if created else "updated"
    return flash.redirect(f"{PAGE}/{app.name}", f"App {app.name} {said}.")


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


async def _release_states(db: AsyncSession, app: App) -> dict[str, dict[str, Any]]:
    """Per environment: whether a release is running there, and the numbers of the releases
    that served (succeeded), newest first."""
    rows = await db.execute(
        select(AppRelease.environment, AppRelease.number, AppRelease.status)
        .where(AppRelease.app_id == app.id)
        .order_by(AppRelease.id.desc())
    )
    states: dict[str, dict[str, Any]] = {}
    for environment, release_number, status in rows:
        state = states.setdefault(environment, {"running": False, "served": []})
        if status in RUNNING:
            state["running"] = True
        elif status == "succeeded":
            state["served"].append(release_number)
    return states


async def _app_page(
    request: Request, me: Caller, db: AsyncSession, name: str, *, status: int = 200, **extra: Any
) -> Response:
    if not APP_NAME.match(name):
        raise NotFound(f"no app named {name}")
    app = await service.get(db, caller=me, name=name)
    have = await service.secret_names(db, app=app)
    latest: dict[str, dict[str, Any]] = {}
    for r in await releases.list_releases(db, app=app):  # newest first
        latest.setdefault(r.environment, _release(r))
    states = await _release_states(db, app)
    environments = _environments(app.spec, have)
    sources = [x["name"] for x in environments if x["kind"] == "staging"]
    for e in environments:
        state = states.get(e["name"]) or {"running": False, "served": []}
        production = e["kind"] == "production"
        e["running"] = state["running"]
        e["can_ship"] = production
        # Production already serves what its only staging serves: nothing to ship yet.
        mine, theirs = latest.get(e["name"]) or {}, latest.get(sources[0]) if sources else None
        e["up_to_date"] = (
            production
            and len(sources) == 1
            and theirs is not None
            and mine.get("status") == "succeeded"
            and mine.get("shipped_from") == theirs["id"]
        )
        # Back to an earlier release that served; members never roll production back.
        earlier = state["served"][1 : EARLIER_SHOWN + 1]
        e["earlier"] = earlier if earlier and (me.is_admin or not production) else []
    context = {
        "latest": latest,
        "app": {
            "name": app.name,
            "created_at": app.created_at,
            "updated_at": app.updated_at,
            "secrets": list(app.spec.get("secrets") or []),
        },
        "environments": environments,
        # Where a ship takes its release from (a choice when there are several).
        "ship_sources": [
            {
                "name": e["name"],
                "release": (latest.get(e["name"]) or {}).get("number"),
                "status": (latest.get(e["name"]) or {}).get("status"),
            }
            for e in environments
            if e["kind"] == "staging"
        ],
        "services": _services(app.spec),
        "previews": [
            {
                "branch": p.branch,
                "environment": p.environment,
                "hosts": [
                    h
                    for hs in previews.environment_for(app.spec, p)["domains"].values()
                    for h in hs
                ],
                "release": (latest.get(p.environment) or {}).get("number"),
                "status": (latest.get(p.environment) or {}).get("status"),
                "created_at": p.created_at,
                "expires_at": p.expires_at,
                "age": _age(utcnow() - p.created_at),
            }
            for p in await previews.list_for(db, app=app)
        ],
        "lines": numbered(app.spec_text),
        "error": None,
        "acted": None,
        **extra,
    }
    return render(request, "app_detail.html", context, me=me, status=status)


@router.get(f"{PAGE}/{{name}}", response_class=HTMLResponse)
async def app_page(name: str, request: Request, me: CallerDep, db: DbDep) -> Response:
    return await _app_page(request, me, db, name)


def _field(form: Any, key: str, limit: int = 100) -> str:
    value = form.get(key)
    return value.strip()[:limit] if isinstance(value, str) else ""


@router.post(f"{PAGE}/{{name}}/{{environment}}/ship", response_class=HTMLResponse)
async def ship(
    name: str, environment: str, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    """Ship to a production environment what serves on staging: at once for an admin who typed
    the app's name, as a request to the admins for a member."""
    if not APP_NAME.match(name):
        raise NotFound(f"no app named {name}")
    form = await request.form()
    try:
        done = await releases.ship(
            db,
            context=context,
            caller=me,
            name=name,
            environment=environment,
            source=_field(form, "from") or None,
            confirm=_field(form, "confirm"),
        )
    except DeployMateError as exc:
        page = partial(_app_page, request, me, db, name)
        return await refused(db, exc, page, acted=f"{environment}/ship")
    if isinstance(done, ShipRequest):
        said = f"Ship request #{done.id} sent to the admins."
    else:
        app_release, _ = done
        said = f"Shipping release {app_release.number} to {environment}."
    return flash.redirect(f"{PAGE}/{name}", said)


@router.post(f"{PAGE}/{{name}}/{{environment}}/rollback", response_class=HTMLResponse)
async def rollback(
    name: str, environment: str, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    """Bring an environment back to an earlier release that served, every service together.
    Production wants the app's name typed (the service checks it), others the box ticked."""
    if not APP_NAME.match(name):
        raise NotFound(f"no app named {name}")
    form = await request.form()
    confirm, wanted = _field(form, "confirm"), _field(form, "to", 20)
    try:
        app = await service.get(db, caller=me, name=name)
        env = (app.spec.get("environments") or {}).get(environment)
        if env is not None and environment_kind(environment, env) != "production":
            if confirm != "yes":
                raise ValidationFailed("Tick the confirmation box to roll back.")
        to = number(wanted) if wanted else None
        if isinstance(to, str):
            raise ValidationFailed("must be a release number", field="to")
        app_release, _ = await releases.rollback(
            db,
            context=context,
            caller=me,
            name=name,
            environment=environment,
            to=to,
            confirm=confirm,
        )
    except DeployMateError as exc:
        page = partial(_app_page, request, me, db, name)
        return await refused(db, exc, page, acted=f"{environment}/rollback")
    target = f"release {to}" if to else "the previous release"
    said = f"Rolling {environment} back to {target} (as release {app_release.number})."
    return flash.redirect(f"{PAGE}/{name}", said)


# --- approvals -------------------------------------------------------------------------------

APPROVALS = "/app/approvals"


async def _approvals_page(
    request: Request, me: Caller, db: AsyncSession, *, status: int = 200, **extra: Any
) -> Response:
    rows = await releases.list_requests(db, caller=me, pending_only=False)
    names = {a.id: a.name for a in await service.list_for(db, caller=me)}
    if me.is_admin:
        found = await db.execute(select(App.id, App.name))
        names.update({app_id: app_name for app_id, app_name in found})
    sources = {
        r.id: r.number
        for r in [await db.get(AppRelease, row.source_release_id) for row in rows]
        if r is not None
    }
    requests = [
        {
            "id": r.id,
            "app": names.get(r.app_id, f"#{r.app_id}"),
            "environment": r.environment,
            "release": sources.get(r.source_release_id),
            "requested_by": r.requested_by_name,
            "status": r.status,
            "decided_by": r.decided_by,
            "reason": r.reason,
            "created_at": r.created_at,
        }
        for r in rows
    ]
    context = {
        "pending": [r for r in requests if r["status"] == "pending"],
        "decided": [r for r in requests if r["status"] != "pending"][:50],
        **extra,
    }
    return render(request, "approvals.html", context, me=me, status=status)


@router.get(APPROVALS, response_class=HTMLResponse)
async def approvals_page(request: Request, me: CallerDep, db: DbDep) -> Response:
    """Ship requests: admins approve or reject them; members see theirs."""
    return await _approvals_page(request, me, db)


@router.post(f"{APPROVALS}/{{request_id}}/{{answer}}", response_class=HTMLResponse)
async def decide(
    request_id: int, answer: str, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    if answer not in ("approve", "reject"):
        raise NotFound("no such page")
    form = await request.form()
    reason = str(form.get("reason") or "").strip()[:500] or None
    try:
        done, _ = await releases.decide(
            db,
            context=context,
            caller=me,
            request_id=request_id,
            approve=answer == "approve",
            reason=reason,
        )
    except DeployMateError as exc:
        return await refused(db, exc, partial(_approvals_page, request, me, db))
    said = (
        f"Request #{done.id} approved: shipping {done.environment}; follow it on the app's page."
        if answer == "approve"
        else f"Request #{done.id} rejected."
    )
    return flash.redirect(APPROVALS, said)
