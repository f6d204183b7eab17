"""JSON API for deployments: CRUD, operations as jobs, health, diagnostics, logs, history."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import StreamingResponse

from deploymate import sse
from deploymate.deployments import service
from deploymate.deployments.deps import ServicesDep
from deploymate.deployments.schemas import (
    ActivityOut,
    DeploymentCreate,
    DeploymentCreated,
    DeploymentOut,
    DeploymentUpdate,
    JobAccepted,
    RedeployRequest,
    ReleaseOut,
    RollbackRequest,
    TemplateCreate,
)
from deploymate.deps import DbDep, require_admin
from deploymate.runtime import docker
from deploymate.servers.deps import ViewerDep

router = APIRouter(prefix="/api/deployments", tags=["deployments"])
templates_router = APIRouter(prefix="/api/templates", tags=["deployments"])


@router.get("")
async def list_deployments(
    db: DbDep, viewer: ViewerDep, services: ServicesDep, include_deleted: bool = False
) -> list[DeploymentOut]:
    return await service.to_out(
        db, services, await service.list_visible(db, viewer, include_deleted)
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_deployment(
    body: DeploymentCreate, db: DbDep, viewer: ViewerDep, services: ServicesDep
) -> DeploymentCreated:
    dep, job = await service.create(db, services, viewer, body)
    out = (await service.to_out(db, services, [dep]))[0]
    return DeploymentCreated(**out.model_dump(), job_id=job.id)


@router.get("/{deployment_id}")
async def get_deployment(
    deployment_id: int, db: DbDep, viewer: ViewerDep, services: ServicesDep
) -> DeploymentOut:
    return (
        await service.to_out(db, services, [await service.get_visible(db, viewer, deployment_id)])
    )[0]


@router.patch("/{deployment_id}", status_code=status.HTTP_202_ACCEPTED)
async def update_deployment(
    deployment_id: int, body: DeploymentUpdate, db: DbDep, viewer: ViewerDep, services: ServicesDep
) -> JobAccepted:
    return JobAccepted(job_id=(await service.update(db, services, viewer, deployment_id, body)).id)


@router.delete("/{deployment_id}", status_code=status.HTTP_202_ACCEPTED)
async def delete_deployment(
    deployment_id: int, db: DbDep, viewer: ViewerDep, services: ServicesDep
) -> JobAccepted:
    return JobAccepted(
        job_id=(await service.operate(db, services, viewer, deployment_id, "delete")).id
    )


@router.post("/{deployment_id}/redeploy", status_code=status.HTTP_202_ACCEPTED)
async def redeploy(
    deployment_id: int,
    db: DbDep,
    viewer: ViewerDep,
    services: ServicesDep,
    body: RedeployRequest | None = None,
) -> JobAccepted:
    image = body.image if body else None
    return JobAccepted(
        job_id=(await service.redeploy(db, services, viewer, deployment_id, image)).id
    )


@router.post("/{deployment_id}/rollback", status_code=status.HTTP_202_ACCEPTED)
async def rollback(
    deployment_id: int,
    db: DbDep,
    viewer: ViewerDep,
    services: ServicesDep,
    body: RollbackRequest | None = None,
) -> JobAccepted:
    release_id = body.release_id if body else None
    return JobAccepted(
        job_id=(await service.rollback(db, services, viewer, deployment_id, release_id)).id
    )


def _operation(kind: str) -> Any:
    async def handler(
        deployment_id: int, db: DbDep, viewer: ViewerDep, services: ServicesDep
    ) -> JobAccepted:
        return JobAccepted(
            job_id=(await service.operate(db, services, viewer, deployment_id, kind)).id
        )

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
async def force_unlock(deployment_id: int, db: DbDep, viewer: ViewerDep) -> dict[str, bool]:
    """Admins only, audited: release a lock whose holder is known to be gone."""
    return {"released": await service.force_unlock(db, viewer, deployment_id)}


@router.get("/{deployment_id}/releases")
async def list_releases(deployment_id: int, db: DbDep, viewer: ViewerDep) -> list[ReleaseOut]:
    dep = await service.get_visible(db, viewer, deployment_id)
    return [service.release_out(r) for r in await service.releases(db, dep)]


@router.get("/{deployment_id}/activity")
async def list_activity(deployment_id: int, db: DbDep, viewer: ViewerDep) -> list[ActivityOut]:
    dep = await service.get_visible(db, viewer, deployment_id)
    return [
        ActivityOut(
            id=e.id,
            created_at=e.created_at,
            actor=e.actor,
            action=e.action,
            message=e.message,
            job_id=e.job_id,
        )
        for e in await service.activity(db, dep)
    ]


@router.get("/{deployment_id}/health")
async def health(
    deployment_id: int, db: DbDep, viewer: ViewerDep, services: ServicesDep
) -> dict[str, Any]:
    """A live check now, the same one the deploy gate uses."""
    dep = await service.get_visible(db, viewer, deployment_id)
    executor, name = await service.serving(db, services, dep)
    return await service.health_now(executor, name, dep)


@router.get("/{deployment_id}/diagnostics")
async def diagnostics(
    deployment_id: int, db: DbDep, viewer: ViewerDep, services: ServicesDep
) -> dict[str, Any]:
    dep = await service.get_visible(db, viewer, deployment_id)
    executor, name = await service.serving(db, services, dep)
    return await service.container_facts(executor, name)


@router.get("/{deployment_id}/logs", response_model=None)
async def logs(
    deployment_id: int,
    request: Request,
    db: DbDep,
    viewer: ViewerDep,
    services: ServicesDep,
    tail: Annotated[int, Query(ge=1, le=10_000)] = 200,
    follow: bool = False,
) -> dict[str, Any] | StreamingResponse:
    dep = await service.get_visible(db, viewer, deployment_id)
    executor, name = await service.serving(db, services, dep)
    if not follow:
        return {"container": name, "lines": await service.log_tail(executor, name, tail)}
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1000)

    async def on_line(line: str) -> None:
        await queue.put(line)

    async def produce() -> None:
        try:
            await executor.run(docker.logs(name, tail, follow=True), on_line=on_line)
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
                yield sse.event("log", {"line": line})
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return sse.response(stream())


@router.post("/{deployment_id}/template", status_code=status.HTTP_201_CREATED)
async def save_template(
    deployment_id: int, body: TemplateCreate, db: DbDep, viewer: ViewerDep
) -> dict[str, Any]:
    """Save the settings (never secret values) to create deployments from later."""
    template = await service.save_template(db, viewer, deployment_id, body.name)
    return {"id": template.id, "name": template.name, "settings": template.settings}


@templates_router.get("")
async def list_templates(db: DbDep, viewer: ViewerDep) -> list[dict[str, Any]]:
    return [
        {"id": t.id, "name": t.name, "settings": t.settings}
        for t in await service.list_templates(db, viewer)
    ]
