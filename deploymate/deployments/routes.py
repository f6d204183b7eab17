"""JSON API for deployments: CRUD, operations as jobs, health, diagnostics, logs, history,
templates, and the jobs they run (status and live progress)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.core.caller import Caller
from deploymate.core.db import utcnow
from deploymate.core.ids import parse_id
from deploymate.deployments import live, ports, presenters, service
from deploymate.deployments.schemas import (
    ActivityOut,
    DeploymentCreate,
    DeploymentCreated,
    DeploymentOut,
    DeploymentUpdate,
    ExecRequest,
    JobAccepted,
    JobOut,
    RedeployRequest,
    ReleaseOut,
    RollbackRequest,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
)
from deploymate.deps import CallerDep, ContextDep, DbDep, IdPath, PageDep, require_admin
from deploymate.jobs import service as jobs
from deploymate.jobs.models import Job
from deploymate.runtime import docker
from deploymate.servers.schemas import SuggestedPorts
from deploymate.web import sse

router = APIRouter(prefix="/api/deployments", tags=["deployments"])
WATCH_SECONDS = 1.0  # how often a watched deployment's state is compared
KEEP_ALIVE_SECONDS = 15.0  # a comment line on a quiet stream, so proxies keep it open
templates_router = APIRouter(prefix="/api/templates", tags=["deployments"])
jobs_router = APIRouter(prefix="/api/jobs", tags=["jobs"])
# Free public ports for a new deployment on a server: listed under the server's path.
server_ports_router = APIRouter(prefix="/api/servers", tags=["servers"])

FINISHED = ("succeeded", "failed", "interrupted")


@router.get("")
async def list_deployments(
    response: Response,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
    page: PageDep,
    include_deleted: bool = False,
    name: Annotated[str | None, Query(max_length=40)] = None,
) -> list[DeploymentOut]:
    """A page of the deployments you can see, by name (`?name=` for one name)."""
    deps = await service.list_for(
        db,
        caller=me,
        include_deleted=include_deleted,
        name=name,
        limit=page.limit,
        offset=page.offset,
    )
    total = await service.count_for(db, caller=me, include_deleted=include_deleted, name=name)
    page.total(response, total)
    return await presenters.present(db, deps=deps, cipher=context.cipher)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_deployment(
    body: DeploymentCreate, db: DbDep, me: CallerDep, context: ContextDep
) -> DeploymentCreated:
    dep, job = await service.create(db, context=context, caller=me, data=body)
    out = await presenters.present_one(db, dep=dep, cipher=context.cipher)
    return DeploymentCreated(**out.model_dump(), job_id=job.id)


@router.get("/{deployment_id}")
async def get_deployment(
    deployment_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep
) -> DeploymentOut:
    dep = await service.get(db, caller=me, deployment_id=deployment_id)
    return await presenters.present_one(db, dep=dep, cipher=context.cipher)


@router.patch("/{deployment_id}", status_code=status.HTTP_202_ACCEPTED)
async def update_deployment(
    deployment_id: IdPath, body: DeploymentUpdate, db: DbDep, me: CallerDep, context: ContextDep
) -> JobAccepted:
    job = await service.update(
        db, context=context, caller=me, deployment_id=deployment_id, data=body
    )
    return JobAccepted(job_id=job.id)


@router.delete("/{deployment_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_deployment(
    deployment_id: IdPath,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
    volumes: Annotated[
        bool, Query(description="also remove the named volumes (their data)")
    ] = False,
) -> JobAccepted:
    job = await service.operate(
        db,
        context=context,
        caller=me,
        deployment_id=deployment_id,
        kind="delete",
        extra={"volumes": volumes},
    )
    return JobAccepted(job_id=job.id)


@router.post("/{deployment_id}/redeploy", status_code=status.HTTP_202_ACCEPTED)
async def redeploy(
    deployment_id: IdPath,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
    body: RedeployRequest | None = None,
) -> JobAccepted:
    job = await service.redeploy(
        db,
        context=context,
        caller=me,
        deployment_id=deployment_id,
        image=body.image if body else None,
    )
    return JobAccepted(job_id=job.id)


@router.post("/{deployment_id}/rollback", status_code=status.HTTP_202_ACCEPTED)
async def rollback(
    deployment_id: IdPath,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
    body: RollbackRequest | None = None,
) -> JobAccepted:
    job = await service.rollback(
        db,
        context=context,
        caller=me,
        deployment_id=deployment_id,
        release_id=body.release_id if body else None,
    )
    return JobAccepted(job_id=job.id)


def _operation(kind: str) -> Any:
    async def handler(
        deployment_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep
    ) -> JobAccepted:
        job = await service.operate(
            db, context=context, caller=me, deployment_id=deployment_id, kind=kind
        )
        return JobAccepted(job_id=job.id)

    handler.__name__ = f"{kind}_deployment"
    handler.__doc__ = (
        f"{kind.capitalize()} the serving container (a job under the deployment's lock)."
    )
    return handler


for _kind in ("stop", "start", "restart"):
    router.add_api_route(
        f"/{{deployment_id}}/{_kind}",
        _operation(_kind),
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobAccepted,
    )


@router.delete("/{deployment_id}/lock", dependencies=[Depends(require_admin)])
async def force_unlock(deployment_id: IdPath, db: DbDep, me: CallerDep) -> dict[str, bool]:
    """Admins only, audited: release a lock whose holder is known to be gone."""
    return {"released": await service.force_unlock(db, caller=me, deployment_id=deployment_id)}


@router.get("/{deployment_id}/releases")
async def list_releases(
    deployment_id: IdPath, response: Response, page: PageDep, db: DbDep, me: CallerDep
) -> list[ReleaseOut]:
    """The deployment's releases, newest first, a page at a time."""
    dep = await service.get(db, caller=me, deployment_id=deployment_id)
    page.total(response, await service.count_releases(db, dep=dep))
    releases = await service.releases(db, dep=dep, limit=page.limit, offset=page.offset)
    return [presenters.release_out(r) for r in releases]


