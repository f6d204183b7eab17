"""The FastAPI application: routers, edge middleware, and start-up (migrate, bootstrap)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from deploymate import __version__, wiring
from deploymate.admin.member_routes import router as member_router
from deploymate.admin.pages import router as admin_pages
from deploymate.admin.routes import router as admin_router
from deploymate.auth.routes import router as auth_router
from deploymate.backup.pages import router as backup_pages
from deploymate.backup.routes import router as backup_router
from deploymate.bootstrap import prepare_database
from deploymate.config import Settings
from deploymate.deployments.pages import router as deployments_pages
from deploymate.deployments.routes import router as deployments_router
from deploymate.deployments.routes import templates_router
from deploymate.health import router as health_router
from deploymate.http import EdgeMiddleware, install_error_handlers
from deploymate.jobs.routes import router as jobs_router
from deploymate.notifications.pages import router as notifications_pages
from deploymate.notifications.routes import router as notifications_router
from deploymate.ops.routes import router as ops_router
from deploymate.servers.pages import router as servers_pages
from deploymate.servers.routes import router as servers_router
from deploymate.web.console import router as console_router
from deploymate.web.render import STATIC_DIR, make_templates

log = logging.getLogger("deploymate")


def create_app(settings: Settings, *, prepared: bool = False) -> FastAPI:
    """`prepared` when the caller already migrated and bootstrapped (as `deploymate serve` does)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not prepared:
            await prepare_database(settings)
        async with wiring.running(settings, embedded=True) as (engine, services):
            app.state.engine = engine
            app.state.services = services
            app.state.sessions = services.sessions
            app.state.cipher = services.cipher
            app.state.ssh_pool = services.pool
            yield

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
