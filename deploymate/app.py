"""The FastAPI application: routers, edge middleware, and start-up (migrate, bootstrap)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from deploymate import __version__, context, wiring
from deploymate.admin import member_routes
from deploymate.admin import pages as admin_pages
from deploymate.admin import routes as admin_routes
from deploymate.apps import pages as apps_pages
from deploymate.apps import routes as apps_routes
from deploymate.auth import pages as auth_pages
from deploymate.auth import routes as auth_routes
from deploymate.auth import service as auth_service
from deploymate.backup import pages as backup_pages
from deploymate.backup import routes as backup_routes
from deploymate.bootstrap import prepare_database
from deploymate.core.config import Settings
from deploymate.deployments import pages as deployments_pages
from deploymate.deployments import routes as deployments_routes
from deploymate.notifications import pages as notifications_pages
from deploymate.notifications import routes as notifications_routes
from deploymate.ops import pages as ops_pages
from deploymate.ops import routes as ops_routes
from deploymate.proxy import routes as proxy_routes
from deploymate.registries import pages as registries_pages
from deploymate.registries import routes as registries_routes
from deploymate.servers import pages as servers_pages
from deploymate.servers import routes as servers_routes
from deploymate.web.http import ERROR_RESPONSES, EdgeMiddleware, install_error_handlers
from deploymate.web.render import STATIC_DIR, make_templates

ROUTERS = (
    ops_routes.health_router,
    auth_routes.router,
    admin_routes.router,
    member_routes.router,
    ops_routes.router,
    servers_routes.router,
    deployments_routes.router,
    deployments_routes.templates_router,
    deployments_routes.jobs_router,
    deployments_routes.server_ports_router,
    proxy_routes.router,
    registries_routes.router,
    apps_routes.router,
    apps_routes.approvals_router,
    notifications_routes.router,
    backup_routes.router,
    auth_pages.router,
    ops_pages.router,
    servers_pages.router,
    deployments_pages.router,
    notifications_pages.router,
    registries_pages.router,
    apps_pages.router,
    backup_pages.router,
    admin_pages.router,
)


def create_app(settings: Settings, *, prepared: bool = False) -> FastAPI:
    """`prepared` when the caller already migrated and bootstrapped (as `deploymate serve` does).

    The API's description is at /api/openapi.json; there is no interactive docs page, whose
    CDN scripts the console's Content-Security-Policy would refuse."""
    ctx = context.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not prepared:
            await prepare_database(settings)
        async with wiring.running(ctx, embedded=True) as worker:
            app.state.worker = worker
            yield

    app = FastAPI(
        title="DeployMate",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.context = ctx
    app.state.identify = auth_service.identify
    app.state.templates = make_templates()
    install_error_handlers(app)
    app.add_middleware(
        EdgeMiddleware,
        max_body=settings.max_request_bytes,
        max_upload=settings.max_upload_bytes,
        max_source=settings.max_source_bytes,
        hsts=settings.secure_cookies,
    )
    for router in ROUTERS:
        api = any(
            (router.prefix + getattr(r, "path", "")).startswith("/api/") for r in router.routes
        )
        app.include_router(router, responses=ERROR_RESPONSES if api else None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