@router.get("/{deployment_id}/activity")
async def list_activity(deployment_id: IdPath, db: DbDep, me: CallerDep) -> list[ActivityOut]:
    dep = await service.get(db, caller=me, deployment_id=deployment_id)
    return [presenters.activity_out(e) for e in await service.activity(db, dep=dep)]


@router.get("/{deployment_id}/health")
async def health(
    deployment_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep
) -> dict[str, Any]:
    """A live check now, the same one the deploy gate uses."""
    dep = await service.get(db, caller=me, deployment_id=deployment_id)
    executor, name = await live.serving(db, context=context, dep=dep)
    return await live.health_now(executor, name, dep)


@router.get("/{deployment_id}/diagnostics")
async def diagnostics(
    deployment_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep
) -> dict[str, Any]:
    dep = await service.get(db, caller=me, deployment_id=deployment_id)
    executor, name = await live.serving(db, context=context, dep=dep)
    facts = await live.container_facts(executor, name)
    return {**facts, "volumes": await live.volumes(executor, dep.name, list(dep.volumes or []))}


@router.post("/{deployment_id}/smoke")
async def smoke(
    deployment_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep
) -> dict[str, Any]:
    """Run the smoke checks now against the serving release (HTTP through the proxy, commands
    in the container); the result is kept as the deployment's last smoke result."""
    dep = await service.get(db, caller=me, deployment_id=deployment_id)
    return await live.smoke_now(db, context=context, dep=dep)


@router.get("/{deployment_id}/logs", response_model=None)
async def logs(
    deployment_id: IdPath,
    request: Request,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
    tail: Annotated[int, Query(ge=1, le=10_000)] = 200,
    follow: bool = False,
    timestamps: bool = False,
    download: bool = False,
) -> dict[str, Any] | Response:
    """The serving container's last lines (`timestamps`: each with its UTC time; `download`:
    as a text file), or with `follow` a stream of them as they come."""
    dep = await service.get(db, caller=me, deployment_id=deployment_id)
    executor, name = await live.serving(db, context=context, dep=dep)
    if download:
        lines = await live.log_tail(executor, name, tail, timestamps=timestamps)
        stamp = utcnow().strftime("%Y%m%d-%H%M%S")
        return PlainTextResponse(
            "".join(f"{line}\n" for line in lines),
            headers={"Content-Disposition": f'attachment; filename="{dep.name}-{stamp}.log"'},
        )
    if not follow:
        lines = await live.log_tail(executor, name, tail, timestamps=timestamps)
        return {"container": name, "lines": lines}
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1000)

    async def on_line(line: str) -> None:
        await queue.put(line)

    async def produce() -> None:
        try:
            command = docker.logs(name, tail, follow=True, timestamps=timestamps)
            await executor.run(command, on_line=on_line)
        finally:
            await queue.put(None)

    async def stream() -> AsyncIterator[str]:
        task = asyncio.create_task(produce())
        try:
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if line is None:
                    yield sse.event("end", {"container": name})
                    return
                yield sse.event(
                    "log", {"line": docker.readable_stamp(line) if timestamps else line}
                )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return sse.response(stream())


@router.post("/{deployment_id}/exec")
async def exec_command(
    deployment_id: IdPath, body: ExecRequest, db: DbDep, me: CallerDep, context: ContextDep
) -> StreamingResponse:
    """Run a one-off command in the serving container: its output as `out` events, then `end`
    with the exit code (audited: the program and the number of arguments)."""
    dep = await service.may_exec(
        db, context=context, caller=me, deployment_id=deployment_id, command=body.command
    )
    executor, name = await live.serving(db, context=context, dep=dep)

    async def run(on_line: sse.Lines) -> int | None:
        command = docker.exec_in(name, body.command, body.timeout)
        return (await executor.run(command, on_line=on_line)).exit_status

    return sse.command_output(run, KEEP_ALIVE_SECONDS)


