"""Public ports on a target: the one rule for which deployments hold one, and free suggestions.

A deployment holds its external port from creation until it is deleted, whatever its state:
a stopped or failed deployment can be started or redeployed on the same port.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.errors import ValidationFailed
from deploymate.deployments.models import Deployment
from deploymate.runtime import host_facts
from deploymate.servers import checks
from deploymate.servers import service as servers
from deploymate.servers.models import Server
from deploymate.servers.targets import executor_for, require_control_host

RELEASED = "deleted"  # the one status that gives a port back


def holds_port(status: str) -> bool:
    return status != RELEASED


async def holders(
    db: AsyncSession, *, server_id: int | None, except_id: int | None = None
) -> dict[int, Deployment]:
    """The deployments holding external ports on a target (None: the control host), by port."""
    stmt = select(Deployment).where(Deployment.status != RELEASED)
    stmt = stmt.where(
        Deployment.server_id.is_(None) if server_id is None else Deployment.server_id == server_id
    )
    if except_id is not None:
        stmt = stmt.where(Deployment.id != except_id)
    rows = (await db.execute(stmt)).scalars()
    return {int(d.external_port): d for d in rows if d.external_port is not None}


async def held(
    db: AsyncSession, *, server_id: int | None, except_id: int | None = None
) -> set[int]:
    """External ports held by deployments on a target (None: the control host)."""
    return set(await holders(db, server_id=server_id, except_id=except_id))


async def _listening(
    db: AsyncSession, context: AppContext, caller: Caller, server: Server | None
) -> list[int]:
    if server is None:
        return await host_facts.listening_ports(executor_for(context, None))
    return await checks.listening_ports(db, context=context, caller=caller, server=server)


async def choose(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    server: Server | None,
    wanted: int | None,
    except_id: int | None = None,
) -> int:
    """The wanted external port if free on the target, else the first suggested one."""
    by_port = await holders(db, server_id=server.id if server else None, except_id=except_id)
    taken = set(by_port)
    listening = set(await _listening(db, context, caller, server))
    if wanted is None:
        free = host_facts.suggest_ports(listening, taken, count=1)
        if not free:
            raise ValidationFailed(
                "no free port in 8000-8999 on the target; delete a deployment you no longer "
                "need, or give a port outside that range",
                field="external_port",
            )
        return free[0]
    if wanted in taken or wanted in listening or wanted in host_facts.RESERVED_PORTS:
        holder = by_port.get(wanted)
        if holder is None:
            why = f"port {wanted} is already in use on the target (something listens on it)"
        elif caller.owns(holder.owner_id):
            why = f"port {wanted} is held by the deployment {holder.name} on this target"
        else:
            why = f"port {wanted} is held by another user's deployment on this target"
        raise ValidationFailed(f"{why}; {_offer(listening, taken, wanted)}", field="external_port")
    return wanted


def _offer(listening: set[int], taken: set[int], wanted: int) -> str:
    """The next free port after the wanted one (or the first free one), as advice."""
    after = host_facts.suggest_ports(listening, taken, start=wanted + 1, end=65535, count=1)
    free = after or host_facts.suggest_ports(listening, taken, count=1)
    if not free:
        return "no port in 8000-8999 is free there"
    return f"the next free port is {free[0]}, or leave the port empty for one to be chosen"


async def suggest(
    db: AsyncSession, *, context: AppContext, caller: Caller, server_id: int | None
) -> tuple[list[int], list[int]]:
    """Free public ports on a target (not listening there, not held), and what listens."""
    server = None
    if server_id is None:
        require_control_host(context.settings, caller)
    else:
        server = await servers.get(db, caller=caller, server_id=server_id)
    listening = await _listening(db, context, caller, server)
    taken = await held(db, server_id=server_id)
    return host_facts.suggest_ports(set(listening), taken), listening
