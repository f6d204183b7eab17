"""What a deploy job does on the target: image, new container, gates, switch, or roll back.

Behind the proxy (deployments with domains; see docs/deployments.md): the new release starts
once, without a public port, on the proxy's network; it must pass its health check at its own
address and the required-env guard; then the proxy switches to it in one config change, and the
smoke checks run through the proxy. A failure before the switch leaves the proxy untouched; a
failure after it switches back to the old container, still running. The old container is
drained and removed only after the release is recorded as serving.

With a directly published port: the new release first runs as a *candidate* without the port
and must pass its health check; only then is the old container stopped and the *final*
container started on the port and checked again (a gap the release log states).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from deploymate.core import failpoints
from deploymate.runtime import docker, environ, smoke
from deploymate.runtime.errors import CommandFailed, RuntimeFailure
from deploymate.runtime.executor import Executor
from deploymate.runtime.health import HealthCheck, Probe, wait_healthy
from deploymate.runtime.proxy import CHECK_PORT, NETWORK

Log = Callable[[str], Awaitable[None]]
LOG_TAIL = 30
RUNNING_FOR = 1.5  # seconds a container without a health endpoint must keep running


@dataclass(frozen=True)
class Plan:
    deployment_id: int
    deployment_name: str
    release_id: int
    container_name: str
    image_id: str
    env: dict[str, str]
    internal_port: int
    external_port: int
    command: list[str] | None
    restart_policy: str
    memory: str | None
    cpus: float | None
    labels: dict[str, str]
    health: HealthCheck
    domains: tuple[str, ...] = ()
    required_env: tuple[str, ...] = ()
    smoke: tuple[dict[str, Any], ...] = ()
    drain_seconds: float = 10.0
    mounts: tuple[docker.Mount, ...] = ()

    @property
    def routed(self) -> bool:
        return bool(self.domains)

    @property
    def upstream(self) -> str:
        return f"{self.container_name}:{self.internal_port}"

    def spec(self, role: str, *, publish: bool) -> docker.ContainerSpec:
        name = (
            self.container_name
            if role == docker.ROLE_SERVING
            else f"{self.container_name}-candidate"
        )
        labels = {
            **self.labels,
            docker.LABEL_DEPLOYMENT: str(self.deployment_id),
            docker.LABEL_NAME: self.deployment_name,
            docker.LABEL_RELEASE: str(self.release_id),
            docker.LABEL_ROLE: role,
        }
        return docker.ContainerSpec(
            name=name,
            image=self.image_id,
            labels=labels,
            env=self.env,
            internal_port=self.internal_port,
            external_port=self.external_port if publish else None,
            command=self.command,
            # A candidate never outlives its check; what serves (published or behind the
            # proxy) restarts after a crash or a reboot of the host.
            restart_policy=self.restart_policy if role == docker.ROLE_SERVING else "no",
            memory=self.memory,
            cpus=self.cpus,
            network=NETWORK if self.routed else None,
            mounts=self.mounts,
        )


@dataclass
class Outcome:
    ok: bool
    detail: str
    gap_seconds: float | None = None
    retire: str | None = None  # the old container, to drain and remove once recorded
    rolled_back: bool = False  # failed after the switch, and the proxy went back
    # False when the failure may have taken the previous release off the air too (the proxy
    # in front of it is down): the message must not promise it still serves.
    previous_serves: bool = True
    smoke: list[dict[str, Any]] | None = None


class Router(Protocol):
    """The target's proxy as the engine needs it; the job handler keeps it in the records."""

    async def switch(self, upstream: str | None) -> None:
        """Route the deployment's domains to `upstream` (None: no route) in one change."""
        ...

    async def address(self) -> str | None:
        """The proxy's address on the deployments' network, for checks through it."""
        ...


async def state(executor: Executor, name: str) -> docker.ContainerState | None:
    return docker.parse_container((await executor.run(docker.inspect(name))).stdout)


def _exit_of(current: docker.ContainerState | None) -> str | None:
    """How a container stopped, in words; None while it runs."""
    if current is None:
        return "disappeared"
    if current.restart_count > 0:  # Docker's restart policy hides the exits between restarts
        return (
            f"keeps exiting (status {current.exit_code}; restarted {current.restart_count} times)"
        )
    if current.running:
        return None
    if current.oom_killed:
        return "was killed for lack of memory (raise its memory limit)"
    return f"exited with status {current.exit_code}"


