"""The app deploy job: every service of the environment on every server moves, or none does.

1. gates: on each server (at most PARALLEL at once; one SSH connection per server), the images
   are made sure of, then every service's new container is started and held to its gates
   (health, required env) together; nothing is switched yet;
2. switch: the services with domains switch their proxy routes, every server at once;
3. smoke checks through the proxy, every server at once;
4. recorded: every service serves its new release; then the old containers are drained and
   removed.
A failure in 1 removes the new containers; in 2 or 3 the routes already switched go back first,
so an environment never runs one service from one release and another from the next.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from deploymate.apps import builds
from deploymate.apps.models import App, AppRelease, AppSecret
from deploymate.apps.releases import APP_RELEASE, SKIP_DRIFT
from deploymate.context import AppContext
from deploymate.core.db import utcnow
from deploymate.core.errors import DeployMateError
from deploymate.deployments import engine, routing
from deploymate.deployments.jobs import JobRouter, plan_for, routed_upstream
from deploymate.deployments.models import Deployment, DeploymentEvent, Release
from deploymate.deployments.service import restore
from deploymate.jobs.models import Job
from deploymate.jobs.worker import JobContext, JobFailed
from deploymate.runtime import docker, images
from deploymate.runtime.errors import RuntimeFailure
from deploymate.runtime.executor import Executor
from deploymate.servers.models import Server
from deploymate.servers.targets import executor_for

PARALLEL = 5
DRIFT_TIMEOUT = 60.0


@dataclass
class Part:
    """One service on one server in this app release."""

    service: str
    server: Server
    deployment_id: int
    release_id: int
    executor: Executor
    previous: str | None = None  # the container serving before
    routed_before: str | None = None
    plan: engine.Plan | None = None
    prepared: bool = False
    switched: bool = False

    @property
    def label(self) -> str:
        return f"{self.service}@{self.server.name}"


async def _load(ctx: JobContext) -> tuple[AppRelease, list[Part]]:
    context: AppContext = ctx.context
    async with ctx.sessions() as db:
        app_release = await db.get(AppRelease, int(ctx.job.payload[APP_RELEASE]))
        if app_release is None:
            raise JobFailed("the app release is gone")
        app_release.status = "running"
        parts = []
        for service, per_server in app_release.parts.items():
            for _server_name, ids in per_server.items():
                if ids.get("unchanged"):
                    continue  # a changed-surface release leaves it as it serves
                dep = await db.get(Deployment, ids["deployment_id"])
                assert dep is not None and dep.server_id is not None
                server = await db.get(Server, dep.server_id)
                assert server is not None
                current = (
                    await db.get(Release, dep.current_release_id)
                    if dep.current_release_id
                    else None
                )
                dep.status = "deploying"
                parts.append(
                    Part(
                        service=service,
                        server=server,
                        deployment_id=dep.id,
                        release_id=ids["release_id"],
                        executor=executor_for(context, server),
                        previous=current.container_name if current else None,
                        routed_before=dep.routed_to,
                    )
                )
        await db.commit()
    return app_release, parts


async def _image(ctx: JobContext, part: Part, log: engine.Log, known: dict[Any, Any]) -> None:
    """Make sure of the part's image and plan its container; an image two services of one
    server share is looked at (and streamed) once."""
    context: AppContext = ctx.context
    async with ctx.sessions() as db:
        rel = await db.get(Release, part.release_id)
        assert rel is not None
        key = (rel.image, rel.image_id)  # pinned: a ship runs staging's exact image
    if key not in known:
        known[key] = await images.ensure(
            part.executor,
            key[0],
            pinned_id=key[1],
            control=context.control_docker(),
            log=log,
            shipper=context.shipper(),
        )
    info = known[key]
    async with ctx.sessions() as db:
        rel = await db.get(Release, part.release_id)
        dep = await db.get(Deployment, part.deployment_id)
        assert rel is not None and dep is not None
        rel.image_id, rel.status = info.id, "running"
        await db.commit()
        part.plan = plan_for(context, dep, rel, info.id)


async def _gate_server(
    ctx: JobContext, group: list[Part], log: engine.Log
) -> list[tuple[Part, str | None]]:
    """The gates of the services of one server: images and the proxy first, one at a time,
    then every service's container started and held to its gates together (a worker's
    minimum run time overlaps the web's health check)."""

    def said(part: Part) -> engine.Log:
        async def line(message: str) -> None:
            await log(f"[{part.label}] {message}")

        return line

    known: dict[Any, Any] = {}
    try:
        for part in group:
            await _image(ctx, part, said(part), known)
        routed = next((p for p in group if p.plan is not None and p.plan.routed), None)
        if routed is not None:
            await routing.ensure(ctx.context, routed.server, routed.executor, said(routed))
    except RuntimeFailure as exc:
        return [(part, exc.detail) for part in group]

    async def prepare(part: Part) -> str | None:
        assert part.plan is not None
        try:
            outcome = await engine.prepare(part.executor, part.plan, said(part))
        except RuntimeFailure as exc:
            return exc.detail
        part.prepared = outcome.ok
        return None if outcome.ok else outcome.detail

    answers = await asyncio.gather(*(prepare(p) for p in group))
    return list(zip(group, answers, strict=True))


