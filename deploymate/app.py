"""The FastAPI application: routers, edge middleware, and start-up (migrate, bootstrap)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from deploymate import __version__, db
from deploymate.admin.member_routes import router as member_router
from deploymate.admin.pages import router as admin_pages
from deploymate.admin.routes import router as admin_router
from deploymate.auth.routes import router as auth_router
from deploymate.backup.pages import router as backup_pages
from deploymate.backup.routes import router as backup_router
from deploymate.bootstrap import prepare_database
from deploymate.config import Settings
from deploymate.deployments import jobs as deployment_jobs
from deploymate.deployments.pages import router as deployments_pages
from deploymate.deployments.routes import router as deployments_router
from deploymate.deployments.routes import templates_router
from deploymate.health import router as health_router
from deploymate.http import EdgeMiddleware, install_error_handlers
from deploymate.jobs.routes import router as jobs_router
from deploymate.jobs.worker import Worker
from deploymate.notifications import service as notifications
from deploymate.notifications.pages import router as notifications_pages
from deploymate.notifications.routes import router as notifications_router
from deploymate.ops.routes import router as ops_router
from deploymate.runtime.ssh import SSHPool
from deploymate.servers.credentials import cipher_from_settings
from deploymate.servers.pages import router as servers_pages
from deploymate.servers.routes import router as servers_router
from deploymate.services import Services
from deploymate.web.console import router as console_router
from deploymate.web.render import STATIC_DIR, make_templates

log = logging.getLogger("deploymate")


async def _close_idle_connections(pool: SSHPool, every: float = 30.0) -> None:
    while True:
        await asyncio.sleep(every)
        pool.close_idle()


def create_app(settings: Settings, *, prepared: bool = False) -> FastAPI:
    """`prepared` when the caller already migrated and bootstrapped (as `deploymate serve` does)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not prepared:
            await prepare_database(settings)
        engine = db.make_engine(settings.resolved_database_url)
        app.state.engine = engine
        app.state.sessions = db.session_factory(engine)
        app.state.cipher = cipher_from_settings(settings)
        app.state.ssh_pool = pool = SSHPool()
        services = Services(
            settings=settings, sessions=app.state.sessions, cipher=app.state.cipher, pool=pool
        )
        app.state.services = services
        worker = Worker(
            app.state.sessions,
            services,
            deployment_jobs.HANDLERS,
            recover=deployment_jobs.reconcile,
            single_process=settings.resolved_database_url.startswith("sqlite"),
        )
        services.wake_worker.append(worker.wake)
        reaper = asyncio.create_task(_close_idle_connections(pool))
        await worker.start()
        try:
            yield
        finally:
            await notifications.drain(5)  # let in-flight webhook deliveries finish their rows
            await worker.stop()
            reaper.cancel()
            await pool.close_all()
            await engine.dispose()

    app = FastAPI(
        title="DeployMate",
        version=__version__,
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.templates = make_templates()
    install_error_handlers(app)
    app.add_middleware(
        EdgeMiddleware, max_body=settings.max_request_bytes, max_upload=settings.max_upload_bytes
    )
    for router in (
        health_router,
        auth_router,
        admin_router,
        member_router,
        ops_router,
        servers_router,
        deployments_router,
        templates_router,
        jobs_router,
        console_router,
        servers_pages,
        deployments_pages,
        notifications_router,
        notifications_pages,
        backup_router,
        backup_pages,
        admin_pages,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