async def verify(executor: Executor, name: str, plan: Plan, log: Log) -> Probe:
    """Health-check a container at its own address until it passes, fails or exits."""
    current = await state(executor, name)
    for _ in range(20):  # a container on its way out runs a moment longer without an address
        if current is None or not current.running or current.ip_address:
            break
        await asyncio.sleep(0.1)
        current = await state(executor, name)
    if current is None or not current.running or not current.ip_address:
        how = _exit_of(current) or "has no network address"
        return Probe(False, f"the container {how} at once; its last log lines are in the job's log")
    if plan.health.type == "running":  # a worker: healthy when it is still running after a while
        await asyncio.sleep(max(plan.health.start_period, RUNNING_FOR))
        ended = _exit_of(await state(executor, name))
        if ended is not None:
            return Probe(False, f"the container {ended} before it was healthy; see its last lines")
        await log(f"health: still running after {max(plan.health.start_period, RUNNING_FOR):g}s")
        return Probe(True, f"running for {max(plan.health.start_period, RUNNING_FOR):g}s")
    ip = current.ip_address

    async def on_attempt(attempt: int, probe: Probe) -> None:
        if probe.ok or attempt == 1 or attempt % 5 == 0:
            await log(f"health {attempt}/{plan.health.retries}: {probe.detail}")

    async def exited() -> str | None:
        return _exit_of(await state(executor, name))

    return await wait_healthy(executor, ip, plan.internal_port, plan.health, on_attempt, exited)


async def container_logs(executor: Executor, name: str) -> list[str]:
    result = await executor.run(docker.logs(name, LOG_TAIL))
    return [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.strip()]


async def _discard(executor: Executor, name: str, log: Log, why: str) -> None:
    lines = await container_logs(executor, name)
    await log(f"last {len(lines)} log line(s) of {name} ({why}):")
    for line in lines:
        await log(f"  | {line}")
    await executor.run(docker.remove(name))
    await log(f"removed {name}")


async def _start(executor: Executor, spec: docker.ContainerSpec, log: Log) -> None:
    await log(
        f"starting {spec.name} from {spec.image[:19]}"
        + (f" on port {spec.external_port}" if spec.external_port else " (no public port)")
    )
    try:
        await executor.run(docker.run(spec))
    except CommandFailed as exc:
        if "already in use" not in exc.output:
            raise
        await log(f"removing a leftover {spec.name} of an interrupted attempt")
        await executor.run(docker.remove(spec.name))
        await executor.run(docker.run(spec))


async def _switch(executor: Executor, plan: Plan, previous: str, log: Log) -> Outcome:
    """Hand the public port from the old container to the new release; undo on failure."""
    started = time.monotonic()
    await log(f"stopping {previous} to free port {plan.external_port}")
    await executor.run(docker.stop(previous))
    final = plan.spec(docker.ROLE_SERVING, publish=True)
    try:
        await _start(executor, final, log)
        probe = await verify(executor, final.name, plan, log)
    except RuntimeFailure as exc:
        probe = Probe(False, exc.detail)
    gap = time.monotonic() - started
    if probe.ok:
        await log(f"port {plan.external_port} served by {final.name} after a {gap:.2f}s gap")
        return Outcome(True, probe.detail, gap)
    await _discard(executor, final.name, log, "failed after the switch")
    await log(f"restarting {previous}")
    await executor.run(docker.start(previous))
    return Outcome(False, f"new container failed after the switch: {probe.detail}", gap)


async def deploy(executor: Executor, plan: Plan, previous: str | None, log: Log) -> Outcome:
    """Run a release; the previous container keeps serving unless the new one proves healthy."""
    prev_state = await state(executor, previous) if previous else None
    if prev_state is not None and prev_state.running:
        candidate = plan.spec(docker.ROLE_CANDIDATE, publish=False)
        await failpoints.reach("release.start", log)
        await _start(executor, candidate, log)
        await failpoints.reach("release.health", log)
        probe = await verify(executor, candidate.name, plan, log)
        if not probe.ok:
            await _discard(executor, candidate.name, log, "unhealthy")
            return Outcome(False, probe.detail)
        await log(f"candidate healthy: {probe.detail}")
        await executor.run(docker.remove(candidate.name))
        assert previous is not None
        outcome = await _switch(executor, plan, previous, log)
        if outcome.ok:
            await executor.run(docker.remove(previous))
            await log(f"removed the previous container {previous}")
        return outcome
    final = plan.spec(docker.ROLE_SERVING, publish=True)
    try:
        await _start(executor, final, log)
    except RuntimeFailure as exc:
        await executor.run(docker.remove(final.name))
        return Outcome(False, exc.detail)
    probe = await verify(executor, final.name, plan, log)
    if not probe.ok:
        await _discard(executor, final.name, log, "unhealthy")
        return Outcome(False, probe.detail)
    if previous and prev_state is not None:
        await executor.run(docker.remove(previous))
        await log(f"removed the stopped previous container {previous}")
    return Outcome(True, probe.detail)


async def _missing_env(executor: Executor, name: str, plan: Plan, log: Log) -> str | None:
    """The required-env guard on the started container: what its main process lacks."""
    if not plan.required_env:
        return None
    current = await state(executor, name)
    if current is None:
        return "the container disappeared before its environment could be read"
    seen = await environ.read(executor, current)
    missing = [n for n in plan.required_env if n not in seen.names]
    await log(
        f"required env checked in {seen.source}: "
        + (f"missing {', '.join(missing)}" if missing else f"all {len(plan.required_env)} present")
    )
    if missing:
        return (
            f"the container's main process lacks the required environment {', '.join(missing)} "
            "(its entrypoint may drop it); the release was not switched"
        )
    return None


