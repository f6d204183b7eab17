"""What a deployment's serving container says right now: health, state, logs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.context import AppContext
from deploymate.core.db import utcnow
from deploymate.core.errors import Conflict
from deploymate.deployments import engine
from deploymate.deployments.models import Deployment, Release
from deploymate.runtime import docker, proxy, smoke
from deploymate.runtime.executor import Executor
from deploymate.runtime.health import HealthCheck, probe
from deploymate.servers.models import Server
from deploymate.servers.targets import executor_for


async def serving(
    db: AsyncSession, *, context: AppContext, dep: Deployment
) -> tuple[Executor, str]:
    """The executor of the deployment's target and the name of its serving container."""
    release = await db.get(Release, dep.current_release_id) if dep.current_release_id else None
    if release is None or not release.container_name:
        raise Conflict(f"{dep.name} has no serving release", code="no_release")
    server = await db.get(Server, dep.server_id) if dep.server_id else None
    return executor_for(context, server), release.container_name


async def health_now(executor: Executor, name: str, dep: Deployment) -> dict[str, Any]:
    """The same check the deploy gate uses, run once now against the serving container."""
    state = await engine.state(executor, name)
    if state is None or not state.running or not state.ip_address:
        return {"healthy": False, "detail": f"container {name} is not running", "container": name}
    result = await probe(
        executor, state.ip_address, dep.internal_port, HealthCheck(**dep.health_check)
    )
    return {"healthy": result.ok, "detail": result.detail, "container": name}


async def container_facts(executor: Executor, name: str) -> dict[str, Any]:
    state = await engine.state(executor, name)
    facts = asdict(state) if state else {}
    # Names only: the values Docker was given include the secrets.
    facts["config_env"] = sorted({e.split("=", 1)[0] for e in facts.get("config_env", [])})
    return {"container": name, "exists": state is not None, **facts}


async def volumes(
    executor: Executor, deployment: str, declared: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The deployment's mounts, and whether each named volume exists on the target."""
    found = set((await executor.run(docker.volume_list(f"dm-{deployment}-"))).stdout.split())
    rows = []
    for v in declared:
        if v.get("name"):
            name = f"dm-{deployment}-{v['name']}"
            rows.append({"volume": name, "path": v["path"], "exists": name in found})
        else:
            rows.append({"bind": v["source"], "path": v["path"]})
    return rows


async def log_tail(
    executor: Executor, name: str, tail: int, *, timestamps: bool = False
) -> list[str]:
    result = await executor.run(docker.logs(name, tail, timestamps=timestamps))
    lines = (line for line in (result.stdout + "\n" + result.stderr).splitlines() if line)
    return [docker.readable_stamp(line) for line in lines] if timestamps else list(lines)


async def smoke_now(db: AsyncSession, *, context: AppContext, dep: Deployment) -> dict[str, Any]:
    """The deployment's smoke checks against what serves now; the result is kept for the page."""
    executor, name = await serving(db, context=context, dep=dep)
    address = await proxy.address(executor) if dep.domains else None
    results = await smoke.run_all(
        executor,
        list(dep.smoke or []),
        proxy_address=address,
        port=proxy.CHECK_PORT,
        host=dep.domains[0] if dep.domains else None,
        container=name,
    )
    release = await db.get(Release, dep.current_release_id) if dep.current_release_id else None
    dep.smoke_result = {
        "at": utcnow().isoformat(),
        "release": release.number if release else None,
        "on_demand": True,
        "checks": [r.as_dict() for r in results],
    }
    await db.commit()
    return dict(dep.smoke_result)
