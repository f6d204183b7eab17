"""Job handlers for deployments (deploy, stop, start, restart, delete) and reconciliation.

A deploy's outcome is recorded and announced (event `deploy.*`) in one transaction.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.context import AppContext
from deploymate.core import events, failpoints
from deploymate.core.db import utcnow
from deploymate.deployments import engine, recovery, routing
from deploymate.deployments.models import Deployment, DeploymentEvent, Release
from deploymate.deployments.service import (
    PULL_AS_ADMIN,
    STREAM_FROM_CONTROL,
    restore,
    secret_env,
)
from deploymate.jobs.models import Job
from deploymate.jobs.worker import JobContext, JobFailed
from deploymate.registries import service as registries
from deploymate.runtime import docker, images, proxy
from deploymate.runtime.errors import RuntimeFailure
from deploymate.runtime.executor import Executor
from deploymate.runtime.health import HealthCheck
from deploymate.servers.models import Server
from deploymate.servers.targets import describe, executor_for

SUCCEEDED, FAILED, ROLLED_BACK = "deploy.succeeded", "deploy.failed", "deploy.rolled_back"


async def _load(
    db: AsyncSession, context: AppContext, job: Job
) -> tuple[Deployment, Release | None, Server | None, Executor]:
    dep = await db.get(Deployment, job.deployment_id)
    if dep is None:
        raise JobFailed(f"deployment {job.deployment_id} is gone")
    release = await db.get(Release, job.release_id) if job.release_id else None
    server = await db.get(Server, dep.server_id) if dep.server_id else None
    return dep, release, server, executor_for(context, server)


def _event(db: AsyncSession, dep: Deployment, job: Job, action: str, message: str) -> None:
    db.add(
        DeploymentEvent(
            deployment_id=dep.id,
            actor=job.created_by,
            action=action,
            message=message,
            job_id=job.id,
        )
    )


def volume_name(deployment: str, name: str) -> str:
    """A named volume belongs to the deployment's name on its target, so it outlives releases
    (and a deployment re-created under the same name finds its data)."""
    return f"dm-{deployment}-{name}"


def mounts_for(deployment: str, volumes: list[dict[str, Any]]) -> tuple[docker.Mount, ...]:
    return tuple(
        docker.Mount(
            "volume" if v.get("name") else "bind",
            volume_name(deployment, v["name"]) if v.get("name") else v["source"],
            v["path"],
            bool(v.get("read_only")),
        )
        for v in volumes
    )


def plan_for(context: AppContext, dep: Deployment, release: Release, image_id: str) -> engine.Plan:
    config: dict[str, Any] = release.config
    env = {**config.get("env", {}), **secret_env(context.cipher, config.get("secret_env"))}
    return engine.Plan(
        deployment_id=dep.id,
        deployment_name=dep.name,
        release_id=release.id,
        container_name=release.container_name or f"dm-{dep.name}-r{release.number}",
        image_id=image_id,
        env=env,
        internal_port=config["internal_port"],
        external_port=config["external_port"],
        command=config.get("command"),
        restart_policy=config.get("restart_policy", "unless-stopped"),
        memory=config.get("memory_limit"),
        cpus=config.get("cpu_limit"),
        labels=config.get("labels", {}),
        health=HealthCheck(**config.get("health_check", {})),
        domains=tuple(config.get("domains") or ()),
        required_env=tuple(config.get("required_env") or ()),
        smoke=tuple(config.get("smoke") or ()),
        drain_seconds=float(config.get("drain_seconds", 10.0)),
        mounts=mounts_for(dep.name, config.get("volumes") or []),
    )


@dataclass
class JobRouter:
    """The engine's view of the proxy: a switch is a record change plus a config load."""

    context: AppContext
    deployment_id: int
    server_id: int | None
    executor: Executor
    _address: str | None = None

    async def switch(self, upstream: str | None) -> None:
        await routing.point(
            self.context, self.deployment_id, self.server_id, self.executor, upstream
        )

    async def address(self) -> str | None:
        if self._address is None:
            self._address = await proxy.address(self.executor)
        return self._address