async def _each_server(
    ctx: JobContext, parts: list[Part], log: engine.Log, parallel: int = PARALLEL
) -> list[tuple[Part, str | None]]:
    """The gates of every server, at most `parallel` servers at once."""
    by_server: dict[int, list[Part]] = {}
    for part in parts:
        by_server.setdefault(part.server.id, []).append(part)
    gate = asyncio.Semaphore(parallel)

    async def run(group: list[Part]) -> list[tuple[Part, str | None]]:
        async with gate:
            return await _gate_server(ctx, group, log)

    done = await asyncio.gather(*(run(g) for g in by_server.values()))
    return [answer for group in done for answer in group]


def waves(app_release: AppRelease, parts: list[Part]) -> list[list[Part]]:
    """`rollout: canary`: the environment's first server alone, then the others together;
    otherwise every server in one wave."""
    env = app_release.spec["environments"][app_release.environment]
    servers = list(dict.fromkeys(p.server.name for p in parts))
    if env.get("rollout") != "canary" or len(servers) < 2:
        return [parts]
    canary = next((s for s in env["servers"] if s in servers), servers[0])
    return [
        [p for p in parts if p.server.name == canary],
        [p for p in parts if p.server.name != canary],
    ]


async def _undo(ctx: JobContext, parts: list[Part], log: engine.Log, why: str) -> None:
    """Routes back to what served before, then the new containers removed."""
    context: AppContext = ctx.context
    for part in parts:
        if part.switched:
            router = JobRouter(context, part.deployment_id, part.server.id, part.executor)
            try:
                await router.switch(part.routed_before)
                await log(f"[{part.label}] proxy switched back")
            except RuntimeFailure as exc:
                await log(f"[{part.label}] could not switch back: {exc.detail}")
    for part in parts:
        if part.prepared and part.plan is not None:
            await engine.discard(part.executor, part.plan.container_name, log, why)


async def _drift(
    ctx: JobContext, app_release: AppRelease, parts: list[Part], log: engine.Log
) -> str | None:
    """The spec's drift command in the serving container and in the new one, before any
    switch: different answers (a schema version, say) block the release, with both shown.
    Only a non-production deploy may skip it, and that is audited when it is asked."""
    drift = app_release.spec.get("drift") or {}
    if not drift.get("command"):
        return None
    if ctx.job.payload.get(SKIP_DRIFT):
        await log("drift check skipped (--skip-drift)")
        return None
    service = drift.get("service") or next(iter(app_release.spec["services"]))
    part = next((p for p in parts if p.service == service and p.plan is not None), None)
    if part is None or part.plan is None:
        return None
    if part.previous is None:
        await log(f"drift: nothing serves {service} yet; nothing to compare")
        return None
    argv = list(drift["command"])
    answers = []
    for name in (part.previous, part.plan.container_name):
        result = await part.executor.run(docker.exec_in(name, argv, DRIFT_TIMEOUT))
        text = result.stdout.strip()
        if not result.ok:
            return (
                f"drift: {' '.join(argv)} failed in {name} (status {result.exit_status}): "
                f"{text[-300:]}"
            )
        answers.append(text)
    await log(f"drift: serving says {answers[0][:200]!r}, new release says {answers[1][:200]!r}")
    if answers[0] != answers[1]:
        return (
            f"drift: the serving release of {service} says {answers[0][:200]!r} and the new one "
            f"says {answers[1][:200]!r} to {' '.join(argv)}; bring them in line (for example run "
            "the pending migrations by hand) before this release can go out"
        )
    return None


async def _build(ctx: JobContext, app_release: AppRelease, log: engine.Log) -> None:
    """The services built from the commit, before any server is touched."""
    if not builds.wanted(app_release):
        return
    context: AppContext = ctx.context
    async with ctx.sessions() as db:
        app = await db.get(App, app_release.app_id)
        assert app is not None
        rows = await db.execute(
            select(AppSecret).where(
                AppSecret.app_id == app.id, AppSecret.environment == app_release.environment
            )
        )
        secrets = {r.name: context.cipher.decrypt(r.value) for r in rows.scalars()}
    await builds.build_all(context, app.name, app_release, secrets, log)


