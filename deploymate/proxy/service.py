"""The proxy of a target as operators handle it: its state, install, upgrade (replace).

Install and upgrade rebuild the proxy's configuration from the records (routing.ensure), so a
replaced or restarted proxy serves every route it served before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.errors import NotFound
from deploymate.core.ids import parse_id
from deploymate.deployments import routing
from deploymate.runtime import proxy
from deploymate.runtime.errors import RuntimeFailure
from deploymate.servers import service as servers
from deploymate.servers.models import Server
from deploymate.servers.targets import CONTROL_HOST, executor_for, require_control_host

LOCAL = "local"


async def target_of(
    db: AsyncSession, context: AppContext, caller: Caller, target: str
) -> Server | None:
    """`local` (the control host), a server id, or a server name the caller may use."""
    if target == LOCAL:
        require_control_host(context.settings, caller)
        return None
    if target.isascii() and target.isdigit():
        server_id = parse_id(target)
        if server_id is None:
            raise NotFound(f"no such server: {target[:20]}")
        return await servers.get(db, caller=caller, server_id=server_id)
    return await servers.find(db, caller=caller, name=target)


async def status(context: AppContext, server: Server | None) -> dict[str, Any]:
    found = await proxy.status(executor_for(context, server))
    async with context.sessions() as db:
        routes = await routing.routes_for(db, server.id if server else None)
    return {
        "target": server.name if server else CONTROL_HOST,
        "image_setting": context.settings.proxy_image,
        "routes": [{"deployment": r.deployment, "domains": list(r.domains)} for r in routes],
        **found.as_dict(),
    }


async def install(
    db: AsyncSession, context: AppContext, caller: Caller, server: Server | None, *, upgrade: bool
) -> dict[str, Any]:
    """Install when missing (upgrade: replace it with the configured image); the steps are
    returned for the caller to show."""
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    executor = executor_for(context, server)
    try:
        await routing.ensure(context, server, executor, log, replace=upgrade)
        if not upgrade:
            await routing.sync(context, server.id if server else None, executor)
            lines.append("routes loaded from the records")
    except RuntimeFailure as exc:
        lines.append(f"failed: {exc.detail}")
        raise
    finally:
        await audit.record(
            db,
            caller=caller,
            action=f"proxy.{'upgrade' if upgrade else 'install'}",
            target_type="server",
            target_id=server.id if server else None,
            details={"target": server.name if server else CONTROL_HOST},
        )
        await db.commit()
    return {**await status(context, server), "log": lines}
