"""The monitor's rounds (started by wiring.py in every worker): every server each
`DEPLOYMATE_MONITOR_SERVER_SECONDS`, every running deployment each
`DEPLOYMATE_MONITOR_DEPLOYMENT_SECONDS`, at most `DEPLOYMATE_MONITOR_CONCURRENCY` servers at once,
one SSH connection per server (the pool's, reused between rounds). The probes and the rules are
the monitoring domain's; a deployment's changes are entries in its activity too.

Watched: servers with a pinned host key; deployments that run by intent (status running, with
a serving release) and that no job holds right now. A deploy, stop or restart in progress, a
stopped or deleted deployment raise no alarm; an observation that a job overtook (the lock
taken, the release changed) is dropped before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.db import utcnow
from deploymate.core.errors import DeployMateError
from deploymate.deployments.models import Deployment, DeploymentEvent, Release
from deploymate.jobs import service as jobs
from deploymate.jobs.models import DeployLock
from deploymate.monitoring import checks, service
from deploymate.monitoring.service import DEPLOYMENT, OK, SERVER, Change, Known, Seen, Subject
from deploymate.runtime.errors import RuntimeFailure
from deploymate.runtime.executor import Executor
from deploymate.runtime.health import HealthCheck
from deploymate.servers.models import Server
from deploymate.servers.targets import executor_for, target_for

log = logging.getLogger("deploymate.monitor")

SERVER_BUDGET = 90.0  # seconds one server's checks may take in all


async def run(context: AppContext) -> None:
    """Both rounds on their intervals until cancelled (a 0 interval: that half is off)."""
    settings = context.settings
    rounds = {
        "monitor-servers": (settings.monitor_server_seconds, check_servers),
        "monitor-deployments": (settings.monitor_deployment_seconds, check_deployments),
    }
    await _each(
        {name: _every(seconds, one, context) for name, (seconds, one) in rounds.items() if seconds}
    )


async def _every(
    seconds: float, one_round: Callable[[AppContext], Awaitable[None]], context: AppContext
) -> None:
    clock = asyncio.get_running_loop()
    next_at = clock.time() + seconds  # the first round after one interval
    while True:
        await asyncio.sleep(max(0.0, next_at - clock.time()))
        next_at = clock.time() + seconds  # from this round's start
        try:
            await one_round(context)
        except Exception:
            log.exception("a monitoring round failed; the next one retries")


async def _each(named: dict[str, Coroutine[Any, Any, None]]) -> None:
    """Run these at once as named tasks (the app's background tasks carry their names); one
    that fails is logged and the others go on."""
    tasks = [asyncio.create_task(coro, name=name) for name, coro in named.items()]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, Exception):
            log.error("%s failed", task.get_name(), exc_info=result)


async def record(
    db: AsyncSession,
    subject: Subject,
    seen: Sequence[Seen],
    *,
    now: datetime | None = None,
    announced: Collection[str] = (),
) -> list[Change]:
    """Store what was seen and announce each change (monitoring.service.record); a
    deployment's changes are also entries in its activity. The caller commits."""
    now = now or utcnow()
    changes = await service.record(db, subject, seen, now=now, announced=announced)
    if subject.kind == DEPLOYMENT:
        for item in changes:
            db.add(
                DeploymentEvent(
                    deployment_id=subject.id,
                    created_at=now,
                    actor=service.ACTOR,
                    action=item.event,
                    message=service.message(subject, item, now),
                )
            )
    return changes


# --- servers ------------------------------------------------------------------------------------


async def check_servers(context: AppContext) -> None:
    async with context.sessions() as db:
        servers = list(
            (await db.execute(select(Server).where(Server.host_key.is_not(None)))).scalars()
        )
        routed = set(
            (
                await db.execute(
                    select(Deployment.server_id)
                    .where(
                        Deployment.status != "deleted",
                        Deployment.routed_to.is_not(None),
                        Deployment.server_id.is_not(None),
                    )
                    .distinct()
                )
            ).scalars()
        )
        known = await service.known_all(db, SERVER)
        await service.forget(db, SERVER, [s.id for s in servers])
        await db.commit()
    gate = asyncio.Semaphore(context.settings.monitor_concurrency)
    await _each(
        {
            f"monitor-server-{s.id}": _check_server(
                context, gate, s, proxy_needed=s.id in routed, known=known.get(s.id, {})
            )
            for s in servers
        }
    )


async def _probe_server(
    context: AppContext, server: Server, *, proxy_needed: bool, known: dict[str, Known]
) -> list[Seen]:
    try:
        target = target_for(server, context.cipher)
    except DeployMateError as exc:  # credentials sealed with a key this instance lacks
        return [Seen("reachability", "unreachable", exc.detail, {"code": exc.code})]
    disk = known.get("disk")
    try:
        return await asyncio.wait_for(
            checks.probe_server(
                context.pool.executor(target),
                proxy_needed=proxy_needed,
                disk_was_full=disk is not None and disk.state != OK,
                reset=lambda: context.pool.discard(target.key),
            ),
            SERVER_BUDGET,
        )
    except TimeoutError:
        context.pool.discard(target.key)
        return [Seen("reachability", "unreachable", f"no answer within {SERVER_BUDGET:g}s")]


async def _check_server(
    context: AppContext,
    gate: asyncio.Semaphore,
    server: Server,
    *,
    proxy_needed: bool,
    known: dict[str, Known],
) -> None:
    async with gate:
        seen = await _probe_server(context, server, proxy_needed=proxy_needed, known=known)
    reach = next(s for s in seen if s.check == "reachability")
    docker = next((s for s in seen if s.check == "docker"), None)
    failing = reach if not reach.ok else docker if docker is not None and not docker.ok else None
    summary = docker.detail if docker is not None else "SSH answers"
    now = utcnow()
    async with context.sessions() as db:
        fresh = await db.get(Server, server.id)
        if fresh is None:
            return  # deleted meanwhile
        # A person's test that already announced this very failure is not announced again.
        announced = (
            {"reachability"}
            if not reach.ok
            and fresh.last_check_ok is False
            and fresh.last_check_message == reach.detail
            else set()
        )
        subject = Subject(SERVER, fresh.id, fresh.name, fresh.owner_id)
        changes = await record(db, subject, seen, now=now, announced=announced)
        if not proxy_needed:
            await service.drop(db, SERVER, fresh.id, ["proxy"])
        for item in changes:
            if item.check == "reachability" and reach.facts.get("code") == "host_key_changed":
                await audit.record(
                    db,
                    caller=Caller.system(service.ACTOR),
                    action="server.host_key_mismatch",
                    target_type="server",
                    target_id=fresh.id,
                    outcome="failure",
                    details={"host": fresh.host, "port": fresh.port},
                )
        # The server's last check is this one (its edit time stays).
        await db.execute(
            update(Server)
            .where(Server.id == fresh.id)
            .values(
                last_check_at=now,
                last_check_ok=failing is None,
                last_check_message=failing.detail if failing is not None else f"ok; {summary}",
                updated_at=Server.updated_at,
            )
            .execution_options(synchronize_session=False)
        )
        await db.commit()


# --- deployments --------------------------------------------------------------------------------


Watched = tuple[Deployment, str]  # the deployment and its serving container's name


async def check_deployments(context: AppContext) -> None:
    async with context.sessions() as db:
        running = list(
            (
                await db.execute(
                    select(Deployment, Release.container_name)
                    .join(Release, Release.id == Deployment.current_release_id)
                    .where(Deployment.status == "running")
                    .order_by(Deployment.id)
                )
            ).all()
        )
        now = await jobs.db_now(db)
        held = set(
            (
                await db.execute(
                    select(DeployLock.deployment_id).where(DeployLock.expires_at > now)
                )
            ).scalars()
        )
        server_ids = {d.server_id for d, _ in running if d.server_id is not None}
        servers = {
            s.id: s
            for s in (await db.execute(select(Server).where(Server.id.in_(server_ids)))).scalars()
        }
        known = await service.known_all(db, DEPLOYMENT)
        await service.forget(db, DEPLOYMENT, [d.id for d, _ in running])
        await db.commit()
    by_target: dict[int | None, list[Watched]] = {}
    for dep, name in running:
        if dep.id in held or not name:
            continue
        if dep.server_id is None and not context.settings.local_docker:
            continue
        by_target.setdefault(dep.server_id, []).append((dep, name))
    gate = asyncio.Semaphore(context.settings.monitor_concurrency)
    await _each(
        {
            f"monitor-target-{server_id or 'control'}": _check_target(
                context,
                gate,
                servers.get(server_id) if server_id is not None else None,
                watched,
                {d.id: known.get(d.id, {}) for d, _ in watched},
            )
            for server_id, watched in by_target.items()
            if server_id is None or server_id in servers
        }
    )


async def _check_target(
    context: AppContext,
    gate: asyncio.Semaphore,
    server: Server | None,
    watched: Sequence[Watched],
    known: dict[int, dict[str, Known]],
) -> None:
    """One target's deployments, one after the other on its one connection."""
    async with gate:
        try:
            executor = executor_for(context, server)
        except DeployMateError:
            return  # unreadable credentials: the server's own check says so
        for dep, name in watched:
            try:
                seen = await _probe_deployment(executor, dep, name, known.get(dep.id, {}))
            except RuntimeFailure as exc:
                if checks.unreachable(exc):
                    return  # the server's own check says so; its deployments stay as they were
                log.warning("checking deployment %s failed: %s", dep.name, exc.detail)
                continue
            except OSError as exc:  # the control host without a docker CLI
                log.warning("checking deployment %s failed: %s", dep.name, exc)
                return
            if seen is not None:
                await _store(context, dep, server, seen)


async def _probe_deployment(
    executor: Executor, dep: Deployment, name: str, known: dict[str, Known]
) -> Seen | None:
    before = known.get("container")
    return await checks.probe_deployment(
        executor,
        container=name,
        port=dep.internal_port,
        health=HealthCheck(**(dep.health_check or {})),
        before=before.facts if before is not None else None,
    )


async def _store(context: AppContext, dep: Deployment, server: Server | None, seen: Seen) -> None:
    """Store the observation unless a job overtook it (lock taken, release changed, stopped)."""
    async with context.sessions() as db:
        fresh = await db.get(Deployment, dep.id, populate_existing=True)
        if (
            fresh is None
            or fresh.status != "running"
            or fresh.current_release_id != dep.current_release_id
        ):
            return
        lock = await jobs.lock_of(db, dep.id)
        if lock is not None and lock.expires_at > await jobs.db_now(db):
            return
        where = f"{fresh.name} on {server.name}" if server is not None else fresh.name
        await record(db, Subject(DEPLOYMENT, fresh.id, where, fresh.owner_id), [seen])
        await db.commit()
