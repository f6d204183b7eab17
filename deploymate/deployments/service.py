"""Deployment use cases: create, change, redeploy, roll back, operate; each deploy is a release.

Access is checked on every operation, not only at creation: a deployment on the control host
takes a new job only while its caller may still use the control host.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.crypto import Cipher
from deploymate.core.errors import Conflict, NotFound, ValidationFailed, label
from deploymate.deployments import ports
from deploymate.deployments.models import Deployment, DeploymentEvent, DeploymentTemplate, Release
from deploymate.deployments.schemas import DeploymentCreate, DeploymentUpdate
from deploymate.deployments.schemas import Settings as DeploySettings
from deploymate.jobs import service as jobs
from deploymate.jobs.models import Job
from deploymate.registries import service as registries
from deploymate.runtime import images
from deploymate.servers import service as servers
from deploymate.servers.models import Server
from deploymate.servers.targets import executor_for, may_use_control_host, require_control_host

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
    "domains",
    "tls",
    "volumes",
    "required_env",
    "smoke",
    "drain_seconds",
)
NULLABLE = ("command", "memory_limit", "cpu_limit", "external_port")
# A job's payload says whether its image may come from the control host's Docker: decided from
# the caller's rights when the job is queued, since the worker acts for nobody in particular.
STREAM_FROM_CONTROL = "stream_from_control"
# Whether the job may pull with any stored registry credentials (admins) or only shared ones.
PULL_AS_ADMIN = "pull_as_admin"
# The states of a release that passed its health gate and served (the ones to roll back to).
SERVED = ("succeeded", "rolled_back")


# --- access --------------------------------------------------------------------------------


async def get(db: AsyncSession, *, caller: Caller, deployment_id: int) -> Deployment:
    dep = await db.get(Deployment, deployment_id)
    if dep is None or not caller.owns(dep.owner_id):
        raise NotFound(f"no such deployment: {deployment_id}")
    return dep


async def find(db: AsyncSession, *, caller: Caller, name: str) -> Deployment:
    stmt = select(Deployment).where(Deployment.name == name, Deployment.status != "deleted")
    if not caller.is_admin:
        stmt = stmt.where(Deployment.owner_id == caller.user_id)
    found = (await db.execute(stmt.order_by(Deployment.id).limit(1))).scalar_one_or_none()
    if found is None:
        raise NotFound(f"no such deployment: {name}")
    return found


def visible(caller: Caller, *, include_deleted: bool = False, name: str | None = None) -> Any:
    """The WHERE clauses of the deployments a caller may see (named `name`, when given)."""
    clauses = [] if name is None else [Deployment.name == name]
    if not include_deleted:
        clauses.append(Deployment.status != "deleted")
    if not caller.is_admin:
        clauses.append(Deployment.owner_id == caller.user_id)
    return clauses


async def list_for(
    db: AsyncSession,
    *,
    caller: Caller,
    include_deleted: bool = False,
    name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Deployment]:
    stmt = select(Deployment).where(*visible(caller, include_deleted=include_deleted, name=name))
    stmt = stmt.order_by(Deployment.name, Deployment.id).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await db.execute(stmt)).scalars())


async def count_for(
    db: AsyncSession, *, caller: Caller, include_deleted: bool = False, name: str | None = None
) -> int:
    stmt = select(func.count()).select_from(Deployment)
    stmt = stmt.where(*visible(caller, include_deleted=include_deleted, name=name))
    return int((await db.execute(stmt)).scalar_one())


# --- secrets and snapshots -----------------------------------------------------------------


def secret_env(cipher: Cipher, sealed: str | None) -> dict[str, str]:
    if not sealed:
        return {}
    data: dict[str, str] = json.loads(cipher.decrypt(sealed))
    return data


def _seal(cipher: Cipher, values: dict[str, str]) -> str | None:
    return cipher.encrypt(json.dumps(values, sort_keys=True)) if values else None


def snapshot(dep: Deployment) -> dict[str, Any]:
    """The whole configuration a release runs with; secret values stay encrypted."""
    return {**{f: getattr(dep, f) for f in CONFIG_FIELDS}, "secret_env": dep.secret_env}


def restore(dep: Deployment, config: dict[str, Any]) -> None:
    for f in CONFIG_FIELDS:
        if f in config:
            setattr(dep, f, config[f])
    dep.secret_env = config.get("secret_env")


# --- helpers of the use cases --------------------------------------------------------------


async def _target(
    db: AsyncSession, context: AppContext, caller: Caller, server_id: int | None
) -> Server | None:
    """A server the caller may use, or the control host when that is allowed for them."""
    if server_id is None:
        require_control_host(context.settings, caller)
        return None
    try:
        return await servers.get(db, caller=caller, server_id=server_id)
    except NotFound:
        raise ValidationFailed(
            f"no server {server_id} that you may use", field="server_id"
        ) from None


async def _server_of(db: AsyncSession, dep: Deployment) -> Server | None:
    return await db.get(Server, dep.server_id) if dep.server_id else None


def _activity(
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


async def new_release(
    db: AsyncSession,
    dep: Deployment,
    *,
    reason: str,
    actor: str,
    image_id: str | None = None,
    rollback_of: int | None = None,
) -> Release:
    latest = select(func.coalesce(func.max(Release.number), 0)).where(
        Release.deployment_id == dep.id
    )
    number = int((await db.execute(latest)).scalar_one()) + 1
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
    context: AppContext,
    dep: Deployment,
    caller: Caller,
    kind: str,
    release: Release | None,
    message: str,
    extra: dict[str, Any] | None = None,
) -> Job:
    job = await jobs.enqueue(
        db,
        kind=kind,
        deployment_id=dep.id,
        release_id=release.id if release else None,
        created_by=caller.username,
        payload={
            STREAM_FROM_CONTROL: may_use_control_host(context.settings, caller),
            PULL_AS_ADMIN: caller.is_admin,
            **(extra or {}),
        },
        deployment_name=dep.name,
    )
    _activity(db, dep, caller.username, kind, message, job.id)
    await audit.record(
        db,
        caller=caller,
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


async def _live(
    db: AsyncSession, context: AppContext, caller: Caller, deployment_id: int
) -> Deployment:
    """A deployment that may take a new job: visible, not deleted, its target still allowed
    for the caller, and its lock free right now.

    The lock is taken for real when the job is queued; checking first means a refused request
    leaves the deployment's settings untouched."""
    dep = await get(db, caller=caller, deployment_id=deployment_id)
    if dep.status == "deleted":
        raise Conflict(f"deployment {dep.name} was deleted", code="deleted")
    if dep.server_id is None:
        require_control_host(context.settings, caller)
    lock = await jobs.lock_of(db, dep.id)
    if lock is not None and lock.expires_at > await jobs.db_now(db):
        raise await jobs.busy(db, dep.id, dep.name, lock.holder)
    return dep


