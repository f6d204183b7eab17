"""Composition root: the long-lived parts and the job worker, for `serve` and `worker`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from deploymate import db
from deploymate.config import Settings
from deploymate.deployments import jobs as deployment_jobs
from deploymate.jobs.worker import Worker
from deploymate.notifications import service as notifications
from deploymate.runtime.ssh import SSHPool
from deploymate.servers.credentials import cipher_from_settings
from deploymate.services import Services


async def _close_idle_connections(pool: SSHPool, every: float = 30.0) -> None:
    while True:
        await asyncio.sleep(every)
        pool.close_idle()


@asynccontextmanager
async def running(
    settings: Settings, *, embedded: bool
) -> AsyncIterator[tuple[AsyncEngine, Services]]:
    """Engine, services and a started worker; everything is closed on the way out.

    `embedded` is the worker inside `deploymate serve`; with SQLite it is the only process, so
    at start-up every job still marked running was orphaned by a previous process."""
    engine = db.make_engine(settings.resolved_database_url)
    pool = SSHPool()
    services = Services(
        settings=settings,
        sessions=db.session_factory(engine),
        cipher=cipher_from_settings(settings),
        pool=pool,
    )
    worker = Worker(
        services.sessions,
        services,
        deployment_jobs.HANDLERS,
        recover=deployment_jobs.reconcile,
        single_process=embedded and settings.resolved_database_url.startswith("sqlite"),
    )
    services.wake_worker.append(worker.wake)
    reaper = asyncio.create_task(_close_idle_connections(pool))
    await worker.start()
    try:
        yield engine, services
    finally:
        await notifications.drain(5)  # let in-flight webhook deliveries finish their rows
        await worker.stop()
        reaper.cancel()
        await pool.close_all()
        await engine.dispose()
