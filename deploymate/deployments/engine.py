"""What a deploy job does on the target: image, candidate, health gate, swap, or roll back.

Swap with a directly published port (see docs/deployments.md): the new release first runs as a
*candidate* without the public port and must pass its health check; only then is the old
container stopped, the *final* container started on the port and checked again. Any failure
removes the new containers and restarts the old one, which never stopped before the new
release proved healthy. A proxy can later replace `_switch` to make the gap zero.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from deploymate.runtime import docker
from deploymate.runtime.errors import RuntimeFailure
from deploymate.runtime.executor import Executor
from deploymate.runtime.health import HealthCheck, Probe, wait_healthy

Log = Callable[[str], Awaitable[None]]
LOG_TAIL = 30


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
            restart_policy=self.restart_policy if publish else "no",
            memory=self.memory,
            cpus=self.cpus,
        )


@dataclass
class Outcome:
    ok: bool
    detail: str
    gap_seconds: float | None = None


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
    await executor.run(docker.remove(spec.name))  # a leftover of an interrupted attempt
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
        await _start(executor, candidate, log)
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


async def containers_of(executor: Executor, deployment_id: int, name: str) -> list[dict[str, Any]]:
    """This deployment's containers, matched by id and name (ids alone repeat across instances)."""
    labels = {docker.LABEL_DEPLOYMENT: str(deployment_id), docker.LABEL_NAME: name}
    return docker.parse_ps((await executor.run(docker.list_by_labels(labels))).stdout)
