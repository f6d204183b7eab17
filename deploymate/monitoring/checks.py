"""The probes of continuous monitoring, run through the runtime layer, and the pure rules that
turn what a target says into a check's state.

A server: `docker version` over its SSH connection (reachability and Docker in one round trip),
then the filesystem of Docker's data root (`docker info`, `df`), then the proxy when deployments
with domains need one. A deployment: `docker container inspect` of its serving container
(state, restarts, Docker's own health) and its health check, the one the deploy gate uses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from deploymate.monitoring.service import OK, Seen
from deploymate.runtime import docker, host_facts, proxy
from deploymate.runtime.docker import ContainerState
from deploymate.runtime.errors import CommandFailed, CommandTimeout, RuntimeFailure
from deploymate.runtime.executor import Executor
from deploymate.runtime.health import HealthCheck, Probe, probe

DISK_LIMIT = 90.0  # percent used of the filesystem holding Docker's data root: "full" above
DISK_CLEAR = 88.0  # a full disk is full again only once it fell below this (no flapping)
HEALTH_ATTEMPTS = 3  # one failed probe is not unhealthy; this many in a row are
# Failures of the connection itself (the server is unreachable), not of a command on it.
CONNECTION_STEPS = frozenset({"reachability", "host_key", "authentication", "ssh", "transport"})


def unreachable(exc: RuntimeFailure) -> bool:
    return exc.step in CONNECTION_STEPS


# --- pure rules ---------------------------------------------------------------------------------


def gib(value: int) -> str:
    return f"{value / 1024**3:.1f} GiB"


def judge_disk(free: int, total: int, root: str, *, was_full: bool = False) -> Seen:
    """`full` above DISK_LIMIT percent used; once full, until it is below DISK_CLEAR."""
    used = 100.0 * (total - free) / total if total > 0 else 0.0
    limit = DISK_CLEAR if was_full else DISK_LIMIT
    detail = f"{used:.0f}% used on {root} ({gib(free)} free of {gib(total)})"
    return Seen("disk", "full" if used > limit else OK, detail)


def health_status(inspect_stdout: str) -> str | None:
    """Docker's own health status (healthy | unhealthy | starting) when the image has one."""
    text = inspect_stdout.strip()
    if not text or text.startswith("[]"):
        return None
    data: dict[str, Any] = json.loads(text.splitlines()[0])
    health = (data.get("State") or {}).get("Health") or {}
    status = health.get("Status")
    return str(status) if status else None


def judge_container(
    name: str,
    state: ContainerState | None,
    *,
    docker_health: str | None = None,
    check: Probe | None = None,
    before: Mapping[str, Any] | None = None,
) -> Seen:
    """The serving container's state: exited, restarting (Docker says so, or its restart count
    grew since the last check), unhealthy (Docker's health check, or ours), else ok.
    `before`: the facts the last check stored."""
    if state is None:
        return Seen("container", "exited", f"the container {name} is gone", {"container": name})
    facts = {"container": name, "restarts": state.restart_count}
    before = before or {}
    grew = 0
    if before.get("container") == name:
        grew = state.restart_count - int(before.get("restarts") or 0)
    exit_text = f"exit code {state.exit_code}" + (", out of memory" if state.oom_killed else "")
    if grew > 0:
        times = f"{grew} time{'s' if grew != 1 else ''}"
        detail = f"the container {name} restarted {times} since the last check (last {exit_text})"
        return Seen("container", "restarting", detail, facts)
    if state.status == "restarting":
        detail = f"the container {name} is restarting (last {exit_text})"
        return Seen("container", "restarting", detail, facts)
    if not state.running:
        how = "exited" if state.status == "exited" else f"is {state.status}"
        return Seen("container", "exited", f"the container {name} {how} ({exit_text})", facts)
    if docker_health == "unhealthy":
        last = state.health_log[-1] if state.health_log else {}
        output = str(last.get("Output") or "").strip().splitlines()
        said = f": {output[-1][:200]}" if output else ""
        return Seen("container", "unhealthy", f"Docker's health check fails{said}", facts)
    if check is not None and not check.ok:
        return Seen("container", "unhealthy", f"health check: {check.detail}", facts)
    detail = f"running; {check.detail}" if check is not None else "running"
    return Seen("container", OK, detail, facts)