async def _wave(
    ctx: JobContext,
    app_release: AppRelease,
    parts: list[Part],
    log: engine.Log,
    *,
    first: bool,
) -> str | None:
    """Gates, (in the first wave) the drift check, switches and smoke checks of some servers;
    what went wrong, or None. The caller undoes every wave moved so far on a failure."""
    context: AppContext = ctx.context
    env = app_release.spec["environments"][app_release.environment]
    gated = await _each_server(ctx, parts, log, int(env.get("parallel") or PARALLEL))
    failures = [(p, why) for p, why in gated if why is not None]
    if failures:
        return "; ".join(f"{p.label}: {why}" for p, why in failures)
    if first:
        problem = await _drift(ctx, app_release, parts, log)
        if problem is not None:
            return problem
    routed = [p for p in parts if p.plan is not None and p.plan.routed]

    async def switch(part: Part) -> str | None:
        assert part.plan is not None
        try:
            await JobRouter(context, part.deployment_id, part.server.id, part.executor).switch(
                part.plan.upstream
            )
        except RuntimeFailure as exc:
            return f"{part.label}: the proxy could not switch: {exc.detail}"
        part.switched = True
        await log(f"[{part.label}] proxy switched {', '.join(part.plan.domains)}")
        return None

    async def smoke(part: Part) -> str | None:
        assert part.plan is not None

        async def said(message: str) -> None:
            await log(f"[{part.label}] {message}")

        address = await JobRouter(
            context, part.deployment_id, part.server.id, part.executor
        ).address()
        results = await engine.run_smoke(
            part.executor, part.plan, part.plan.container_name, address, said
        )
        failed = [r for r in results if not r.ok]
        return f"{part.label}: smoke {failed[0].check}: {failed[0].detail}" if failed else None

    checked = [p for p in parts if p.plan is not None and p.plan.smoke]
    for step, chosen in ((switch, routed), (smoke, checked)):
        problems = [p for p in await asyncio.gather(*(step(p) for p in chosen)) if p]
        if problems:
            return "; ".join(problems)
    return None


async def deploy(ctx: JobContext) -> None:
    lines: list[str] = []
    started = time.monotonic()

    async def log(message: str) -> None:
        lines.append(f"{time.monotonic() - started:6.2f}s  {message}")
        await ctx.log(message)

    app_release, parts = await _load(ctx)
    await log(
        f"app release {app_release.number} of {app_release.environment}: "
        f"{len({p.service for p in parts})} service(s) on {len({p.server.id for p in parts})} "
        f"server(s), commit {(app_release.commit or 'unknown')[:12]}"
        + ("" if app_release.clean else " (dirty tree)")
    )
    for service, why in (app_release.surface or {}).items():
        await log(f"[{service}] changed: {why}")
    kept = [s for s in app_release.parts if s not in (app_release.surface or app_release.parts)]
    if kept:
        await log(f"unchanged, kept as they serve: {', '.join(kept)}")
    try:
        await _build(ctx, app_release, log)
    except DeployMateError as exc:
        await _finish(ctx, app_release.id, parts, False, exc.detail, lines)
        raise JobFailed(
            f"app release {app_release.number}: nothing was deployed: {exc.detail}"
        ) from None
    planned = waves(app_release, parts)
    moved: list[Part] = []
    for index, wave in enumerate(planned):
        if len(planned) > 1:
            names = ", ".join(dict.fromkeys(p.server.name for p in wave))
            await log(("canary: " if index == 0 else "then the others: ") + names)
        moved += wave
        problem = await _wave(ctx, app_release, wave, log, first=index == 0)
        if problem is None:
            continue
        switched = any(p.switched for p in moved)
        await _undo(ctx, moved, log, "the app release went back")
        untouched = [p for p in parts if p not in moved]
        if untouched:
            others = ", ".join(dict.fromkeys(p.server.name for p in untouched))
            await log(f"the canary failed: {others} not touched")
        await _finish(ctx, app_release.id, parts, False, problem, lines)
        if index == 0 and len(planned) > 1:
            raise JobFailed(
                f"app release {app_release.number}: the canary failed and went back; "
                f"no other server was touched: {problem}"
            )
        if not switched:
            raise JobFailed(f"app release {app_release.number} failed before any switch: {problem}")
        raise JobFailed(
            f"app release {app_release.number} failed and went back as a whole: {problem}"
        )
    await _finish(ctx, app_release.id, parts, True, None, lines)
    drains = []
    for part in parts:
        if part.previous and part.plan is not None:
            drains.append(engine.retire(part.executor, part.previous, part.plan.drain_seconds, log))
    for outcome in await asyncio.gather(*drains, return_exceptions=True):
        if isinstance(outcome, BaseException):
            await log(f"could not remove an old container: {outcome}")


