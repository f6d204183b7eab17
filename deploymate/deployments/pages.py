"""Console pages for deployments: the create workflow, a deployment's page, the overview cards.

Every form works without JavaScript; /static/deployments.js only adds live streaming (the job
log and following the container log over the SSE endpoints of the JSON API).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.deployments import service
from deploymate.deployments.deps import ServicesDep
from deploymate.deployments.models import Deployment
from deploymate.deployments.schemas import DeploymentCreate, RedeployRequest
from deploymate.deps import CurrentPrincipal, DbDep, Principal
from deploymate.errors import DeployMateError, PermissionDenied, ValidationFailed
from deploymate.jobs import service as jobs
from deploymate.jobs.models import Job
from deploymate.servers import service as servers
from deploymate.servers.deps import CipherDep, PoolDep, ViewerDep
from deploymate.servers.models import Server
from deploymate.servers.service import Viewer
from deploymate.services import Services
from deploymate.web.render import render

log = logging.getLogger("deploymate.deployments.pages")

router = APIRouter(include_in_schema=False)
WORKFLOW = "/app/deployment-workflow"
LOCAL = "local"  # the target select's value for the control host
HEALTH_FIELDS = ("path", "expected_status", "retries", "interval", "timeout", "start_period")
RESTART_POLICIES = ("unless-stopped", "always", "on-failure", "no")
OPERATIONS = ("stop", "start", "restart", "delete")
LOG_LINES = 100
TARGET_TIMEOUT = 15.0  # seconds for the live sections of a deployment's page
ACTIVE_JOB = ("queued", "running")
STATUS_CLASS = {
    "running": "status-ok",
    "deploying": "status-warn",
    "stopped": "status-warn",
    "failed": "status-bad",
    "deleted": "status-muted",
}


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _int(value: str) -> int | str:
    """Digits become a number for validation; anything else is passed on to be refused."""
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() else value


def _pairs(text: str, field: str) -> dict[str, str]:
    """`KEY=VALUE` per line; blank lines and `#` comments are skipped, values kept exactly.

    The error names the line number only, never its content (secret values pass through here).
    """
    pairs: dict[str, str] = {}
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise ValidationFailed(f"{field}: line {number} is not KEY=VALUE")
        pairs[key.strip()] = value
    return pairs


async def _undo(db: AsyncSession, viewer: Viewer) -> None:
    """Roll back what a refused use case started; reload the caller, whom rollback expired."""
    await db.rollback()
    await db.refresh(viewer.user)


def local_allowed(services: Services, viewer: Viewer) -> bool:
    """The control host is a target only when enabled and for admins or granted members."""
    user = viewer.user
    return services.settings.local_docker and (user.is_admin or user.can_deploy_local)


# --- the create workflow ---------------------------------------------------------------------


def _create_body(form: dict[str, str], secret_text: str) -> dict[str, Any]:
    """The DeploymentCreate body from the form: a blank field is left unset (template/default)."""
    data: dict[str, Any] = {"name": form.get("name", "").strip()}
    target = form.get("server_id", "").strip()
    if not target:
        raise ValidationFailed("server_id: choose a target")
    data["server_id"] = None if target == LOCAL else _int(target)
    if form.get("template_id", "").strip():
        data["template_id"] = _int(form["template_id"])
    if form.get("image", "").strip():
        data["image"] = form["image"].strip()
    for key in ("internal_port", "external_port"):
        if form.get(key, "").strip():
            data[key] = _int(form[key])
    for key in ("restart_policy", "memory_limit", "cpu_limit"):
        if form.get(key, "").strip():
            data[key] = form[key].strip()
    for key in ("env", "labels"):
        pairs = _pairs(form.get(key, ""), key)
        if pairs:
            data[key] = pairs
    secret = _pairs(secret_text, "secret_env")
    if secret:
        data["secret_env"] = secret
    command = [line for line in form.get("command", "").replace("\r\n", "\n").split("\n") if line]
    if command:
        data["command"] = command
    health = {f: form[f"health_{f}"].strip() for f in HEALTH_FIELDS if form.get(f"health_{f}", "")}
    health_type = form.get("health_type", "http") or "http"
    if health or health_type != "http":
        data["health_check"] = {"type": health_type, **health}
    return data


async def _suggest(db: AsyncSession, services: Services, viewer: Viewer, target: str) -> list[int]:
    if target == LOCAL:
        if not local_allowed(services, viewer):
            raise PermissionDenied("the control host is not a deployment target for you")
        return await service.suggest_ports(db, services, viewer, None)
    server_id = _int(target)
    if not isinstance(server_id, int):
        raise ValidationFailed("server_id: choose a target")
    return await service.suggest_ports(db, services, viewer, server_id)


async def _workflow_page(
    request: Request,
    principal: Principal,
    db: AsyncSession,
    services: Services,
    viewer: Viewer,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    targets = await servers.list_visible(db, viewer)
    local = local_allowed(services, viewer)
    templates = [
        {"id": t.id, "name": t.name, "image": t.settings.get("image", "")}
        for t in await service.list_templates(db, viewer)
    ]
    base: dict[str, Any] = {
        "servers": targets,
        "local_allowed": local,
        "can_create": bool(targets) or local,
        "templates": templates,
        "restart_policies": RESTART_POLICIES,
        "form": {},
        "suggested": None,
        "suggest_error": None,
        "secret_dropped": False,
        "error": None,
    }
    return render(
        request, "deployment_workflow.html", {**base, **context}, principal=principal, status=status
    )


@router.get(WORKFLOW, response_class=HTMLResponse)
async def workflow(
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    services: ServicesDep,
    cipher: CipherDep,
    pool: PoolDep,
    viewer: ViewerDep,
    server_id: str = "",
    template_id: str = "",
) -> Response:
    """`?server_id=` (a server's id or `local`) fills in the first free port of that target."""
    form: dict[str, str] = {"server_id": server_id, "template_id": template_id}
    suggested: list[int] | None = None
    suggest_error = None
    if server_id:
        try:
            suggested = await _suggest(db, services, viewer, server_id)
        except DeployMateError as exc:
            suggest_error = exc.detail
        if suggested:
            form["external_port"] = str(suggested[0])
    return await _workflow_page(
        request,
        principal,
        db,
        services,
        viewer,
        form=form,
        suggested=suggested,
        suggest_error=suggest_error,
    )


@router.post(WORKFLOW, response_class=HTMLResponse)
async def create(
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    services: ServicesDep,
    viewer: ViewerDep,
) -> Response:
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str) and k not in ("secret_env",)}
    form.pop("csrf_token", None)
    secret_value = raw.get("secret_env")
    secret_text = secret_value if isinstance(secret_value, str) else ""
    try:
        body = DeploymentCreate.model_validate(_create_body(form, secret_text))
        dep, job = await service.create(db, services, viewer, body)
    except (ValidationError, DeployMateError) as exc:
        await _undo(db, viewer)
        if isinstance(exc, ValidationError):
            status, message = 422, _validation_message(exc)
        else:
            status, message = exc.status, exc.detail
        return await _workflow_page(
            request,
            principal,
            db,
            services,
            viewer,
            status=status,
            form=form,  # secret values are never sent back
            secret_dropped=bool(secret_text.strip()),
            error=message,
        )
    return RedirectResponse(f"/deployments/{dep.id}?job={job.id}", status_code=303)