async def state_of(db: AsyncSession, deployment_id: int) -> dict[str, Any]:
    """What a watching page compares to know it is out of date: the state, its message, the
    serving release and the latest job with its status (a job that starts or ends, even
    between two looks, changes them)."""
    dep = await db.get(Deployment, deployment_id, populate_existing=True)
    if dep is None:
        return {"status": "deleted"}
    latest = (
        await db.execute(
            select(Job.id, Job.status)
            .where(Job.deployment_id == deployment_id)
            .order_by(Job.id.desc())
            .limit(1)
        )
    ).first()
    return {
        "status": dep.status,
        "message": dep.status_message,
        "release_id": dep.current_release_id,
        "job_id": latest.id if latest else None,
        "job_status": latest.status if latest else None,
    }


async def _template_settings(db: AsyncSession, caller: Caller, template_id: int) -> dict[str, Any]:
    template = await db.get(DeploymentTemplate, template_id)
    if template is None or not caller.owns(template.owner_id):
        raise ValidationFailed(f"no template {template_id}", field="template_id")
    return dict(template.settings)


def _proxy_settings(settings: DeploySettings) -> dict[str, Any]:
    """The settings added with the proxy, as stored (optional parts left out)."""
    return {
        "domains": settings.domains,
        "tls": settings.tls,
        "volumes": [v.model_dump(exclude_none=True) for v in settings.volumes],
        "required_env": settings.required_env,
        "smoke": [c.model_dump(exclude_none=True) for c in settings.smoke],
        "drain_seconds": settings.drain_seconds,
    }


