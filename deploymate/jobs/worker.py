"""The job worker: claims queued jobs, runs their handlers with a heartbeat, sweeps orphans."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploymate.core.errors import DeployMateError
from deploymate.jobs import service
from deploymate.jobs.models import Job

log = logging.getLogger("deploymate.worker")

HEARTBEAT_SECONDS = 5.0
SWEEP_SECONDS = 10.0


class JobFailed(DeployMateError):
    """Raised by a handler to end its job as failed with a message for the operator."""

    code = "job_failed"


@dataclass
class JobContext:
    job: Job
    sessions: async_sessionmaker[AsyncSession]
    context: Any  # the AppContext, typed by the handlers that use it

    async def log(self, message: str, level: str = "info") -> None:
        async with self.sessions() as db:
            await service.log(db, self.job.id, message, level)


Handler = Callable[[JobContext], Awaitable[None]]
Recover = Callable[[Any, Job], Awaitable[None]]


class Worker:
    """Runs in `deploymate serve` (and alone in `deploymate worker`); async tasks, one per job."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        context: Any,
        handlers: Mapping[str, Handler],
        recover: Recover | None = None,
        *,
        single_process: bool = True,
        concurrency: int = 16,
        poll_seconds: float = 0.5,
    ) -> None:
        self.sessions = sessions
        self.context = context
        self.handlers = handlers
        self.recover = recover
        self.single_process = single_process
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.worker_id = f"worker-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        await self.sweep(startup=True)
        self._loop_task = asyncio.create_task(self._loop(), name=self.worker_id)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *self._tasks, *([self._loop_task] if self._loop_task else []), return_exceptions=True
        )

    async def sweep(self, *, startup: bool = False) -> list[int]:
        """Mark jobs whose worker died as interrupted and let their domain reconcile."""
        async with self.sessions() as db:
            found = await service.orphans(db, all_running=startup and self.single_process)
            found = [j for j in found if j.worker_id != self.worker_id]
            for job in found:
                await service.finish(
                    db, job.id, "interrupted", "the control host stopped while this job ran"
                )
        for job in found:
            log.warning("job %s (%s) was interrupted; reconciling", job.id, job.kind)
            if self.recover is not None:
                try:
                    await self.recover(self.context, job)
                except Exception:
                    log.exception("reconciling after job %s failed", job.id)
        return [j.id for j in found]

    async def _loop(self) -> None:
        last_sweep = asyncio.get_running_loop().time()
        while True:
            try:
                while len(self._tasks) < self.concurrency:
                    async with self.sessions() as db:
                        job = await service.claim_next(db, self.worker_id)
                    if job is None:
                        break
                    task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                now = asyncio.get_running_loop().time()
                if now - last_sweep > SWEEP_SECONDS:
                    last_sweep = now
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker loop error; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                async with self.sessions() as db:
                    await service.heartbeat(db, job)
            except Exception:
                log.exception("heartbeat of job %s failed", job.id)

    async def _run(self, job: Job) -> None:
        ctx = JobContext(job=job, sessions=self.sessions, context=self.context)
        beat = asyncio.create_task(self._heartbeat(job), name=f"heartbeat-{job.id}")
        status, error = "succeeded", None
        try:
            handler = self.handlers.get(job.kind)
            if handler is None:
                raise JobFailed(f"no handler for job kind {job.kind}")
            await handler(ctx)
        except DeployMateError as exc:
            status, error = "failed", exc.detail
        except asyncio.CancelledError:
            beat.cancel()
            raise  # shutting down: the lease runs out and the next start marks it interrupted
        except Exception:
            log.exception("job %s crashed", job.id)
            status, error = "failed", "internal error; see the server log"
        finally:
            beat.cancel()
        async with self.sessions() as db:
            await service.finish(db, job.id, status, error)
        self.wake()  # a slot is free and the deployment's lock released: claim the next now
