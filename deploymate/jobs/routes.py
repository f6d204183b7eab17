"""Job status and its live progress (SSE: replays from the start, then follows)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate import sse
from deploymate.deployments import service as deployments
from deploymate.deployments.deps import ServicesDep
from deploymate.deployments.schemas import JobOut
from deploymate.deps import DbDep
from deploymate.jobs import service
from deploymate.jobs.models import Job
from deploymate.servers.deps import ViewerDep
from deploymate.servers.service import Viewer

router = APIRouter(prefix="/api/jobs", tags=["jobs"])
FINISHED = ("succeeded", "failed", "interrupted")


async def visible_job(db: AsyncSession, viewer: Viewer, job_id: int) -> Job:
    job = await service.get(db, job_id)
    if job.deployment_id is not None:
        await deployments.get_visible(db, viewer, job.deployment_id)  # 404 if not theirs
    elif not viewer.user.is_admin:
        await service.get(db, -1)
    return job


@router.get("/{job_id}")
async def get_job(job_id: int, db: DbDep, viewer: ViewerDep) -> JobOut:
    job = await visible_job(db, viewer, job_id)
    events = await service.events(db, job.id)
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


@router.get("/{job_id}/events")
async def job_events(
    job_id: int, request: Request, db: DbDep, viewer: ViewerDep, services: ServicesDep
) -> StreamingResponse:
    await visible_job(db, viewer, job_id)
    last = request.headers.get("last-event-id", "0")
    after = int(last) if last.isdigit() else 0

    async def stream() -> AsyncIterator[str]:
        nonlocal after
        while True:
            async with services.sessions() as session:
                new = await service.events(session, job_id, after)
                job = await service.get(session, job_id)
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