def _require_env(required: list[str], env: dict[str, Any], secrets: dict[str, Any]) -> None:
    """ "HTTP 200 is not enough": a release without a variable it needs never starts."""
    missing = [name for name in required if name not in env and name not in secrets]
    if missing:
        raise ValidationFailed(
            f"missing {', '.join(missing)}; give "
            f"{'it' if len(missing) == 1 else 'them'} in the environment or the secret "
            "environment, or remove the name from the required environment",
            field="required_env",
            code="required_env_missing",
        )


def _check_mounts(context: AppContext, caller: Caller, settings: DeploySettings) -> None:
    """Bind mounts expose the host: admins only, and only under the allowed roots."""
    binds = [v.source for v in settings.volumes if v.source is not None]
    if not binds:
        return
    if not caller.is_admin:
        raise ValidationFailed(
            "only admins may mount a host directory; use a named volume instead",
            field="volumes",
            code="bind_mount_refused",
        )
    roots = context.settings.bind_roots
    for source in binds:
        if not any(source == r or source.startswith(f"{r.rstrip('/')}/") for r in roots):
            allowed = ", ".join(roots) if roots else "none (DEPLOYMATE_BIND_MOUNT_ROOTS is empty)"
            raise ValidationFailed(
                f"{source} is outside the directories allowed for bind mounts ({allowed}); "
                "use a named volume, or ask an admin to allow the directory",
                field="volumes",
                code="bind_mount_refused",
            )


async def _require_free_domains(
    db: AsyncSession, server_id: int | None, domains: list[str], except_id: int | None
) -> None:
    """A host name routes to one deployment per target."""
    if not domains:
        return
    stmt = select(Deployment).where(
        Deployment.status != "deleted",
        Deployment.server_id.is_(None) if server_id is None else Deployment.server_id == server_id,
    )
    if except_id is not None:
        stmt = stmt.where(Deployment.id != except_id)
    for other in (await db.execute(stmt)).scalars():
        taken = sorted(set(domains) & set(other.domains or []))
        if taken:
            raise Conflict(
                f"domains: {taken[0]} is served by the deployment {other.name} on this target; "
                "remove it there first, or choose another name",
                code="domain_taken",
            )


# --- the use cases -------------------------------------------------------------------------


async def _require_image(
    db: AsyncSession, context: AppContext, caller: Caller, server: Server | None, image: str
) -> None:
    """Refuse an image that no step of a deploy could find, before a record holds a port."""
    control = (
        context.control_docker()
        if server is not None and may_use_control_host(context.settings, caller)
        else None
    )
    auth = await registries.auth_for(db, cipher=context.cipher, image=image, admin=caller.is_admin)
    problem = await images.missing(executor_for(context, server), image, control=control, auth=auth)
    if problem is not None:
        raise ValidationFailed(problem, field="image", code="image_missing")


