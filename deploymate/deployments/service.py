"""Deployment use cases: create, change, redeploy, roll back, operate; each deploy is a release."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.deployments import engine
from deploymate.deployments.models import Deployment, DeploymentEvent, DeploymentTemplate, Release
from deploymate.deployments.schemas import (
    DeploymentCreate,
    DeploymentOut,
    DeploymentUpdate,
    ReleaseBrief,
    ReleaseOut,
)
from deploymate.deployments.schemas import (
    Settings as DeploySettings,
)
from deploymate.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from deploymate.jobs import service as jobs
from deploymate.jobs.models import Job
from deploymate.runtime import docker, host_facts
from deploymate.runtime.executor import Executor
from deploymate.runtime.health import HealthCheck, probe
from deploymate.servers import service as servers
from deploymate.servers.models import Server
from deploymate.servers.service import Viewer
from deploymate.services import Services

CONFIG_FIELDS = (
    "image",
    "internal_port",
    "external_port",
    "env",
    "command",
    "restart_policy",
    "health_check",
    "memory_limit",
    "cpu_limit",
    "labels",
)
LIVE = ("deploying", "running", "stopped", "failed")


def can_see(viewer: Viewer, dep: Deployment) -> bool:
    return viewer.user.is_admin or dep.owner_id == viewer.user.id


async def get_visible(db: AsyncSession, viewer: Viewer, deployment_id: int) -> Deployment:
    dep = await db.get(Deployment, deployment_id)
    if dep is None or not can_see(viewer, dep):
        raise NotFound(f"no such deployment: {deployment_id}")
    return dep


async def find_by_name(db: AsyncSession, viewer: Viewer, name: str) -> Deployment:
    rows = await db.execute(
        select(Deployment).where(Deployment.name == name, Deployment.status != "deleted")
    )
    for dep in rows.scalars():
        if can_see(viewer, dep):
            return dep
    raise NotFound(f"no such deployment: {name}")


async def list_visible(
    db: AsyncSession, viewer: Viewer, include_deleted: bool = False
) -> list[Deployment]:
    stmt = select(Deployment).order_by(Deployment.name)
    if not include_deleted:
        stmt = stmt.where(Deployment.status != "deleted")
    if not viewer.user.is_admin:
        stmt = stmt.where(Deployment.owner_id == viewer.user.id)
    return list((await db.execute(stmt)).scalars())


def secret_env(services: Services, dep_or_config: Deployment | dict[str, Any]) -> dict[str, str]:
    token = (
        dep_or_config.secret_env
        if isinstance(dep_or_config, Deployment)
        else dep_or_config.get("secret_env")
    )
    if not token:
        return {}
    data: dict[str, str] = json.loads(services.cipher.decrypt(token))
    return data


def _seal(services: Services, values: dict[str, str]) -> str | None:
    return services.cipher.encrypt(json.dumps(values, sort_keys=True)) if values else None


def snapshot(dep: Deployment) -> dict[str, Any]:
    """The whole configuration a release runs with; secret values stay encrypted."""
    return {**{f: getattr(dep, f) for f in CONFIG_FIELDS}, "secret_env": dep.secret_env}


def restore(dep: Deployment, config: dict[str, Any]) -> None:
    for f in CONFIG_FIELDS:
        if f in config:
            setattr(dep, f, config[f])
    dep.secret_env = config.get("secret_env")


async def _target(
    db: AsyncSession, services: Services, viewer: Viewer, server_id: int | None
) -> Server | None:
    """A server the viewer may use, or the control host when that is allowed for them."""
    if server_id is None:
        if not services.settings.local_docker:
            raise PermissionDenied(
                "the control host is not a deployment target here "
                "(DEPLOYMATE_LOCAL_DOCKER_ENABLED=false)",
                code="local_docker_disabled",
            )
        if not (viewer.user.is_admin or viewer.user.can_deploy_local):
            raise PermissionDenied(
                "members deploy to their own servers; add a server first, or ask an "
                "admin for local deployments",
                code="local_not_allowed",
            )
        return None
    try:
        return await servers.get_visible(db, viewer, server_id)
    except NotFound:
        raise ValidationFailed(f"server_id: no server {server_id} that you may use") from None


async def _held_ports(db: AsyncSession, server_id: int | None, except_id: int | None) -> set[int]:
    stmt = select(Deployment.external_port).where(Deployment.status.in_(LIVE))
    stmt = stmt.where(
        Deployment.server_id.is_(None) if server_id is None else Deployment.server_id == server_id
    )
    if except_id is not None:
        stmt = stmt.where(Deployment.id != except_id)
    return {int(p) for (p,) in (await db.execute(stmt)).all()}


async def _choose_port(
    db: AsyncSession,
    services: Services,
    server: Server | None,
    wanted: int | None,
    except_id: int | None = None,
) -> int:
    """The wanted external port if free on the target, else the first suggested one."""
    held = await _held_ports(db, server.id if server else None, except_id)
    listening = set(await host_facts.listening_ports(services.executor_for(server)))
    if wanted is None:
        free = host_facts.suggest_ports(listening, held, count=1)
        if not free:
            raise ValidationFailed("external_port: no free port in 8000-8999 on the target")
        return free[0]
    if wanted in held:
        raise ValidationFailed(
            f"external_port: {wanted} is held by another deployment on this target"
        )
    if wanted in listening or wanted in host_facts.RESERVED_PORTS:
        raise ValidationFailed(f"external_port: {wanted} is already in use on the target")
    return wanted


async def _activity(
    db: AsyncSession,
    dep: Deployment,
    actor: str | None,
    action: str,
    message: str,
    job_id: int | None = None,
) -> None:
    db.add(
        DeploymentEvent(
            deployment_id=dep.id, actor=actor, action=action, message=message, job_id=job_id
        )
    )


async def _new_release(
    db: AsyncSession,
    dep: Deployment,
    *,
    reason: str,
    actor: str,
    image_id: str | None = None,
    rollback_of: int | None = None,
) -> Release:
    number = (
        int(
            (
                await db.execute(
                    select(func.coalesce(func.max(Release.number), 0)).where(
                        Release.deployment_id == dep.id
                    )
                )
            ).scalar_one()
        )
        + 1
    )
    release = Release(
        deployment_id=dep.id,
        number=number,
        reason=reason,
        image=dep.image,
        image_id=image_id,
        config=snapshot(dep),
        status="pending",
        created_by=actor,
        rollback_of=rollback_of,
        container_name=f"dm-{dep.name}-r{number}",
        log={"lines": []},
    )
    db.add(release)
    await db.flush()
    return release


async def _queue(
    db: AsyncSession,
    services: Services,
    dep: Deployment,
    viewer: Viewer,
    kind: str,
    release: Release | None,
    message: str,
) -> Job:
    job = await jobs.enqueue(
        db,
        kind=kind,
        deployment_id=dep.id,
        release_id=release.id if release else None,
        created_by=viewer.user.username,
    )
    await _activity(db, dep, viewer.user.username, kind, message, job.id)
    await audit.record(
        db,
        actor=viewer.actor,
        action=f"deployment.{kind}",
        target_type="deployment",
        target_id=dep.id,
        details={
            "name": dep.name,
            "job_id": job.id,
            "release": release.number if release else None,
        },
    )
    return job


async def _template_settings(db: AsyncSession, viewer: Viewer, template_id: int) -> dict[str, Any]:
    template = await db.get(DeploymentTemplate, template_id)
    if template is None or not (viewer.user.is_admin or template.owner_id == viewer.user.id):
        raise ValidationFailed(f"template_id: no template {template_id}")
    return dict(template.settings)


async def create(
    db: AsyncSession, services: Services, viewer: Viewer, body: DeploymentCreate
) -> tuple[Deployment, Job]:
    values = body.model_dump(exclude_unset=True, exclude={"template_id", "name", "server_id"})
    if body.template_id is not None:
        values = {**await _template_settings(db, viewer, body.template_id), **values}
    if "image" not in values or "internal_port" not in values:
        raise ValidationFailed(
            "image: required (directly or from a template)"
            if "image" not in values
            else "internal_port: required (directly or from a template)"
        )
    settings = DeploySettings.model_validate(values)
    server = await _target(db, services, viewer, body.server_id)
    taken = await db.execute(
        select(Deployment.id).where(
            Deployment.name == body.name,
            Deployment.status != "deleted",
            Deployment.server_id.is_(None) if server is None else Deployment.server_id == server.id,
        )
    )
    if taken.first() is not None:
        raise Conflict(
            f"name: a deployment named {body.name} exists on this target", code="name_taken"
        )
    port = await _choose_port(db, services, server, settings.external_port)
    dep = Deployment(
        name=body.name,
        server_id=server.id if server else None,
        owner_id=viewer.user.id,
        image=settings.image,
        internal_port=settings.internal_port,
        external_port=port,
        env=settings.env,
        secret_env=_seal(services, settings.secret_env),
        command=settings.command,
        restart_policy=settings.restart_policy,
        health_check=settings.health_check.model_dump(),
        memory_limit=settings.memory_limit,
        cpu_limit=settings.cpu_limit,
        labels=settings.labels,
        status="deploying",
    )
    db.add(dep)
    await db.flush()
    release = await _new_release(db, dep, reason="create", actor=viewer.user.username)
    job = await _queue(
        db, services, dep, viewer, "deploy", release, f"created; deploying {dep.image}"
    )
    await db.commit()
    services.wake()
    return dep, job


async def update(
    db: AsyncSession, services: Services, viewer: Viewer, deployment_id: int, body: DeploymentUpdate
) -> Job:
    """Any change of settings is a new release: the config that runs is always a release's."""
    dep = await _live(db, viewer, deployment_id)
    changes = body.model_dump(exclude_unset=True, exclude={"secret_env", "secret_env_remove"})
    if "health_check" in changes and body.health_check is not None:
        changes["health_check"] = body.health_check.model_dump()
    if "external_port" in changes and changes["external_port"] != dep.external_port:
        server = await db.get(Server, dep.server_id) if dep.server_id else None
        changes["external_port"] = await _choose_port(
            db, services, server, changes["external_port"], dep.id
        )
    for key, value in changes.items():
        if value is None and key not in ("command", "memory_limit", "cpu_limit"):
            raise ValidationFailed(f"{key}: must not be null")
        setattr(dep, key, value)
    if body.secret_env is not None or body.secret_env_remove:
        merged = {**secret_env(services, dep), **(body.secret_env or {})}
        for name in body.secret_env_remove:
            merged.pop(name, None)
        dep.secret_env = _seal(services, merged)
    changed = sorted(
        {*changes, *(["secret_env"] if body.secret_env or body.secret_env_remove else [])}
    )
    release = await _new_release(db, dep, reason="redeploy", actor=viewer.user.username)
    job = await _queue(
        db, services, dep, viewer, "deploy", release, f"settings changed ({', '.join(changed)})"
    )
    await db.commit()
    services.wake()
    return job


