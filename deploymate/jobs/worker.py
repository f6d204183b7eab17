"""The job worker: claims queued jobs, runs their handlers with a heartbeat, sweeps orphans."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploymate.core.errors import DeployMateError
from deploymate.jobs import service
from deploymate.jobs.models import Job

log = logging.getLogger("deploymate.worker")

HEARTBEAT_SECONDS = 5.0
SWEEP_SECONDS = 10.0
# How long a job's final state waits for a database that went away (PostgreSQL restarting,
# SQLite locked by another program) before the next start has to settle it.
DB_OUTAGE_SECONDS = 300.0
DB_RETRY_SECONDS = 1.0


class JobFailed(DeployMateError):
    """Raised by a handler to end its job as failed with a message for the operator."""

    code = "job_failed"


@dataclass
class JobContext:
    job: Job
    sessions: async_sessionmaker[AsyncSession]
    context: Any  # the AppContext, typed by the handlers that use it

    pending: list[tuple[str, str]] = field(default_factory=list)
    # The services of an app release log at once: their lines are written one at a time.
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def log(self, message: str, level: str = "info") -> None:
        """Write a line of the job's log. While the database is away, lines wait here and the
        release goes on: the target is never left half-done for want of a log row."""
        self.pending.append((message, level))
        try:
            await self.flush()
        except DBAPIError as exc:
            if len(self.pending) == 1:
                log.warning("job %s: its log waits for the database (%s)", self.job.id, _why(exc))

    async def flush(self) -> None:
        """Write the lines that wait, in order (raises while the database is away)."""
        async with self._writing:
            while self.pending:
                async with self.sessions() as db:
                    await service.log(db, self.job.id, *self.pending[0])
                self.pending.pop(0)


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
        except DBAPIError as exc:
            # The records could not follow the target: once the database is back, the job is
            # settled like one whose process died (its domain reconciles the records).
            log.warning("job %s lost the database (%s); it will be reconciled", job.id, _why(exc))
            status = "interrupted"
            error = "the database was unavailable while this job ran; the records were "
            error += "reconciled with the target"
        except Exception:
            log.exception("job %s crashed", job.id)
            status, error = "failed", "internal error; see the server log"
        finally:
            beat.cancel()
        if status == "interrupted":
            await self._until_db(ctx, ctx.flush)
            await self._settle(job)  # the job ends once its records match the target
        await self._until_db(ctx, lambda: self._finish(ctx, status, error))
        self.wake()  # a slot is free and the deployment's lock released: claim the next now

    async def _settle(self, job: Job) -> None:
        if self.recover is None:
            return
        try:
            await self.recover(self.context, job)
        except Exception:
            log.exception("reconciling after job %s failed", job.id)

    async def _finish(self, ctx: JobContext, status: str, error: str | None) -> None:
        await ctx.flush()  # the lines that waited come before the end
        async with self.sessions() as db:
            await service.finish(db, ctx.job.id, status, error)

    async def _until_db(self, ctx: JobContext, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work`, waiting out a database outage of up to DB_OUTAGE_SECONDS."""
        deadline = asyncio.get_running_loop().time() + DB_OUTAGE_SECONDS
        while True:
            try:
                await work()
                return
            except DBAPIError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    log.error("job %s: the database stayed away (%s)", ctx.job.id, _why(exc))
                    return
                await asyncio.sleep(DB_RETRY_SECONDS)


def _why(exc: DBAPIError) -> str:
    return str(exc.orig or exc).splitlines()[0][:200]