async def create(
    db: AsyncSession, *, context: AppContext, caller: Caller, data: DeploymentCreate
) -> tuple[Deployment, Job]:
    values = data.model_dump(exclude_unset=True, exclude={"template_id", "name", "server_id"})
    if data.template_id is not None:
        values = {**await _template_settings(db, caller, data.template_id), **values}
    for required in ("image", "internal_port"):
        if required not in values:
            raise ValidationFailed("required (directly or from a template)", field=required)
    settings = DeploySettings.model_validate(values)
    server = await _target(db, context, caller, data.server_id)
    taken = await db.execute(
        select(Deployment.id).where(
            Deployment.name == data.name,
            Deployment.status != "deleted",
            Deployment.server_id.is_(None) if server is None else Deployment.server_id == server.id,
        )
    )
    if taken.first() is not None:
        raise Conflict(
            f"name: a deployment named {data.name} exists on this target", code="name_taken"
        )
    await _require_image(db, context, caller, server, settings.image)
    _require_env(settings.required_env, settings.env, settings.secret_env)
    _check_mounts(context, caller, settings)
    await _require_free_domains(db, server.id if server else None, settings.domains, None)
    port = (
        None
        if settings.domains
        else await ports.choose(
            db, context=context, caller=caller, server=server, wanted=settings.external_port
        )
    )
    dep = Deployment(
        name=data.name,
        server_id=server.id if server else None,
        owner_id=caller.user_id,
        image=settings.image,
        internal_port=settings.internal_port,
        external_port=port,
        env=settings.env,
        secret_env=_seal(context.cipher, settings.secret_env),
        command=settings.command,
        restart_policy=settings.restart_policy,
        health_check=settings.health_check.model_dump(),
        memory_limit=settings.memory_limit,
        cpu_limit=settings.cpu_limit,
        labels=settings.labels,
        **_proxy_settings(settings),
        status="deploying",
    )
    db.add(dep)
    await db.flush()
    release = await new_release(db, dep, reason="create", actor=caller.username)
    job = await _queue(
        db, context, dep, caller, "deploy", release, f"created; deploying {dep.image}"
    )
    await db.commit()
    context.wake_worker()
    return dep, job


def _changed_settings(dep: Deployment, data: DeploymentUpdate) -> dict[str, Any]:
    """The new values, validated exactly as a creation validates them."""
    changes = data.model_dump(exclude_unset=True, exclude={"secret_env", "secret_env_remove"})
    for key, value in changes.items():
        if value is None and key not in NULLABLE:
            raise ValidationFailed("must not be null", field=key)
    current = {f: getattr(dep, f) for f in CONFIG_FIELDS}
    if changes.get("domains") and "external_port" not in changes:
        changes["external_port"] = None  # moving behind the proxy gives the port back
    merged = DeploySettings.model_validate({**current, **changes})
    stored = {**merged.model_dump(), **_proxy_settings(merged)}
    return {key: stored[key] for key in changes}


async def update(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    deployment_id: int,
    data: DeploymentUpdate,
) -> Job:
    """Any change of settings is a new release: the config that runs is always a release's."""
    dep = await _live(db, context, caller, deployment_id)
    changes = _changed_settings(dep, data)
    if "image" in changes and changes["image"] != dep.image:
        await _require_image(db, context, caller, await _server_of(db, dep), changes["image"])
    merged = DeploySettings.model_validate(
        {**{f: getattr(dep, f) for f in CONFIG_FIELDS}, **changes}
    )
    secrets_now = {**secret_env(context.cipher, dep.secret_env), **(data.secret_env or {})}
    for name in data.secret_env_remove:
        secrets_now.pop(name, None)
    _require_env(merged.required_env, merged.env, secrets_now)
    _check_mounts(context, caller, merged)
    await _require_free_domains(db, dep.server_id, merged.domains, dep.id)
    if not merged.domains and merged.external_port is None:
        changes["external_port"] = None  # back to a published port: choose one
    port_changed = "external_port" in changes and (
        changes["external_port"] is None or changes["external_port"] != dep.external_port
    )
    if port_changed and not merged.domains:
        changes["external_port"] = await ports.choose(
            db,
            context=context,
            caller=caller,
            server=await _server_of(db, dep),
            wanted=changes["external_port"],
            except_id=dep.id,
        )
    for key, value in changes.items():
        setattr(dep, key, value)
    secrets_changed = data.secret_env is not None or bool(data.secret_env_remove)
    if secrets_changed:
        dep.secret_env = _seal(context.cipher, secrets_now)
    changed = sorted({*changes, *(["secret_env"] if secrets_changed else [])})
    release = await new_release(db, dep, reason="redeploy", actor=caller.username)
    job = await _queue(
        db,
        context,
        dep,
        caller,
        "deploy",
        release,
        f"settings changed ({', '.join(label(c) for c in changed)})",
    )
    await db.commit()
    context.wake_worker()
    return job


