"""Composition root: what runs beside the web app in `serve` and alone in `worker`.

Job handlers and event subscribers are registered here, and only here: the domains that emit
events or queue jobs never import the ones that react to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from deploymate.apps import jobs as app_jobs
from deploymate.apps import previews as app_previews
from deploymate.context import AppContext
from deploymate.deployments import jobs as deployment_jobs
from deploymate.jobs.models import Job
from deploymate.jobs.worker import Worker
from deploymate.notifications import outbox
from deploymate.notifications.service import EVENTS
from deploymate.notifications.subscriber import NotifyOnEvent
from deploymate.ops import monitor
from deploymate.runtime.ssh import SSHPool

log = logging.getLogger("deploymate.worker")


def subscribe(context: AppContext) -> None:
    """Who reacts to which event."""
    notify = NotifyOnEvent(context.settings, context.sessions)
    for name in EVENTS:
        context.bus.subscribe(name, notify)


async def _close_idle_connections(pool: SSHPool, every: float = 30.0) -> None:
    while True:
        await asyncio.sleep(every)
        pool.close_idle()


async def _reap_previews(context: AppContext) -> None:
    """Previews past their expiry are removed with their volumes."""
    while True:
        await asyncio.sleep(context.settings.preview_reap_seconds)
        try:
            gone = await app_previews.reap(context)
        except Exception:
            log.exception("removing expired previews failed; retrying")
            continue
        for environment in gone:
            log.info("preview %s expired; removing it with its volumes", environment)


async def reconcile(context: AppContext, job: Job) -> None:
    """After an interrupted job, its domain makes the records match the targets."""
    if job.kind in app_jobs.HANDLERS:
        await app_jobs.reconcile(context, job)
    else:
        await deployment_jobs.reconcile(context, job)


@asynccontextmanager
async def running(context: AppContext, *, embedded: bool) -> AsyncIterator[Worker]:
    """The job worker, the event bus, the SSH reaper, preview expiry and the monitor of
    servers and deployments, all stopped on the way out.

    `embedded` is the worker inside `deploymate serve`; with SQLite it is the only process, so
    at start-up every job still marked running was orphaned by a previous process."""
    settings = context.settings
    worker = Worker(
        context.sessions,
        context,
        {**deployment_jobs.HANDLERS, **app_jobs.HANDLERS},
        recover=reconcile,
        single_process=embedded and settings.resolved_database_url.startswith("sqlite"),
        concurrency=settings.worker_concurrency,
    )
    context.on_wake(worker.wake)
    subscribe(context)
    background = [
        asyncio.create_task(_close_idle_connections(context.pool), name="ssh-reaper"),
        asyncio.create_task(context.bus.run(context.sessions), name="event-bus"),
        asyncio.create_task(_reap_previews(context), name="preview-reaper"),
        asyncio.create_task(monitor.run(context), name="monitor"),
    ]
    await worker.start()
    try:
        yield worker
    finally:
        await outbox.drain(5)  # let in-flight webhook deliveries finish their rows
        await worker.stop()
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await context.pool.close_all()
        context.stop_registry()
        await context.engine.dispose()