@router.get("/{deployment_id}/watch")
async def watch(
    deployment_id: IdPath, request: Request, db: DbDep, me: CallerDep, context: ContextDep
) -> StreamingResponse:
    """The deployment's state (status, its message, the serving release, the running job) now
    and each time it changes, for a page that keeps itself up to date."""
    await service.get(db, caller=me, deployment_id=deployment_id)

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        quiet = 0.0
        while not await request.is_disconnected():
            async with context.sessions() as session:
                state = await service.state_of(session, deployment_id)
            if state != last:
                yield sse.event("state", state)
                last, quiet = state, 0.0
            elif quiet >= KEEP_ALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet = 0.0
            await asyncio.sleep(WATCH_SECONDS)
            quiet += WATCH_SECONDS

    return sse.response(stream())


@router.post("/{deployment_id}/template", status_code=status.HTTP_201_CREATED)
async def save_template(
    deployment_id: IdPath, body: TemplateCreate, db: DbDep, me: CallerDep
) -> TemplateOut:
    """Save the settings (never secret values) to create deployments from later."""
    template = await service.save_template(
        db, caller=me, deployment_id=deployment_id, name=body.name
    )
    return TemplateOut(id=template.id, name=template.name, settings=template.settings)


@templates_router.get("")
async def list_templates(db: DbDep, me: CallerDep) -> list[TemplateOut]:
    return [
        TemplateOut(id=t.id, name=t.name, settings=t.settings)
        for t in await service.list_templates(db, caller=me)
    ]


@templates_router.get("/{template_id}")
async def get_template(template_id: IdPath, db: DbDep, me: CallerDep) -> TemplateOut:
    t = await service.get_template(db, caller=me, template_id=template_id)
    return TemplateOut(id=t.id, name=t.name, settings=t.settings)


@templates_router.patch("/{template_id}")
async def update_template(
    template_id: IdPath, body: TemplateUpdate, db: DbDep, me: CallerDep
) -> TemplateOut:
    """Rename, or change settings (validated like a deployment's; never a port or a secret)."""
    t = await service.update_template(
        db, caller=me, template_id=template_id, name=body.name, settings=body.settings
    )
    return TemplateOut(id=t.id, name=t.name, settings=t.settings)


@templates_router.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_template(template_id: IdPath, db: DbDep, me: CallerDep) -> None:
    await service.delete_template(db, caller=me, template_id=template_id)


# --- jobs ----------------------------------------------------------------------------------


async def visible_job(db: AsyncSession, caller: Caller, job_id: int) -> Job:
    """A job of a deployment the caller may see (admins: every job)."""
    job = await jobs.get(db, job_id)
    if job.deployment_id is not None:
        await service.get(db, caller=caller, deployment_id=job.deployment_id)  # 404 if not theirs
    elif not caller.is_admin:
        await jobs.get(db, -1)
    return job


@jobs_router.get("/{job_id}")
async def get_job(job_id: IdPath, db: DbDep, me: CallerDep) -> JobOut:
    job = await visible_job(db, me, job_id)
    events = await jobs.events(db, job.id)
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status,
        deployment_id=job.deployment_id,
        release_id=job.release_id,
        created_by=job.created_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        log=[
            {"id": e.id, "at": e.created_at, "level": e.level, "message": e.message} for e in events
        ],
    )


@jobs_router.get("/{job_id}/events")
async def job_events(
    job_id: IdPath,
    request: Request,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    """The job's log from the start (or after `Last-Event-ID`), then live until it ends."""
    await visible_job(db, me, job_id)
    after = parse_id(last_event_id) or 0

    async def stream() -> AsyncIterator[str]:
        nonlocal after
        while True:
            async with context.sessions() as session:
                new = await jobs.events(session, job_id, after)
                job = await jobs.get(session, job_id)
            for e in new:
                after = e.id
                yield sse.event(
                    "log", {"level": e.level, "message": e.message, "at": e.created_at}, e.id
                )
            if job.status in FINISHED and not new:
                yield sse.event("end", {"status": job.status, "error": job.error})
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.3)

    return sse.response(stream())


@server_ports_router.get("/{server_id}/suggested-ports")
async def suggested_ports(
    server_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep
) -> SuggestedPorts:
    """Free public ports on the server: not listening there, not held by a deployment."""
    free, listening = await ports.suggest(db, context=context, caller=me, server_id=server_id)
    return SuggestedPorts(ports=free, listening=listening)