async def redeploy(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    deployment_id: int,
    image: str | None,
) -> Job:
    dep = await _live(db, context, caller, deployment_id)
    if image:
        await _require_image(db, context, caller, await _server_of(db, dep), image)
        dep.image = image
    release = await new_release(db, dep, reason="redeploy", actor=caller.username)
    job = await _queue(db, context, dep, caller, "deploy", release, f"redeploy {dep.image}")
    await db.commit()
    context.wake_worker()
    return job


async def _rollback_target(db: AsyncSession, dep: Deployment, release_id: int | None) -> Release:
    if release_id is not None:
        target = await db.get(Release, release_id)
        if target is None or target.deployment_id != dep.id:
            raise ValidationFailed(f"no release {release_id} of {dep.name}", field="release_id")
        if target.status not in SERVED:
            raise ValidationFailed(
                f"release {target.number} of {dep.name} never served (it {target.status}); "
                "roll back to a release that passed its health check",
                field="release_id",
            )
        return target
    stmt = (
        select(Release)
        .where(
            Release.deployment_id == dep.id,
            Release.status.in_(SERVED),
            Release.id != (dep.current_release_id or 0),
        )
        .order_by(Release.id.desc())
        .limit(1)
    )
    if dep.current_release_id:
        stmt = stmt.where(Release.id < dep.current_release_id)
    found = (await db.execute(stmt)).scalar_one_or_none()
    if found is None:
        raise ValidationFailed(
            "there is no earlier healthy release to roll back to", field="release_id"
        )
    return found


async def rollback(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    deployment_id: int,
    release_id: int | None,
) -> Job:
    """Restore a release's whole configuration and run its image by the pinned ID."""
    dep = await _live(db, context, caller, deployment_id)
    target = await _rollback_target(db, dep, release_id)
    if not target.image_id:
        raise ValidationFailed(
            f"release {target.number} never resolved an image; it cannot be restored",
            field="release_id",
        )
    restore(dep, target.config)
    release = await new_release(
        db,
        dep,
        reason="rollback",
        actor=caller.username,
        image_id=target.image_id,
        rollback_of=target.id,
    )
    job = await _queue(
        db,
        context,
        dep,
        caller,
        "deploy",
        release,
        f"rollback to release {target.number} ({target.image_id[:19]})",
    )
    await db.commit()
    context.wake_worker()
    return job


async def operate(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    deployment_id: int,
    kind: str,
    extra: dict[str, Any] | None = None,
) -> Job:
    """stop | start | restart | delete (`extra`: {"volumes": true} removes the data too)."""
    dep = await _live(db, context, caller, deployment_id)
    if kind != "delete" and dep.current_release_id is None:
        raise Conflict(f"{dep.name} has no serving release to {kind}", code="no_release")
    release = await db.get(Release, dep.current_release_id) if dep.current_release_id else None
    message = f"{kind} requested" + (" with its volumes" if extra and extra.get("volumes") else "")
    job = await _queue(db, context, dep, caller, kind, release, message, extra)
    await db.commit()
    context.wake_worker()
    return job


async def may_exec(
    db: AsyncSession, *, context: AppContext, caller: Caller, deployment_id: int, command: list[str]
) -> Deployment:
    """A one-off command is an operation: the caller must be able to operate the deployment.
    The audit keeps the program and the number of arguments, not the arguments (they may hold
    a password typed on the command line)."""
    dep = await get(db, caller=caller, deployment_id=deployment_id)
    if dep.status == "deleted":
        raise Conflict(f"deployment {dep.name} was deleted", code="deleted")
    if dep.server_id is None:
        require_control_host(context.settings, caller)
    await audit.record(
        db,
        caller=caller,
        action="deployment.exec",
        target_type="deployment",
        target_id=dep.id,
        details={"name": dep.name, "program": command[0][:200], "arguments": len(command) - 1},
    )
    _activity(db, dep, caller.username, "exec", f"ran {command[0][:200]} in the container")
    await db.commit()
    return dep