async def deploy(ctx: JobContext) -> None:
    context: AppContext = ctx.context
    lines: list[str] = []
    started = time.monotonic()

    async def step(message: str) -> None:
        """Into the job's live log, and into the release's log with its time since the start."""
        lines.append(f"{time.monotonic() - started:6.2f}s  {message}")
        await ctx.log(message)

    async with ctx.sessions() as db:
        dep, release, server, executor = await _load(db, context, ctx.job)
        assert release is not None
        previous = await db.get(Release, dep.current_release_id) if dep.current_release_id else None
        release.status = "running"
        dep.status = "deploying"
        _event(
            db,
            dep,
            ctx.job,
            "deploy_started",
            f"release {release.number} ({release.reason}) started",
        )
        await db.commit()
        ref, pinned = release.image, release.image_id
        routed_before = dep.routed_to
        auth = await registries.auth_for(
            db, cipher=context.cipher, image=ref, admin=bool(ctx.job.payload.get(PULL_AS_ADMIN))
        )
    await step(f"release {release.number}: {release.reason} of {ref} on {describe(server)}")
    # The control host's images are a source only for callers allowed to use the control host.
    control = (
        context.control_docker()
        if server is not None and ctx.job.payload.get(STREAM_FROM_CONTROL)
        else None
    )
    routed = bool(release.config.get("domains"))
    try:
        await failpoints.reach("release.image", step)
        # The image and the proxy are independent: both are made sure of at once (a running
        # proxy costs one inspect; its network then exists for the new container).
        info, _ = await asyncio.gather(
            images.ensure(
                executor,
                ref,
                pinned_id=pinned,
                control=control,
                log=step,
                auth=auth,
                shipper=context.shipper() if control is not None else None,
            ),
            routing.ensure(context, server, executor, step) if routed else _nothing(),
        )
        async with ctx.sessions() as db:
            rel = await db.get(Release, release.id)
            dep_now = await db.get(Deployment, dep.id)
            assert rel is not None and dep_now is not None
            rel.image_id = info.id
            rel.repo_digest = info.repo_digests[0] if info.repo_digests else None
            await db.commit()
            plan = plan_for(context, dep_now, rel, info.id)
        await step(f"image {ref} is {info.id[:19]}")
        previous_name = previous.container_name if previous else None
        if plan.routed:
            router = JobRouter(context, dep.id, dep.server_id, executor)
            outcome = await engine.deploy_routed(
                executor, plan, previous_name, routed_before, router, step
            )
        else:
            outcome = await engine.deploy(executor, plan, previous_name, step)
            if outcome.ok and routed_before:  # moved from domains to a published port
                await routing.point(context, dep.id, dep.server_id, executor, None)
                await step("proxy route removed: the deployment now has a published port")
    except RuntimeFailure as exc:
        await step(f"failed at {exc.step}: {exc.detail}")
        outcome = engine.Outcome(False, exc.detail)
    await _record(ctx, dep.id, release.id, previous.id if previous else None, outcome, lines)
    if outcome.ok and outcome.retire:
        try:
            await engine.retire(executor, outcome.retire, plan.drain_seconds, step)
        except RuntimeFailure as exc:
            await step(f"could not remove {outcome.retire}: {exc.detail}")
    if outcome.ok:
        await _remove_leftovers(executor, dep, release.id, step)
        await _append_log(ctx, release.id, lines)
    if not outcome.ok:
        raise JobFailed(
            f"release {release.number} failed: {outcome.detail}"
            + (
                "; the previous release keeps serving"
                if previous and not outcome.rolled_back and outcome.previous_serves
                else ""
            )
        )


async def _remove_leftovers(
    executor: Executor, dep: Deployment, serving_release_id: int, step: engine.Log
) -> None:
    """Containers of earlier releases that a failed attempt could not remove (the target was
    unreachable, its Docker restarting): once a release serves, they go."""
    try:
        rows = await engine.containers_of(executor, dep.id, dep.name)
        for row in rows:
            if row["labels"].get(docker.LABEL_RELEASE) != str(serving_release_id):
                await executor.run(docker.remove(str(row["name"])))
                await step(f"removed {row['name']}, left by an earlier attempt")
    except RuntimeFailure as exc:
        await step(f"could not remove what earlier attempts left: {exc.detail}")