async def _live(db: AsyncSession, viewer: Viewer, deployment_id: int) -> Deployment:
    """A deployment that may take a new job: not deleted, and its lock free right now.

    The lock is taken for real when the job is queued; checking first means a refused request
    leaves the deployment's settings untouched."""
    dep = await get_visible(db, viewer, deployment_id)
    if dep.status == "deleted":
        raise Conflict(f"deployment {dep.name} was deleted", code="deleted")
    lock = await jobs.lock_of(db, dep.id)
    if lock is not None and lock.expires_at > await jobs.db_now(db):
        raise Conflict(
            f"deployment {dep.id} is busy ({lock.holder} holds its lock); try again when "
            "it finishes",
            code="deployment_locked",
        )
    return dep


async def redeploy(
    db: AsyncSession, services: Services, viewer: Viewer, deployment_id: int, image: str | None
) -> Job:
    dep = await _live(db, viewer, deployment_id)
    if image:
        dep.image = image
    release = await _new_release(db, dep, reason="redeploy", actor=viewer.user.username)
    job = await _queue(db, services, dep, viewer, "deploy", release, f"redeploy {dep.image}")
    await db.commit()
    services.wake()
    return job


async def rollback(
    db: AsyncSession, services: Services, viewer: Viewer, deployment_id: int, release_id: int | None
) -> Job:
    """Restore a release's whole configuration and run its image by the pinned ID."""
    dep = await _live(db, viewer, deployment_id)
    if release_id is not None:
        target = await db.get(Release, release_id)
        if target is None or target.deployment_id != dep.id:
            raise ValidationFailed(f"release_id: no release {release_id} of {dep.name}")
    else:
        stmt = (
            select(Release)
            .where(
                Release.deployment_id == dep.id,
                Release.status.in_(("succeeded", "rolled_back")),
                Release.id != (dep.current_release_id or 0),
            )
            .order_by(Release.id.desc())
            .limit(1)
        )
        if dep.current_release_id:
            stmt = stmt.where(Release.id < dep.current_release_id)
        target = (await db.execute(stmt)).scalar_one_or_none()
        if target is None:
            raise ValidationFailed(
                "release_id: there is no earlier healthy release to roll back to"
            )
    if not target.image_id:
        raise ValidationFailed(
            f"release_id: release {target.number} never resolved an image; it cannot be restored"
        )
    restore(dep, target.config)
    release = await _new_release(
        db,
        dep,
        reason="rollback",
        actor=viewer.user.username,
        image_id=target.image_id,
        rollback_of=target.id,
    )
    job = await _queue(
        db,
        services,
        dep,
        viewer,
        "deploy",
        release,
        f"rollback to release {target.number} ({target.image_id[:19]})",
    )
    await db.commit()
    services.wake()
    return job


