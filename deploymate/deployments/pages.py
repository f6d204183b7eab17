"""Console pages for deployments: the create workflow and a deployment's page.

Every form works without JavaScript; /static/deployments.js only adds live streaming (the job
log and following the container log over the SSE endpoints of the JSON API).
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.errors import DeployMateError, ValidationFailed
from deploymate.core.ids import parse_id
from deploymate.deployments import forms, live, ports, presenters, service
from deploymate.deployments.models import Deployment
from deploymate.deployments.presenters import STATUS_CLASS
from deploymate.deployments.schemas import (
    DeploymentCreate,
    DeploymentUpdate,
    RedeployRequest,
    TemplateCreate,
    TemplateUpdate,
)
from deploymate.deps import CallerDep, ContextDep, DbDep, IdPath
from deploymate.jobs import service as jobs
from deploymate.jobs.models import Job
from deploymate.monitoring import service as monitor
from deploymate.servers import service as servers
from deploymate.servers.models import Server
from deploymate.servers.targets import may_use_control_host
from deploymate.web import flash
from deploymate.web.forms import number, pairs, refused
from deploymate.web.render import pager, render

log = logging.getLogger("deploymate.deployments.pages")

router = APIRouter(include_in_schema=False)
WORKFLOW = "/app/deployment-workflow"
LOCAL = "local"  # the target select's value for the control host
RESTART_POLICIES = ("unless-stopped", "always", "on-failure", "no")
OPERATIONS = ("stop", "start", "restart", "delete")
CONFIRMED = ("stop", "restart", "delete")  # interrupt the service: asked for twice
LOG_LINES = 100
TARGET_TIMEOUT = 15.0  # seconds for the live sections of a deployment's page
ACTIVE_JOB = ("queued", "running")
TLS_MODES = {
    "auto": "a public certificate; needs public DNS pointing at the server",
    "internal": "a certificate from the proxy's own authority; browsers warn",
    "off": "plain HTTP",
}


# --- the create workflow ---------------------------------------------------------------------


def _create_body(form: dict[str, str], secret_text: str) -> dict[str, Any]:
    """The DeploymentCreate body from the form: a blank field is left unset (template/default)."""
    target = form.get("server_id", "").strip()
    if not target:
        raise ValidationFailed("choose a target", field="server_id")
    data: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "server_id": None if target == LOCAL else number(target),
        **forms.settings(form, blank_is_unset=True),
    }
    if form.get("template_id", "").strip():
        data["template_id"] = number(form["template_id"])
    secret = pairs(secret_text, "secret_env")
    if secret:
        data["secret_env"] = secret
    return data


async def _suggest(db: AsyncSession, context: AppContext, me: Caller, target: str) -> list[int]:
    server_id = None if target == LOCAL else parse_id(target)
    if target != LOCAL and server_id is None:
        raise ValidationFailed("choose a target", field="server_id")
    free, _ = await ports.suggest(db, context=context, caller=me, server_id=server_id)
    return free


async def _workflow_page(
    request: Request,
    me: Caller,
    db: AsyncSession,
    context: AppContext,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    targets = await servers.list_for(db, caller=me)
    local = may_use_control_host(context.settings, me)
    templates = [
        {"id": t.id, "name": t.name, "image": t.settings.get("image", "")}
        for t in await service.list_templates(db, caller=me)
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
    return render(request, "deployment_workflow.html", {**base, **extra}, me=me, status=status)


@router.get(WORKFLOW, response_class=HTMLResponse)
async def workflow(
    request: Request,
    me: CallerDep,
    db: DbDep,
    context: ContextDep,
    server_id: str = "",
    template_id: str = "",
) -> Response:
    """`?server_id=` (a server's id or `local`) fills in the first free port of that target."""
    form: dict[str, str] = {"server_id": server_id, "template_id": template_id}
    suggested: list[int] | None = None
    suggest_error = None
    if server_id:
        try:
            suggested = await _suggest(db, context, me, server_id)
        except DeployMateError as exc:
            suggest_error = exc.detail
        if suggested:
            form["external_port"] = str(suggested[0])
    return await _workflow_page(
        request, me, db, context, form=form, suggested=suggested, suggest_error=suggest_error
    )


@router.post(WORKFLOW, response_class=HTMLResponse)
async def create(request: Request, me: CallerDep, db: DbDep, context: ContextDep) -> Response:
    raw = await request.form()
    form = {k: v for k, v in raw.items() if isinstance(v, str) and k != "secret_env"}
    form.pop("csrf_token", None)
    secret_value = raw.get("secret_env")
    secret_text = secret_value if isinstance(secret_value, str) else ""
    try:
        body = DeploymentCreate.model_validate(_create_body(form, secret_text))
        dep, job = await service.create(db, context=context, caller=me, data=body)
    except (ValidationError, DeployMateError) as exc:
        page = partial(_workflow_page, request, me, db, context)
        # secret values are never sent back
        return await refused(db, exc, page, form=form, secret_dropped=bool(secret_text.strip()))
    return RedirectResponse(f"/deployments/{dep.id}?job={job.id}", status_code=303)


# --- the list ------------------------------------------------------------------------------

LIST_PAGE = 50


@router.get("/app/deployments", response_class=HTMLResponse)
async def listing(request: Request, me: CallerDep, db: DbDep) -> Response:
    """Every deployment you can see, a page at a time, with its state, target and release."""
    show_deleted = request.query_params.get("deleted") == "1"
    page = parse_id(request.query_params.get("page")) or 1
    total = await service.count_for(db, caller=me, include_deleted=show_deleted)
    deps = await service.list_for(
        db,
        caller=me,
        include_deleted=show_deleted,
        limit=LIST_PAGE,
        offset=(page - 1) * LIST_PAGE,
    )
    context = {
        "rows": await presenters.cards(db, deps=deps),
        "show_deleted": show_deleted,
        "pager": pager(request, page=page, size=LIST_PAGE, total=total),
    }
    return render(request, "deployments_list.html", context, me=me)


# --- a deployment's page ---------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeployMateError):
        return exc.detail
    if isinstance(exc, TimeoutError):
        return f"the target did not answer within {TARGET_TIMEOUT:g}s"
    log.warning("live section of a deployment page failed: %r", exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


NOTHING_LIVE: dict[str, Any] = {
    "health": None,
    "health_error": None,
    "diagnostics": None,
    "diagnostics_error": None,
    "logs": None,
    "logs_error": None,
}


async def _live_sections(db: AsyncSession, context: AppContext, dep: Deployment) -> dict[str, Any]:
    """Health (a check now), diagnostics and the last log lines of the serving container.

    A failure (target unreachable, container gone) fills that section's error, never the page's.
    """
    out = dict(NOTHING_LIVE)

    def fail_all(message: str) -> dict[str, Any]:
        return {**out, "health_error": message, "diagnostics_error": message, "logs_error": message}

    if dep.status == "deleted":
        return fail_all("the deployment was deleted; its container was removed")
    try:
        executor, name = await live.serving(db, context=context, dep=dep)
        facts = await asyncio.wait_for(live.container_facts(executor, name), TARGET_TIMEOUT)
    except Exception as exc:  # any failure to reach the target is shown, not raised
        return fail_all(_describe(exc))
    out["diagnostics"] = facts
    if not facts["exists"]:
        out["health"] = {"healthy": False, "detail": f"container {name} does not exist"}
        out["logs_error"] = f"container {name} does not exist"
        return out
    health, lines = await asyncio.gather(
        asyncio.wait_for(live.health_now(executor, name, dep), TARGET_TIMEOUT),
        asyncio.wait_for(live.log_tail(executor, name, LOG_LINES, timestamps=True), TARGET_TIMEOUT),
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
    wanted_id = parse_id(wanted)
    if wanted_id is not None:
        job = await db.get(Job, wanted_id)
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
    me: Caller,
    db: AsyncSession,
    context: AppContext,
    deployment_id: int,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    dep = await service.get(db, caller=me, deployment_id=deployment_id)
    out = await presenters.present_one(db, dep=dep, cipher=context.cipher)
    server = await db.get(Server, dep.server_id) if dep.server_id else None
    job = await _job_to_show(db, dep, request.query_params.get("job"), out.active_job_id)
    releases = [presenters.release_out(r) for r in await service.releases(db, dep=dep)]
    starting = out.status == "deploying" and out.current_release is None
    idle = out.current_release is None and out.status != "deleted"  # nothing serves to ask
    base: dict[str, Any] = {
        "d": out,
        "status_class": STATUS_CLASS.get(out.status, ""),
        "shown_status": "starting" if starting else out.status,
        "starting": starting,
        "idle": idle,
        "watch_state": json.dumps(await service.state_of(db, dep.id)),
        "monitoring": await monitor.view_of(db, monitor.DEPLOYMENT, dep.id),
        "server_monitoring": (
            await monitor.view_of(db, monitor.SERVER, server.id) if server is not None else None
        ),
        "address": server.host if server else None,
        "domain_links": [
            {"domain": domain, "url": presenters.domain_url(dep, domain)}
            for domain in dep.domains or []
        ],
        "tls_modes": TLS_MODES,
        "smoke_lines": [forms.smoke_line(check) for check in dep.smoke or []],
        "releases": releases,
        "release_numbers": {r.id: r.number for r in releases},
        "activity": await service.activity(db, dep=dep),
        "job": job,
        "job_live": job is not None and job.status in ACTIVE_JOB,
        "job_events": await jobs.events(db, job.id) if job else [],
        "operations": operations_for(out.status, out.current_release is not None),
        "confirmed": CONFIRMED,
        "served": service.SERVED,
        "log_lines": LOG_LINES,
        "settings_form": forms.to_form(service.snapshot(dep)),
        "restart_policies": RESTART_POLICIES,
        "open_settings": False,
        "form": {},
        "error": None,
        "message": None,
        **(NOTHING_LIVE if idle else await _live_sections(db, context, dep)),
    }
    return render(request, "deployment_detail.html", {**base, **extra}, me=me, status=status)


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
async def detail(
    deployment_id: IdPath, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    return await _detail_page(request, me, db, context, deployment_id)


def operations_for(status: str, serving: bool) -> list[str]:
    """The operations that make sense now: no Start on a running deployment, nothing but
    Delete without a release that served."""
    if status == "deleted":
        return []
    if not serving:
        return ["delete"]
    if status == "running":
        return ["stop", "restart", "delete"]
    if status == "stopped":
        return ["start", "delete"]
    return ["start", "restart", "delete"]


@router.post("/deployments/{deployment_id}/smoke", response_class=HTMLResponse)
async def smoke_now(
    deployment_id: IdPath, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    """The smoke checks against what serves now; the result shows in the summary."""
    try:
        dep = await service.get(db, caller=me, deployment_id=deployment_id)
        result = await live.smoke_now(db, context=context, dep=dep)
    except DeployMateError as exc:
        return await refused(
            db, exc, partial(_detail_page, request, me, db, context, deployment_id)
        )
    failed = [c for c in result["checks"] if not c["ok"]]
    said = (
        f"Smoke checks: {len(failed)} of {len(result['checks'])} failed; see the summary."
        if failed
        else f"Smoke checks: all {len(result['checks'])} passed."
    )
    return flash.redirect(f"/deployments/{deployment_id}#summary", said)


def _after(deployment_id: int, job: Job) -> Response:
    return RedirectResponse(f"/deployments/{deployment_id}?job={job.id}", status_code=303)


@router.post("/deployments/{deployment_id}/redeploy", response_class=HTMLResponse)
async def redeploy(
    deployment_id: IdPath,
    request: Request,
    me: CallerDep,
    db: DbDep,
    context: ContextDep,
    image: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    try:
        body = RedeployRequest.model_validate({"image": image.strip() or None})
        job = await service.redeploy(
            db, context=context, caller=me, deployment_id=deployment_id, image=body.image
        )
    except (ValidationError, DeployMateError) as exc:
        page = partial(_detail_page, request, me, db, context, deployment_id)
        return await refused(db, exc, page, form={"image": image})
    return _after(deployment_id, job)


@router.post("/deployments/{deployment_id}/rollback", response_class=HTMLResponse)
async def rollback(
    deployment_id: IdPath,
    request: Request,
    me: CallerDep,
    db: DbDep,
    context: ContextDep,
    release_id: Annotated[str, Form(max_length=20)] = "",
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        if confirm != "yes":
            raise ValidationFailed("Tick the confirmation box to roll back.")
        wanted = parse_id(release_id) if release_id.strip() else None
        if release_id.strip() and wanted is None:
            raise ValidationFailed("must be a release id", field="release_id")
        job = await service.rollback(
            db, context=context, caller=me, deployment_id=deployment_id, release_id=wanted
        )
    except DeployMateError as exc:
        page = partial(_detail_page, request, me, db, context, deployment_id)
        return await refused(db, exc, page)
    return _after(deployment_id, job)


def _operation(kind: str) -> Any:
    async def handler(
        deployment_id: IdPath,
        request: Request,
        me: CallerDep,
        db: DbDep,
        context: ContextDep,
        confirm: Annotated[str, Form(max_length=10)] = "",
        volumes: Annotated[str, Form(max_length=10)] = "",
    ) -> Response:
        try:
            if kind in CONFIRMED and confirm != "yes":
                raise ValidationFailed(f"Tick the confirmation box to {kind} the deployment.")
            job = await service.operate(
                db,
                context=context,
                caller=me,
                deployment_id=deployment_id,
                kind=kind,
                extra={"volumes": True} if kind == "delete" and volumes == "yes" else None,
            )
        except DeployMateError as exc:
            page = partial(_detail_page, request, me, db, context, deployment_id)
            return await refused(db, exc, page)
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


# --- changing the settings, templates ------------------------------------------------------


def _form_text(raw: Any) -> dict[str, str]:
    return {k: v for k, v in raw.items() if isinstance(v, str) and k not in ("secret_env",)}


@router.post("/deployments/{deployment_id}/settings", response_class=HTMLResponse)
async def change_settings(
    deployment_id: IdPath, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    """Every setting the API's PATCH takes; what changed is saved as a new release and deployed."""
    raw = await request.form()
    form = _form_text(raw)
    secret_value = raw.get("secret_env")
    secret_text = secret_value if isinstance(secret_value, str) else ""
    remove = [v for v in raw.getlist("secret_remove") if isinstance(v, str)]
    page = partial(_detail_page, request, me, db, context, deployment_id)
    try:
        dep = await service.get(db, caller=me, deployment_id=deployment_id)
        body = forms.changes(form, forms.to_form(service.snapshot(dep)))
        secret = pairs(secret_text, "secret_env")
        if secret:
            body["secret_env"] = secret
        if remove:
            body["secret_env_remove"] = remove
        if not body:
            return await page(message="Nothing changed.")
        data = DeploymentUpdate.model_validate(body)
        job = await service.update(
            db, context=context, caller=me, deployment_id=deployment_id, data=data
        )
    except (ValidationError, DeployMateError) as exc:
        return await refused(
            db,
            exc,
            page,
            settings_form=form,
            open_settings=True,
            secret_dropped=bool(secret_text.strip()),
        )
    return _after(deployment_id, job)


@router.post("/deployments/{deployment_id}/template", response_class=HTMLResponse)
async def save_template(
    deployment_id: IdPath,
    request: Request,
    me: CallerDep,
    db: DbDep,
    context: ContextDep,
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    try:
        body = TemplateCreate.model_validate({"name": name})
        template = await service.save_template(
            db, caller=me, deployment_id=deployment_id, name=body.name
        )
    except (ValidationError, DeployMateError) as exc:
        page = partial(_detail_page, request, me, db, context, deployment_id)
        return await refused(db, exc, page, template_name=name)
    return flash.redirect(f"/app/templates?edit={template.id}", f"Template {template.name} saved.")


async def _templates_page(
    request: Request, me: Caller, db: AsyncSession, *, status: int = 200, **extra: Any
) -> Response:
    templates = [
        {"id": t.id, "name": t.name, "settings": t.settings, "form": forms.to_form(t.settings)}
        for t in await service.list_templates(db, caller=me)
    ]
    context: dict[str, Any] = {
        "templates": templates,
        "restart_policies": RESTART_POLICIES,
        "editing": parse_id(request.query_params.get("edit")),
        "message": None,
        "error": None,
        **extra,
    }
    return render(request, "templates.html", context, me=me, status=status)


@router.get("/app/templates", response_class=HTMLResponse)
async def templates_page(request: Request, me: CallerDep, db: DbDep) -> Response:
    return await _templates_page(request, me, db)


@router.post("/app/templates/{template_id}", response_class=HTMLResponse)
async def change_template(
    template_id: IdPath, request: Request, me: CallerDep, db: DbDep
) -> Response:
    """Rename a template and change its settings."""
    form = _form_text(await request.form())
    try:
        body = TemplateUpdate.model_validate(
            {"name": form.get("name", ""), "settings": forms.settings(form, blank_is_unset=False)}
        )
        template = await service.update_template(
            db, caller=me, template_id=template_id, name=body.name, settings=body.settings
        )
    except (ValidationError, DeployMateError) as exc:
        page = partial(_templates_page, request, me, db)
        return await refused(db, exc, page, editing=template_id, edit_form=form)
    return flash.redirect("/app/templates", f"Template {template.name} saved.")


@router.post("/app/templates/{template_id}/delete", response_class=HTMLResponse)
async def delete_template(
    template_id: IdPath,
    request: Request,
    me: CallerDep,
    db: DbDep,
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        if confirm != "yes":
            raise ValidationFailed("Tick the confirmation box to delete a template.")
        await service.delete_template(db, caller=me, template_id=template_id)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_templates_page, request, me, db))
    return flash.redirect("/app/templates", "Template deleted.")