async def _nothing() -> None:
    return None


async def _append_log(ctx: JobContext, release_id: int, lines: list[str]) -> None:
    async with ctx.sessions() as db:
        rel = await db.get(Release, release_id)
        assert rel is not None
        rel.log = {**rel.log, "lines": lines[-500:]}
        await db.commit()


async def _record(
    ctx: JobContext,
    deployment_id: int,
    release_id: int,
    previous_id: int | None,
    outcome: engine.Outcome,
    lines: list[str],
) -> None:
    async with ctx.sessions() as db:
        dep = await db.get(Deployment, deployment_id)
        rel = await db.get(Release, release_id)
        previous = await db.get(Release, previous_id) if previous_id else None
        assert dep is not None and rel is not None
        rel.log = {
            "lines": lines[-500:],
            **({"gap_seconds": outcome.gap_seconds} if outcome.gap_seconds is not None else {}),
        }
        rel.finished_at = utcnow()
        if outcome.smoke is not None:
            dep.smoke_result = {
                "at": utcnow().isoformat(),
                "release": rel.number,
                "checks": outcome.smoke,
            }
        if outcome.ok:
            rel.status = "succeeded"
            if rel.rollback_of and previous is not None:
                previous.status = "rolled_back"
            dep.current_release_id = rel.id
            dep.status, dep.status_message = "running", None
            _event(db, dep, ctx.job, "deploy_succeeded", f"release {rel.number} is serving")
        else:
            rel.status = "failed"
            if previous is not None:
                dep.status = "running"
                dep.status_message = (
                    f"release {rel.number} failed; release still serving is the previous one"
                )
                if rel.reason != "rollback":
                    restore(dep, previous.config)  # the desired config follows what serves
            else:
                dep.status = "failed"
                dep.status_message = f"release {rel.number} failed: {outcome.detail}"
            _event(
                db, dep, ctx.job, "deploy_failed", f"release {rel.number} failed: {outcome.detail}"
            )
        server = await db.get(Server, dep.server_id) if dep.server_id else None
        _announce(db, dep, rel, previous, server, outcome)
        await db.commit()


def _announce(
    db: AsyncSession,
    dep: Deployment,
    rel: Release,
    previous: Release | None,
    server: Server | None,
    outcome: engine.Outcome,
) -> None:
    """The outcome as an event, for notifications and webhooks."""
    where = f"{dep.name} on {server.name}" if server else dep.name
    what = f"release {rel.number} ({rel.image})"
    if outcome.ok:
        rolled_back = rel.reason == "rollback"
        name = ROLLED_BACK if rolled_back else SUCCEEDED
        text = f"{where}: {'rolled back; ' if rolled_back else ''}{what} is serving"
    else:
        detail = (outcome.detail or "unknown error")[:500]
        name = FAILED
        text = f"{where}: {what} failed: {detail}" + (
            f"; release {previous.number} keeps serving"
            if previous and outcome.previous_serves
            else ""
        )
    events.emit(
        db,
        name,
        {
            "text": text,
            "link": f"/deployments/{dep.id}",
            "user_ids": [dep.owner_id] if dep.owner_id else [],
            "deployment_id": dep.id,
            "release": rel.number,
        },
    )


async def operate(ctx: JobContext) -> None:
    """stop | start | restart of the serving container."""
    context: AppContext = ctx.context
    kind = ctx.job.kind
    async with ctx.sessions() as db:
        dep, release, _, executor = await _load(db, context, ctx.job)
        name = release.container_name if release else None
    if name is None:
        raise JobFailed("no serving container")
    command = {"stop": docker.stop, "start": docker.start, "restart": docker.restart}[kind]
    await ctx.log(f"{kind} {name}")
    try:
        await executor.run(command(name))
    except RuntimeFailure as exc:
        raise JobFailed(f"{kind} failed: {exc.detail}") from None
    async with ctx.sessions() as db:
        dep_now = await db.get(Deployment, dep.id)
        assert dep_now is not None
        dep_now.status = "stopped" if kind == "stop" else "running"
        _event(db, dep_now, ctx.job, kind, f"{name} {kind}{'ped' if kind == 'stop' else 'ed'}")
        await db.commit()