async def operate(
    db: AsyncSession, services: Services, viewer: Viewer, deployment_id: int, kind: str
) -> Job:
    """stop | start | restart | delete, as jobs under the deployment's lock."""
    dep = await _live(db, viewer, deployment_id)
    if kind != "delete" and dep.current_release_id is None:
        raise Conflict(f"{dep.name} has no serving release to {kind}", code="no_release")
    release = await db.get(Release, dep.current_release_id) if dep.current_release_id else None
    job = await _queue(db, services, dep, viewer, kind, release, f"{kind} requested")
    await db.commit()
    services.wake()
    return job


async def force_unlock(db: AsyncSession, viewer: Viewer, deployment_id: int) -> bool:
    dep = await get_visible(db, viewer, deployment_id)
    lock = await jobs.lock_of(db, dep.id)
    released = await jobs.release_lock(db, dep.id)
    await audit.record(
        db,
        actor=viewer.actor,
        action="deployment.force_unlock",
        target_type="deployment",
        target_id=dep.id,
        details={"holder": lock.holder if lock else None},
    )
    await _activity(
        db,
        dep,
        viewer.user.username,
        "force_unlock",
        f"lock released by an admin (held by {lock.holder if lock else 'nobody'})",
    )
    await db.commit()
    return released


async def save_template(
    db: AsyncSession, viewer: Viewer, deployment_id: int, name: str
) -> DeploymentTemplate:
    dep = await get_visible(db, viewer, deployment_id)
    settings = {f: getattr(dep, f) for f in CONFIG_FIELDS if f != "external_port"}
    template = DeploymentTemplate(name=name, owner_id=viewer.user.id, settings=settings)
    db.add(template)
    await audit.record(
        db,
        actor=viewer.actor,
        action="template.create",
        target_type="deployment",
        target_id=dep.id,
        details={"template": name},
    )
    await db.commit()
    return template


