"""The proxy of a target, kept equal to the records: which deployment's domains go where.

Every change renders the whole configuration from the database under the target's lock, so two
releases on one target never undo each other's switch, and a proxy that restarts or is replaced
gets its routes back from the records, never from its own memory.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.context import AppContext
from deploymate.deployments.models import Deployment
from deploymate.runtime import docker, images, proxy
from deploymate.runtime.executor import Executor
from deploymate.runtime.images import Log
from deploymate.runtime.proxy import Route
from deploymate.servers.models import Server


def target_key(server_id: int | None) -> str:
    return f"proxy:{server_id if server_id is not None else 'control'}"


def _lock(context: AppContext, server_id: int | None) -> asyncio.Lock:
    return context.locks.setdefault(target_key(server_id), asyncio.Lock())


async def routes_for(db: AsyncSession, server_id: int | None) -> list[Route]:
    stmt = select(Deployment).where(
        Deployment.status != "deleted",
        Deployment.routed_to.is_not(None),
        Deployment.server_id.is_(None) if server_id is None else Deployment.server_id == server_id,
    )
    return [
        Route(d.name, tuple(d.domains), str(d.routed_to), d.tls)  # type: ignore[arg-type]
        for d in (await db.execute(stmt)).scalars()
        if d.domains
    ]


async def _socket(context: AppContext, server_id: int | None, executor: Executor) -> str:
    """The admin socket's path on the target; it stays where its volume is."""
    key = target_key(server_id)
    if key not in context.memo:
        context.memo[key] = await proxy.admin_socket(executor)
    return context.memo[key]


async def _render(context: AppContext, server_id: int | None) -> dict[str, object]:
    async with context.sessions() as db:
        return proxy.render(await routes_for(db, server_id))


async def sync(context: AppContext, server_id: int | None, executor: Executor) -> None:
    """Load the configuration the records describe (the proxy must be installed)."""
    async with _lock(context, server_id):
        await _load(context, server_id, executor)


async def _load(context: AppContext, server_id: int | None, executor: Executor) -> None:
    config = await _render(context, server_id)
    await proxy.load(executor, await _socket(context, server_id, executor), config)


async def point(
    context: AppContext,
    deployment_id: int,
    server_id: int | None,
    executor: Executor,
    upstream: str | None,
) -> None:
    """Record where a deployment's domains go and make the proxy follow, as one step under the
    target's lock: no other change loads in between, and if the proxy refuses, the record goes
    back before anyone else renders it."""
    async with _lock(context, server_id):
        async with context.sessions() as db:
            dep = await db.get(Deployment, deployment_id)
            assert dep is not None
            before, dep.routed_to = dep.routed_to, upstream
            await db.commit()
        try:
            await _load(context, server_id, executor)
        except BaseException:
            async with context.sessions() as db:
                dep = await db.get(Deployment, deployment_id)
                assert dep is not None
                dep.routed_to = before
                await db.commit()
            raise


async def ensure(
    context: AppContext,
    server: Server | None,
    executor: Executor,
    log: Log,
    *,
    replace: bool = False,
) -> proxy.Status:
    """Install the proxy when missing (or replace it: upgrade), with its routes from the
    records written before Caddy starts; a running proxy is left as it is."""
    server_id = server.id if server else None
    async with _lock(context, server_id):
        if not replace and await proxy.running(executor):
            return proxy.Status(True, True, detail="running")  # one command on every release
        if not (await executor.run(proxy.network_inspect())).stdout.strip():
            await log(f"creating the Docker network {proxy.NETWORK}")
            await executor.run(proxy.network_create())
        current = await proxy.status(executor)
        if current.running and not replace:
            return current  # running after all: a proxy that serves is never replaced unasked
        image = context.settings.proxy_image
        await images.ensure(
            executor,
            image,
            pinned_id=None,
            control=context.control_docker(),
            log=log,
            shipper=context.shipper(),
        )
        config = await _render(context, server_id)
        # Everything is prepared beside the running proxy; ports 80 and 443 are free only
        # between the old container's removal and the new one's start.
        await executor.run(docker.remove(proxy.NEXT))  # a leftover of an interrupted upgrade
        await executor.run(proxy.create(image, proxy.NEXT))
        await executor.run(proxy.write_config(proxy.NEXT, config))
        if current.installed:
            await log(f"replacing the proxy ({current.image or 'unknown image'}) with {image}")
            await executor.run(docker.remove(proxy.CONTAINER))
        else:
            await log(f"installing the proxy from {image}")
        await executor.run(docker.start(proxy.NEXT))
        await executor.run(docker.rename(proxy.NEXT, proxy.CONTAINER))
        context.memo.pop(target_key(server_id), None)
        socket = await _socket(context, server_id, executor)
        for _ in range(50):  # Caddy opens its admin socket a moment after it starts
            try:
                await proxy.load(executor, socket, config)
                break
            except Exception:
                await asyncio.sleep(0.1)
        else:
            await proxy.load(executor, socket, config)
        found = await proxy.status(executor)
        await log(f"proxy {found.version or ''} running with {len(config_routes(config))} route(s)")
        return found


def config_routes(config: dict[str, object]) -> list[object]:
    apps = config.get("apps")
    assert isinstance(apps, dict)
    servers = apps["http"]["servers"]
    routes = servers["checks"]["routes"]
    assert isinstance(routes, list)
    return routes