async def delete(ctx: JobContext) -> None:
    """Remove every container of the deployment; the record and its history stay."""
    context: AppContext = ctx.context
    async with ctx.sessions() as db:
        dep, _, _, executor = await _load(db, context, ctx.job)
    with_volumes = bool(ctx.job.payload.get("volumes"))
    try:
        if dep.routed_to:
            await routing.point(context, dep.id, dep.server_id, executor, None)
            await ctx.log(f"proxy route of {', '.join(dep.domains)} removed")
        for row in await engine.containers_of(executor, dep.id, dep.name):
            await ctx.log(f"removing {row['name']}")
            await executor.run(docker.remove(str(row["name"])))
        named = [v["name"] for v in dep.volumes or [] if v.get("name")]
        for name in named if with_volumes else []:
            await executor.run(docker.volume_remove(volume_name(dep.name, name)))
            await ctx.log(f"removed the volume {volume_name(dep.name, name)}")
        if named and not with_volumes:
            await ctx.log(
                f"kept the volume(s) {', '.join(volume_name(dep.name, n) for n in named)}"
            )
    except RuntimeFailure as exc:
        raise JobFailed(f"delete failed: {exc.detail}") from None
    async with ctx.sessions() as db:
        dep_now = await db.get(Deployment, dep.id)
        assert dep_now is not None
        dep_now.status, dep_now.deleted_at = "deleted", utcnow()
        kept = "" if with_volumes or not dep.volumes else "; volumes kept"
        _event(db, dep_now, ctx.job, "deleted", f"containers removed; history kept{kept}")
        await db.commit()


def routed_upstream(release: Release | None) -> str | None:
    """Where the proxy sends a release's domains (None: it has none, or nothing serves)."""
    if release is None or not release.config.get("domains"):
        return None
    return f"{release.container_name}:{release.config['internal_port']}"


async def reconcile(context: AppContext, job: Job) -> None:
    """After an interrupted job, make the record match what the target really runs."""
    if job.deployment_id is None:
        return
    async with context.sessions() as db:
        dep = await db.get(Deployment, job.deployment_id)
        if dep is None:
            return
        server = await db.get(Server, dep.server_id) if dep.server_id else None
        executor = executor_for(context, server)
        current = await db.get(Release, dep.current_release_id) if dep.current_release_id else None
        inflight = (
            await db.get(Release, job.release_id)
            if job.release_id and job.kind == "deploy"
            else None
        )
        plan = recovery.settle(
            await engine.containers_of(executor, dep.id, dep.name),
            current_id=current.id if current else None,
            inflight_id=inflight.id if inflight else None,
            inflight_number=inflight.number if inflight else None,
            job_kind=job.kind,
            deleted=dep.status == "deleted",
        )
        for name in plan.remove:
            await executor.run(docker.remove(name))
        if plan.start:
            await executor.run(docker.start(plan.start))
        if inflight is not None and plan.inflight_status:
            inflight.status, inflight.finished_at = plan.inflight_status, utcnow()
        if plan.restore_serving_config and current is not None:
            restore(dep, current.config)  # the desired config follows what really serves
        dep.current_release_id = plan.serving_id
        dep.status, dep.status_message = plan.status, plan.status_message
        serving = await db.get(Release, plan.serving_id) if plan.serving_id else None
        before = dep.routed_to
        dep.routed_to = routed_upstream(serving)
        db.add(
            DeploymentEvent(
                deployment_id=dep.id,
                actor="system",
                action="reconciled",
                job_id=job.id,
                message=f"job {job.id} ({job.kind}) was interrupted; "
                + ("; ".join(plan.notes) or f"status is {dep.status}"),
            )
        )
        await db.commit()
    if before != dep.routed_to and (before or dep.routed_to):
        await routing.sync(context, dep.server_id, executor)  # the proxy follows the records


HANDLERS = {
    "deploy": deploy,
    "stop": operate,
    "start": operate,
    "restart": operate,
    "delete": delete,
}