async def list_templates(db: AsyncSession, viewer: Viewer) -> list[DeploymentTemplate]:
    stmt = select(DeploymentTemplate).order_by(DeploymentTemplate.name)
    if not viewer.user.is_admin:
        stmt = stmt.where(DeploymentTemplate.owner_id == viewer.user.id)
    return list((await db.execute(stmt)).scalars())


def release_out(release: Release) -> ReleaseOut:
    config = {k: v for k, v in release.config.items() if k != "secret_env"}
    return ReleaseOut(
        id=release.id,
        number=release.number,
        image=release.image,
        image_id=release.image_id,
        status=release.status,
        reason=release.reason,
        repo_digest=release.repo_digest,
        config=config,
        container_name=release.container_name,
        created_by=release.created_by,
        created_at=release.created_at,
        finished_at=release.finished_at,
        rollback_of=release.rollback_of,
        log=list(release.log.get("lines", [])),
    )


async def releases(db: AsyncSession, dep: Deployment) -> list[Release]:
    rows = await db.execute(
        select(Release).where(Release.deployment_id == dep.id).order_by(Release.id.desc())
    )
    return list(rows.scalars())


async def activity(db: AsyncSession, dep: Deployment) -> list[DeploymentEvent]:
    rows = await db.execute(
        select(DeploymentEvent)
        .where(DeploymentEvent.deployment_id == dep.id)
        .order_by(DeploymentEvent.id.desc())
        .limit(500)
    )
    return list(rows.scalars())


