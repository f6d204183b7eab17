"""`deploymate audit runtime` (on the control host): what this instance really runs against
what its settings promise: the local-Docker flag, the control host's Docker, a running proxy
on every server with domains, and every stored credential encrypted with a key it holds."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from deploymate.audits.findings import Finding
from deploymate.context import AppContext
from deploymate.deployments.models import Deployment
from deploymate.runtime import proxy
from deploymate.runtime.errors import RuntimeFailure
from deploymate.runtime.executor import Command
from deploymate.servers import credentials
from deploymate.servers.models import Server
from deploymate.servers.targets import executor_for

CONCURRENCY = 8


async def audit(context: AppContext) -> list[Finding]:
    settings = context.settings
    out: list[Finding] = []
    if settings.env == "production" and settings.local_docker:
        out.append(
            Finding(
                "local_docker",
                "production with local deployments on: the console offers the control host "
                "itself as a target (set DEPLOYMATE_LOCAL_DOCKER_ENABLED=false)",
                severity="warn",
            )
        )
    version = await context.local.run(Command.of("docker", "version", check=False, timeout=15))
    if not version.ok:
        why = "local deployments and builds fail" if settings.local_docker else "builds fail"
        out.append(
            Finding(
                "control_docker",
                f"Docker does not answer on the control host: {why}",
                severity="error" if settings.local_docker else "warn",
            )
        )
    async with context.sessions() as db:
        for state in await credentials.states(db, cipher=context.cipher):
            if state.state != "encrypted":
                out.append(
                    Finding(
                        "credentials",
                        f"stored credentials are {state.state}: run `deploymate credentials "
                        "rotate` (and give the old key after the new one)",
                        f"server {state.server.name}",
                    )
                )
        routed = (
            await db.execute(
                select(Server)
                .join(Deployment, Deployment.server_id == Server.id)
                .where(Deployment.routed_to.is_not(None), Deployment.status != "deleted")
                .distinct()
            )
        ).scalars()
        servers = list(routed)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def proxy_of(server: Server) -> Finding | None:
        async with gate:
            try:
                running = await proxy.running(executor_for(context, server))
            except RuntimeFailure as exc:
                return Finding("proxy", f"cannot check: {exc.detail}", f"server {server.name}")
        if running:
            return None
        return Finding(
            "proxy",
            "deployments with domains but no running proxy (their domains do not answer): "
            f"`deploymate proxy install {server.name}`",
            f"server {server.name}",
        )

    out += [f for f in await asyncio.gather(*(proxy_of(s) for s in servers)) if f]
    return out