async def _finish(
    ctx: JobContext,
    app_release_id: int,
    parts: list[Part],
    ok: bool,
    detail: str | None,
    lines: list[str],
) -> None:
    async with ctx.sessions() as db:
        app_release = await db.get(AppRelease, app_release_id)
        assert app_release is not None
        app_release.status = "succeeded" if ok else "failed"
        app_release.detail = detail
        app_release.finished_at = utcnow()
        pinned = copy.deepcopy(app_release.parts)  # a new object: the JSON change is saved
        for part in parts:
            dep = await db.get(Deployment, part.deployment_id)
            rel = await db.get(Release, part.release_id)
            assert dep is not None and rel is not None
            rel.finished_at, rel.log = utcnow(), {"lines": lines[-500:]}
            pinned[part.service][part.server.name]["image_id"] = rel.image_id
            if ok:
                rel.status = "succeeded"
                dep.current_release_id, dep.status, dep.status_message = rel.id, "running", None
                message = f"app release {app_release.number}: release {rel.number} is serving"
            else:
                rel.status = "failed"
                current = (
                    await db.get(Release, dep.current_release_id)
                    if dep.current_release_id
                    else None
                )
                if current is not None:
                    restore(dep, current.config)
                    dep.status, dep.status_message = "running", None
                else:
                    dep.status, dep.status_message = "failed", detail
                message = f"app release {app_release.number} failed: {detail}"
            db.add(
                DeploymentEvent(
                    deployment_id=dep.id,
                    actor=ctx.job.created_by,
                    action="app_deploy",
                    message=message[:2000],
                    job_id=ctx.job.id,
                )
            )
        app_release.parts = pinned
        await db.commit()


async def reconcile(context: AppContext, job: Job) -> None:
    """After an interrupted app job, the environment is made whole again, never mixed.

    Died before the release was recorded: every service goes back to what served before (its
    new containers removed, its routes back). Died after (while the old containers drained):
    what does not serve is removed. Then each server's proxy follows the records."""
    if job.kind != "app_deploy" or APP_RELEASE not in job.payload:
        return
    touched: dict[int, Server] = {}
    async with context.sessions() as db:
        app_release = await db.get(AppRelease, int(job.payload[APP_RELEASE]))
        if app_release is None:
            return
        recorded = app_release.status == "succeeded"
        removed: list[str] = []
        for per_server in app_release.parts.values():
            for ids in per_server.values():
                if ids.get("unchanged"):
                    continue  # never touched by the job: it serves as it did
                dep = await db.get(Deployment, ids["deployment_id"])
                rel = await db.get(Release, ids["release_id"])
                if dep is None or rel is None or dep.server_id is None:
                    continue
                server = await db.get(Server, dep.server_id)
                assert server is not None
                touched[server.id] = server
                current = (
                    await db.get(Release, dep.current_release_id)
                    if dep.current_release_id
                    else None
                )
                executor = executor_for(context, server)
                try:
                    for row in await engine.containers_of(executor, dep.id, dep.name):
                        release = int(row["labels"].get(docker.LABEL_RELEASE, 0))
                        stale = release != dep.current_release_id if recorded else release == rel.id
                        if stale:
                            await executor.run(docker.remove(str(row["name"])))
                            removed.append(f"{row['name']}@{server.name}")
                except RuntimeFailure as exc:
                    dep.status_message = f"could not check {server.name}: {exc.detail}"
                if not recorded:
                    rel.status, rel.finished_at = "failed", utcnow()
                    if current is not None:
                        restore(dep, current.config)
                        dep.status = "running"
                        dep.routed_to = routed_upstream(current)
                    else:
                        dep.status, dep.routed_to = "failed", None
                        dep.status_message = "the first app release was interrupted"
                db.add(
                    DeploymentEvent(
                        deployment_id=dep.id,
                        actor="system",
                        action="reconciled",
                        job_id=job.id,
                        message=f"job {job.id} (app release {app_release.number}) was "
                        + (
                            "interrupted while draining; the new release serves"
                            if recorded
                            else "interrupted; back to the release that served before"
                        ),
                    )
                )
        if not recorded:
            app_release.status, app_release.finished_at = "failed", utcnow()
            app_release.detail = (
                "interrupted: the control host stopped during this release; every service "
                "went back to what served before"
                + (f" (removed {', '.join(removed)})" if removed else "")
            )
        await db.commit()
    for server in touched.values():
        try:
            await routing.sync(context, server.id, executor_for(context, server))
        except RuntimeFailure:
            continue  # the next release or `deploymate proxy status` shows it


HANDLERS = {"app_deploy": deploy}