async def to_out(
    db: AsyncSession, services: Services, deps: list[Deployment]
) -> list[DeploymentOut]:
    out = []
    for dep in deps:
        server = await db.get(Server, dep.server_id) if dep.server_id else None
        current = await db.get(Release, dep.current_release_id) if dep.current_release_id else None
        active = await jobs.active_for(db, dep.id)
        out.append(
            DeploymentOut(
                id=dep.id,
                name=dep.name,
                server_id=dep.server_id,
                server_name=server.name if server else None,
                target=server.name if server else "control host",
                owner_id=dep.owner_id,
                image=dep.image,
                internal_port=dep.internal_port,
                external_port=dep.external_port,
                env=dep.env,
                secret_env_keys=sorted(secret_env(services, dep)),
                command=dep.command,
                restart_policy=dep.restart_policy,
                health_check=dep.health_check,
                memory_limit=dep.memory_limit,
                cpu_limit=dep.cpu_limit,
                labels=dep.labels,
                status=dep.status,
                status_message=dep.status_message,
                current_release=ReleaseBrief(
                    id=current.id,
                    number=current.number,
                    image=current.image,
                    image_id=current.image_id,
                    status=current.status,
                )
                if current
                else None,
                active_job_id=active.id if active else None,
                created_at=dep.created_at,
                updated_at=dep.updated_at,
                deleted_at=dep.deleted_at,
            )
        )
    return out


async def serving(db: AsyncSession, services: Services, dep: Deployment) -> tuple[Executor, str]:
    """The executor of the deployment's target and the name of its serving container."""
    release = await db.get(Release, dep.current_release_id) if dep.current_release_id else None
    if release is None or not release.container_name:
        raise Conflict(f"{dep.name} has no serving release", code="no_release")
    server = await db.get(Server, dep.server_id) if dep.server_id else None
    return services.executor_for(server), release.container_name


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
    return {"container": name, "exists": state is not None, **(asdict(state) if state else {})}


async def log_tail(executor: Executor, name: str, tail: int) -> list[str]:
    result = await executor.run(docker.logs(name, tail))
    return [line for line in (result.stdout + "\n" + result.stderr).splitlines() if line]


async def suggest_ports(
    db: AsyncSession, services: Services, viewer: Viewer, server_id: int | None
) -> list[int]:
    """Free public ports on a target: not listening there, not held by a live deployment."""
    server = await _target(db, services, viewer, server_id)
    listening = set(await host_facts.listening_ports(services.executor_for(server)))
    return host_facts.suggest_ports(listening, await _held_ports(db, server_id, None))
