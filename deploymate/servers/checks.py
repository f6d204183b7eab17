"""Checking a server: reachability, host key, authentication and Docker; its facts and ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.context import AppContext
from deploymate.core import events
from deploymate.core.caller import Caller
from deploymate.core.db import utcnow
from deploymate.core.errors import DeployMateError, ValidationFailed
from deploymate.runtime import host_facts
from deploymate.runtime.errors import HostKeyChanged, RuntimeFailure
from deploymate.runtime.executor import Executor
from deploymate.runtime.ssh import probe_tcp, scan_host_keys
from deploymate.servers import service
from deploymate.servers.models import Server
from deploymate.servers.schemas import CheckStep, TestResult
from deploymate.servers.targets import target_for

UNREACHABLE = "server.unreachable"
ORDER = ("reachability", "host_key", "authentication", "docker")


async def _record_host_key_mismatch(
    db: AsyncSession, caller: Caller, server: Server, exc: HostKeyChanged
) -> None:
    if exc.code == "host_key_changed":
        await audit.record(
            db,
            caller=caller,
            action="server.host_key_mismatch",
            target_type="server",
            target_id=server.id,
            outcome="failure",
            details={"host": server.host, "port": server.port},
        )


async def _connect(context: AppContext, db: AsyncSession, caller: Caller, server: Server) -> None:
    """A fresh SSH connection; a member's failure to reach sshd is the one uniform answer."""
    try:
        if not caller.is_admin and not server.host_key:
            await scan_host_keys(server.host, server.port)  # does an SSH server answer at all?
        await service.ensure_pinned(db, settings=context.settings, caller=caller, server=server)
        target = target_for(server, context.cipher)
        context.pool.discard(target.key)  # a check always makes a fresh connection
        await context.pool.connection(target)
    except RuntimeFailure as exc:
        if not caller.is_admin and exc.step in ("reachability", "ssh", "transport"):
            raise service.no_ssh_here(server.host, server.port) from None
        raise


async def _steps(
    db: AsyncSession, context: AppContext, caller: Caller, server: Server
) -> tuple[list[CheckStep], str | None]:
    """Each step in order until one fails. Admins get a plain TCP probe first, so they see
    reachability apart from SSH; members get one answer for closed, filtered and not-SSH."""
    reached = CheckStep(step="reachability", ok=True, detail=f"{server.host}:{server.port} answers")
    steps: list[CheckStep] = []
    version = None
    try:
        if caller.is_admin:
            await probe_tcp(server.host, server.port)
            steps.append(reached)
        await _connect(context, db, caller, server)
        if not steps:
            steps.append(reached)
        steps.append(CheckStep(step="host_key", ok=True, detail="matches the pinned key"))
        steps.append(
            CheckStep(step="authentication", ok=True, detail=f"signed in as {server.username}")
        )
        executor = context.pool.executor(target_for(server, context.cipher))
        try:
            version, _ = await host_facts.docker_version(executor)
        except RuntimeFailure as exc:
            raise RuntimeFailure(exc.detail, step="docker") from None
        steps.append(CheckStep(step="docker", ok=True, detail=f"Docker {version}"))
    except RuntimeFailure as exc:
        if not steps and exc.step != "reachability":
            steps.append(reached)  # an SSH server answered before this step failed
        step = exc.step if exc.step in ORDER else "docker"
        steps.append(CheckStep(step=step, ok=False, detail=exc.detail))
        if isinstance(exc, HostKeyChanged):
            await _record_host_key_mismatch(db, caller, server, exc)
    except ValidationFailed as exc:
        steps.append(CheckStep(step="authentication", ok=False, detail=exc.detail))
    return steps, version


async def test_added(
    db: AsyncSession, *, context: AppContext, caller: Caller, server: Server
) -> str:
    """The first test of a server just saved: whatever happens, the server stays saved and is
    marked with the outcome. Returns the outcome as a sentence for the person who added it."""
    server_id, name = server.id, server.name
    try:
        result = await run(db, context=context, caller=caller, server_id=server_id)
    except DeployMateError as exc:
        await db.rollback()
        fresh = await db.get(Server, server_id, populate_existing=True)
        assert fresh is not None
        fresh.last_check_at = utcnow()
        fresh.last_check_ok = False
        fresh.last_check_message = exc.detail
        await db.commit()
        return f"Server {name} saved, but it could not be tested: {exc.detail}"
    if result.ok:
        return f"Server {name} added and tested: Docker {result.docker_version} answers."
    failed = next(s for s in result.steps if not s.ok)
    return (
        f"Server {name} saved, but its test failed at {failed.step}: {failed.detail}. "
        "It is marked so; fix it and press Test."
    )


async def run(
    db: AsyncSession, *, context: AppContext, caller: Caller, server_id: int
) -> TestResult:
    """Reachability, host key, authentication, then `docker version`, naming the step that fails.

    A newly failing reachability is announced once (event `server.unreachable`)."""
    server = await service.get(db, caller=caller, server_id=server_id)
    await service.check_address(context.settings, caller, server.host, server.port)
    steps, version = await _steps(db, context, caller, server)
    failed = next((s for s in steps if not s.ok), None)
    already_failing = server.last_check_ok is False and server.last_check_message == (
        failed.detail if failed else None
    )
    server.last_check_at = utcnow()
    server.last_check_ok = failed is None
    server.last_check_message = failed.detail if failed else f"ok; Docker {version}"
    await audit.record(
        db,
        caller=caller,
        action="server.test",
        target_type="server",
        target_id=server.id,
        outcome="success" if failed is None else "failure",
        details={"failed_step": failed.step if failed else None},
    )
    if failed is not None and failed.step == "reachability" and not already_failing:
        events.emit(
            db,
            UNREACHABLE,
            {
                "text": f"Server {server.name} ({server.host}:{server.port}) is unreachable: "
                f"{failed.detail}",
                "link": "/app/server-review",
                "user_ids": [server.owner_id] if server.owner_id else [],
            },
        )
    await db.commit()
    return TestResult(
        ok=failed is None,
        failed_step=failed.step if failed else None,
        steps=steps,
        docker_version=version,
    )


@asynccontextmanager
async def _on(
    db: AsyncSession, context: AppContext, caller: Caller, server: Server
) -> AsyncIterator[Executor]:
    """The server's executor; a changed host key met on the way is audited before it raises."""
    try:
        yield context.pool.executor(target_for(server, context.cipher))
    except HostKeyChanged as exc:
        await _record_host_key_mismatch(db, caller, server, exc)
        await db.commit()
        raise


async def diagnostics(
    db: AsyncSession, *, context: AppContext, caller: Caller, server_id: int
) -> host_facts.Diagnostics:
    server = await service.get(db, caller=caller, server_id=server_id)
    async with _on(db, context, caller, server) as executor:
        return await host_facts.collect(executor)


async def listening_ports(
    db: AsyncSession, *, context: AppContext, caller: Caller, server: Server
) -> list[int]:
    """Ports something listens on at the server (for free-port suggestions)."""
    async with _on(db, context, caller, server) as executor:
        return await host_facts.listening_ports(executor)