# --- a deployment's page ---------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeployMateError):
        return exc.detail
    if isinstance(exc, TimeoutError):
        return f"the target did not answer within {TARGET_TIMEOUT:g}s"
    log.warning("live section of a deployment page failed: %r", exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _live_sections(db: AsyncSession, services: Services, dep: Deployment) -> dict[str, Any]:
    """Health (a check now), diagnostics and the last log lines of the serving container.

    A failure (target unreachable, container gone) fills that section's error, never the page's.
    """
    out: dict[str, Any] = {
        "health": None,
        "health_error": None,
        "diagnostics": None,
        "diagnostics_error": None,
        "logs": None,
        "logs_error": None,
    }

    def fail_all(message: str) -> dict[str, Any]:
        return {**out, "health_error": message, "diagnostics_error": message, "logs_error": message}

    if dep.status == "deleted":
        return fail_all("the deployment was deleted; its container was removed")
    try:
        executor, name = await service.serving(db, services, dep)
        facts = await asyncio.wait_for(service.container_facts(executor, name), TARGET_TIMEOUT)
    except Exception as exc:  # any failure to reach the target is shown, not raised
        return fail_all(_describe(exc))
    out["diagnostics"] = facts
    if not facts["exists"]:
        out["health"] = {"healthy": False, "detail": f"container {name} does not exist"}
        out["logs_error"] = f"container {name} does not exist"
        return out
    health, lines = await asyncio.gather(
        asyncio.wait_for(service.health_now(executor, name, dep), TARGET_TIMEOUT),
        asyncio.wait_for(service.log_tail(executor, name, LOG_LINES), TARGET_TIMEOUT),
        return_exceptions=True,
    )
    if isinstance(health, BaseException):
        out["health_error"] = _describe(health)
    else:
        out["health"] = health
    if isinstance(lines, BaseException):
        out["logs_error"] = _describe(lines)
    else:
        out["logs"] = lines
    return out


async def _job_to_show(
    db: AsyncSession, dep: Deployment, wanted: str | None, active_id: int | None
) -> Job | None:
    """The job named in `?job=` (if it is this deployment's), else the active one, else the last."""
    if wanted and wanted.isdigit():
        job = await db.get(Job, int(wanted))
        if job is not None and job.deployment_id == dep.id:
            return job
    if active_id is not None:
        return await db.get(Job, active_id)
    rows = await db.execute(
        select(Job).where(Job.deployment_id == dep.id).order_by(Job.id.desc()).limit(1)
    )
    return rows.scalar_one_or_none()


async def _detail_page(
    request: Request,
    principal: Principal,
    db: AsyncSession,
    services: Services,
    viewer: Viewer,
    deployment_id: int,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    dep = await service.get_visible(db, viewer, deployment_id)
    out = (await service.to_out(db, services, [dep]))[0]
    server = await db.get(Server, dep.server_id) if dep.server_id else None
    job = await _job_to_show(db, dep, request.query_params.get("job"), out.active_job_id)
    releases = [service.release_out(r) for r in await service.releases(db, dep)]
    base: dict[str, Any] = {
        "d": out,
        "status_class": STATUS_CLASS.get(out.status, ""),
        "address": server.host if server else None,
        "releases": releases,
        "release_numbers": {r.id: r.number for r in releases},
        "activity": await service.activity(db, dep),
        "job": job,
        "job_live": job is not None and job.status in ACTIVE_JOB,
        "job_events": await jobs.events(db, job.id) if job else [],
        "operations": OPERATIONS,
        "log_lines": LOG_LINES,
        "form": {},
        "error": None,
        "message": None,
        **await _live_sections(db, services, dep),
    }
    return render(
        request, "deployment_detail.html", {**base, **context}, principal=principal, status=status
    )


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
async def detail(
    deployment_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    services: ServicesDep,
    viewer: ViewerDep,
) -> Response:
    return await _detail_page(request, principal, db, services, viewer, deployment_id)


async def _refused(
    request: Request,
    principal: Principal,
    db: AsyncSession,
    services: Services,
    viewer: Viewer,
    deployment_id: int,
    exc: ValidationError | DeployMateError,
    **context: Any,
) -> Response:
    """Undo what the failed use case started, then show the page with the reason."""
    await _undo(db, viewer)
    if isinstance(exc, ValidationError):
        status, message = 422, _validation_message(exc)
    else:
        status, message = exc.status, exc.detail
    return await _detail_page(
        request,
        principal,
        db,
        services,
        viewer,
        deployment_id,
        status=status,
        error=message,
        **context,
    )


def _after(deployment_id: int, job: Job) -> Response:
    return RedirectResponse(f"/deployments/{deployment_id}?job={job.id}", status_code=303)


@router.post("/deployments/{deployment_id}/redeploy", response_class=HTMLResponse)
async def redeploy(
    deployment_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    services: ServicesDep,
    viewer: ViewerDep,
    image: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    try:
        body = RedeployRequest.model_validate({"image": image.strip() or None})
        job = await service.redeploy(db, services, viewer, deployment_id, body.image)
    except (ValidationError, DeployMateError) as exc:
        return await _refused(
            request, principal, db, services, viewer, deployment_id, exc, form={"image": image}
        )
    return _after(deployment_id, job)


@router.post("/deployments/{deployment_id}/rollback", response_class=HTMLResponse)
async def rollback(
    deployment_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    services: ServicesDep,
    viewer: ViewerDep,
    release_id: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    try:
        wanted = _int(release_id) if release_id.strip() else None
        if isinstance(wanted, str):
            raise ValidationFailed("release_id: must be a release id")
        job = await service.rollback(db, services, viewer, deployment_id, wanted)
    except DeployMateError as exc:
        return await _refused(request, principal, db, services, viewer, deployment_id, exc)
    return _after(deployment_id, job)


def _operation(kind: str) -> Any:
    async def handler(
        deployment_id: int,
        request: Request,
        principal: CurrentPrincipal,
        db: DbDep,
        services: ServicesDep,
        viewer: ViewerDep,
        confirm: Annotated[str, Form(max_length=10)] = "",
    ) -> Response:
        try:
            if confirm != "yes":
                raise ValidationFailed(f"Tick the confirmation box to {kind} the deployment.")
            job = await service.operate(db, services, viewer, deployment_id, kind)
        except DeployMateError as exc:
            return await _refused(request, principal, db, services, viewer, deployment_id, exc)
        return _after(deployment_id, job)

    handler.__name__ = f"{kind}_deployment_page"
    return handler


for _kind in OPERATIONS:
    router.add_api_route(
        f"/deployments/{{deployment_id}}/{_kind}",
        _operation(_kind),
        methods=["POST"],
        response_class=HTMLResponse,
    )


# --- overview cards --------------------------------------------------------------------------


async def cards(db: AsyncSession, services: Services, viewer: Viewer) -> list[dict[str, Any]]:
    """One card per visible deployment, for `_deployment_cards.html` on the overview."""
    deps = await service.list_visible(db, viewer)
    result = []
    for out in await service.to_out(db, services, deps):
        server = await db.get(Server, out.server_id) if out.server_id else None
        release = out.current_release
        result.append(
            {
                "id": out.id,
                "href": f"/deployments/{out.id}",
                "name": out.name,
                "status": out.status,
                "status_class": STATUS_CLASS.get(out.status, ""),
                "status_message": out.status_message,
                "target": out.target,
                "address": f"{server.host}:{out.external_port}"
                if server
                else f"control host :{out.external_port}",
                "image": out.image,
                "release": release.number if release else None,
                "release_image": release.image if release else None,
                "busy": out.active_job_id is not None,
            }
        )
    return result