async def force_unlock(db: AsyncSession, *, caller: Caller, deployment_id: int) -> bool:
    dep = await get(db, caller=caller, deployment_id=deployment_id)
    lock = await jobs.lock_of(db, dep.id)
    released = await jobs.release_lock(db, dep.id)
    await audit.record(
        db,
        caller=caller,
        action="deployment.force_unlock",
        target_type="deployment",
        target_id=dep.id,
        details={"holder": lock.holder if lock else None},
    )
    _activity(
        db,
        dep,
        caller.username,
        "force_unlock",
        f"lock released by an admin (held by {lock.holder if lock else 'nobody'})",
    )
    await db.commit()
    return released


# --- templates -----------------------------------------------------------------------------


async def save_template(
    db: AsyncSession, *, caller: Caller, deployment_id: int, name: str
) -> DeploymentTemplate:
    dep = await get(db, caller=caller, deployment_id=deployment_id)
    settings = {f: getattr(dep, f) for f in CONFIG_FIELDS if f != "external_port"}
    template = DeploymentTemplate(name=name, owner_id=caller.user_id, settings=settings)
    db.add(template)
    await audit.record(
        db,
        caller=caller,
        action="template.create",
        target_type="deployment",
        target_id=dep.id,
        details={"template": name},
    )
    await db.commit()
    return template


TEMPLATE_FIELDS = tuple(f for f in CONFIG_FIELDS if f != "external_port")


def _template_settings_of(values: dict[str, Any]) -> dict[str, Any]:
    """Validated as a deployment's settings; a template never holds a port or a secret."""
    checked = DeploySettings.model_validate(values).model_dump()
    return {f: checked[f] for f in TEMPLATE_FIELDS}


async def get_template(db: AsyncSession, *, caller: Caller, template_id: int) -> DeploymentTemplate:
    template = await db.get(DeploymentTemplate, template_id)
    if template is None or not caller.owns(template.owner_id):
        raise NotFound(f"no such template: {template_id}")
    return template


async def update_template(
    db: AsyncSession,
    *,
    caller: Caller,
    template_id: int,
    name: str | None = None,
    settings: dict[str, Any] | None = None,
) -> DeploymentTemplate:
    """Rename a template, or replace its settings (validated like a deployment's)."""
    template = await get_template(db, caller=caller, template_id=template_id)
    changed: list[str] = []
    if name is not None and name != template.name:
        template.name = name
        changed.append("name")
    if settings is not None:
        merged = _template_settings_of({**template.settings, **settings})
        if merged != template.settings:
            template.settings = merged
            changed.append("settings")
    await audit.record(
        db,
        caller=caller,
        action="template.update",
        target_type="template",
        target_id=template.id,
        details={"template": template.name, "changed": changed},
    )
    await db.commit()
    return template


async def delete_template(db: AsyncSession, *, caller: Caller, template_id: int) -> None:
    template = await get_template(db, caller=caller, template_id=template_id)
    await audit.record(
        db,
        caller=caller,
        action="template.delete",
        target_type="template",
        target_id=template.id,
        details={"template": template.name},
    )
    await db.delete(template)
    await db.commit()


async def list_templates(db: AsyncSession, *, caller: Caller) -> list[DeploymentTemplate]:
    stmt = select(DeploymentTemplate).order_by(DeploymentTemplate.name)
    if not caller.is_admin:
        stmt = stmt.where(DeploymentTemplate.owner_id == caller.user_id)
    return list((await db.execute(stmt)).scalars())


# --- history -------------------------------------------------------------------------------


async def releases(
    db: AsyncSession, *, dep: Deployment, limit: int | None = None, offset: int = 0
) -> list[Release]:
    stmt = select(Release).where(Release.deployment_id == dep.id).order_by(Release.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = await db.execute(stmt.offset(offset))
    return list(rows.scalars())


async def count_releases(db: AsyncSession, *, dep: Deployment) -> int:
    stmt = select(func.count()).select_from(Release).where(Release.deployment_id == dep.id)
    return int((await db.execute(stmt)).scalar_one())


async def activity(db: AsyncSession, *, dep: Deployment) -> list[DeploymentEvent]:
    rows = await db.execute(
        select(DeploymentEvent)
        .where(DeploymentEvent.deployment_id == dep.id)
        .order_by(DeploymentEvent.id.desc())
        .limit(500)
    )
    return list(rows.scalars())