# --- probes -------------------------------------------------------------------------------------


async def probe_server(
    executor: Executor,
    *,
    proxy_needed: bool,
    disk_was_full: bool = False,
    reset: Callable[[], None] | None = None,
) -> list[Seen]:
    """Reachability and Docker, then (when Docker answers) disk and proxy. `reset` drops the
    server's connection: a command that times out, or whose connection was lost under it, is
    tried once more on a fresh one, so a connection that died silently reads as unreachable
    (not as Docker hanging), and one dropped by an sshd restart as nothing at all."""
    try:
        try:
            version, _ = await host_facts.docker_version(executor)
        except RuntimeFailure as exc:
            retry = isinstance(exc, CommandTimeout) or exc.step in ("ssh", "transport")
            if reset is None or not retry:
                raise
            reset()
            version, _ = await host_facts.docker_version(executor)
    except CommandFailed as exc:
        return [Seen("reachability", OK, "SSH answers"), Seen("docker", "down", exc.detail)]
    except RuntimeFailure as exc:
        if unreachable(exc):
            return [Seen("reachability", "unreachable", exc.detail, {"code": exc.code})]
        return [Seen("reachability", OK, "SSH answers"), Seen("docker", "down", exc.detail)]
    seen = [Seen("reachability", OK, "SSH answers"), Seen("docker", OK, f"Docker {version}")]
    try:
        root = (await executor.run(host_facts.DOCKER_ROOT)).stdout.strip() or "/"
        free, total = host_facts.parse_df((await executor.run(host_facts.disk_free(root))).stdout)
        seen.append(judge_disk(free, total, root, was_full=disk_was_full))
    except (RuntimeFailure, ValueError, IndexError):
        pass  # the disk stays as last seen
    if proxy_needed:
        try:
            found = await proxy.status(executor)
        except RuntimeFailure:
            return seen
        if found.running:
            version = f" (Caddy {found.version})" if found.version else ""
            seen.append(Seen("proxy", OK, f"running{version}"))
        else:
            detail = found.detail if found.installed else "not installed"
            seen.append(Seen("proxy", "down", f"{detail}; deployments with domains do not answer"))
    return seen


async def _health(
    executor: Executor, state: ContainerState, port: int, check: HealthCheck
) -> Probe:
    """The deployment's own check, HEALTH_ATTEMPTS times at most, its interval apart."""
    assert state.ip_address is not None
    last = Probe(False, "not checked", "garbage")
    for attempt in range(HEALTH_ATTEMPTS):
        if attempt:
            await asyncio.sleep(min(check.interval, 2.0))
        last = await probe(executor, state.ip_address, port, check)
        if last.ok:
            return last
    return last


async def probe_deployment(
    executor: Executor,
    *,
    container: str,
    port: int,
    health: HealthCheck,
    before: Mapping[str, Any] | None = None,
) -> Seen | None:
    """The serving container now; None when the target cannot tell (Docker not answering:
    the server's own check says so). A lost connection raises RuntimeFailure."""
    result = await executor.run(docker.inspect(container))
    if not result.ok:
        if "no such" not in (result.stderr + result.stdout).lower():
            return None
        state = None
    else:
        state = docker.parse_container(result.stdout)
    if state is None:
        return judge_container(container, None, before=before)
    check = None
    if state.running and state.ip_address and health.type != "running":
        check = await _health(executor, state, port, health)
    return judge_container(
        container,
        state,
        docker_health=health_status(result.stdout),
        check=check,
        before=before,
    )