async def run_smoke(
    executor: Executor, plan: Plan, container: str, proxy_address: str | None, log: Log
) -> list[smoke.SmokeResult]:
    results = await smoke.run_all(
        executor,
        plan.smoke,
        proxy_address=proxy_address,
        port=CHECK_PORT,
        host=plan.domains[0] if plan.domains else None,
        container=container,
    )
    for r in results:
        await log(f"smoke {r.check}: {r.detail} ({r.seconds:.2f}s)")
    return results


async def prepare(executor: Executor, plan: Plan, log: Log) -> Outcome:
    """Start the new release once, without a public port, and hold it to its gates (health at
    its own address, the required-env guard); a failure removes it. Nothing is switched."""
    new = plan.spec(docker.ROLE_SERVING, publish=False)
    await failpoints.reach("release.start", log)
    try:
        await _start(executor, new, log)
    except RuntimeFailure as exc:
        await executor.run(docker.remove(new.name))
        return Outcome(False, exc.detail)
    await failpoints.reach("release.health", log)
    probe = await verify(executor, new.name, plan, log)
    if not probe.ok:
        await _discard(executor, new.name, log, "unhealthy")
        return Outcome(False, probe.detail)
    where = "" if plan.health.type == "running" else " at its own address"
    await log(f"healthy{where}: {probe.detail}")
    await failpoints.reach("release.env_guard", log)
    problem = await _missing_env(executor, new.name, plan, log)
    if problem:
        await _discard(executor, new.name, log, "required env missing")
        return Outcome(False, problem)
    return Outcome(True, probe.detail)


async def discard(executor: Executor, name: str, log: Log, why: str) -> None:
    """Remove a container that will not serve, its last log lines kept in the job's log."""
    await _discard(executor, name, log, why)


async def deploy_routed(
    executor: Executor,
    plan: Plan,
    previous: str | None,
    old_upstream: str | None,
    router: Router,
    log: Log,
) -> Outcome:
    """The release flow behind the proxy: the new container starts once, the switch is one
    config change, and the old container keeps running until the new one has proved itself."""
    new = plan.spec(docker.ROLE_SERVING, publish=False)
    prev_state = await state(executor, previous) if previous else None
    if prev_state is None or not prev_state.running:
        old_upstream = None  # nothing to go back to
    ready = await prepare(executor, plan, log)
    if not ready.ok:
        return ready
    probe = Probe(True, ready.detail)
    await failpoints.reach("release.switch", log)
    started = time.monotonic()
    try:
        await router.switch(plan.upstream)
    except RuntimeFailure as exc:
        await _discard(executor, new.name, log, "the proxy refused the switch")
        return Outcome(False, f"the proxy could not switch: {exc.detail}", previous_serves=False)
    await log(
        f"proxy switched {', '.join(plan.domains)} to {new.name} in "
        f"{time.monotonic() - started:.2f}s"
    )
    await failpoints.reach("release.smoke", log)
    results = await run_smoke(executor, plan, new.name, await router.address(), log)
    failed = [r for r in results if not r.ok]
    if failed:
        await router.switch(old_upstream)
        await log(
            "smoke failed; proxy switched back to "
            + (previous if old_upstream and previous else "no route (nothing served before)")
        )
        await _discard(executor, new.name, log, "smoke failed")
        detail = "; ".join(f"{r.check}: {r.detail}" for r in failed)
        return Outcome(
            False,
            f"smoke check failed after the switch ({detail}); the proxy went back to the "
            "previous release (automatic rollback)",
            rolled_back=True,
            smoke=[r.as_dict() for r in results],
        )
    return Outcome(
        True,
        probe.detail,
        gap_seconds=0.0 if previous else None,
        retire=previous if prev_state is not None else None,
        smoke=[r.as_dict() for r in results] if results else None,
    )


async def retire(executor: Executor, name: str, drain_seconds: float, log: Log) -> None:
    """Let in-flight requests of the old container finish, then stop and remove it."""
    await failpoints.reach("release.drain", log)
    if drain_seconds > 0:
        await log(f"draining {name} for {drain_seconds:g}s (in-flight requests finish)")
        await asyncio.sleep(drain_seconds)
    await failpoints.reach("release.cleanup", log)
    await executor.run(docker.stop_and_remove(name))
    await log(f"stopped and removed the previous container {name}")


async def containers_of(executor: Executor, deployment_id: int, name: str) -> list[dict[str, Any]]:
    """This deployment's containers, matched by id and name (ids alone repeat across instances)."""
    labels = {docker.LABEL_DEPLOYMENT: str(deployment_id), docker.LABEL_NAME: name}
    return docker.parse_ps((await executor.run(docker.list_by_labels(labels))).stdout)
