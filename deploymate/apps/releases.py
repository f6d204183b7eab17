"""Deploying an app to an environment: one app release, each service on each server a deployment
with a release of its own, all moved by one job under the environment's locks.

Production is not deployed but shipped (the exact staging release; `app ship`), so `deploy`
refuses it. Every app release records its commit, branch and whether the tree was clean.
"""

from __future__ import annotations

import json
from secrets import token_hex as secrets_token
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.apps import previews, sources
from deploymate.apps import service as apps
from deploymate.apps.models import App, AppRelease, AppSecret, ShipRequest
from deploymate.apps.spec import environment_kind
from deploymate.audit import service as audit
from deploymate.context import AppContext
from deploymate.core import scopes
from deploymate.core.caller import Caller
from deploymate.core.crypto import Cipher
from deploymate.core.db import utcnow
from deploymate.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from deploymate.deployments import service as deployments
from deploymate.deployments.jobs import plan_for
from deploymate.deployments.models import Deployment, Release
from deploymate.jobs import service as jobs
from deploymate.jobs.models import Job
from deploymate.runtime import build, docker
from deploymate.runtime.executor import Executor
from deploymate.runtime.proxy import NETWORK
from deploymate.servers import service as servers
from deploymate.servers.models import Server
from deploymate.servers.targets import executor_for

JOB_KIND = "app_deploy"
APP_RELEASE = "app_release_id"
SKIP_DRIFT = "skip_drift"


def deployment_name(app: str, environment: str, service: str) -> str:
    return f"{app}-{environment}-{service}"[:63]


def _health(service: dict[str, Any]) -> dict[str, Any]:
    """The spec's health check in the deployment's terms; a service without a port is a worker
    that must keep running."""
    given = dict(service.get("health") or {})
    if "port" not in service:
        return {"type": "running", "start_period": float(given.get("start_period", 0))}
    out: dict[str, Any] = {"type": given.get("type", "http"), "path": given.get("path", "/")}
    if "expect" in given:
        out["expected_status"] = given["expect"]
    for key in ("interval", "timeout", "retries", "start_period"):
        if key in given:
            out[key] = given[key]
    return {
        "expected_status": 200,
        "interval": 1.0,
        "timeout": 2.0,
        "retries": 30,
        "start_period": 0.0,
        **out,
    }


def settings_for(
    spec: dict[str, Any], environment: str, service: str, commit: str | None = None
) -> dict[str, Any]:
    """A service's deployment settings in one environment (secrets apart); a service built
    from the repository runs the image built at `commit`."""
    svc = spec["services"][service]
    env_spec = spec["environments"][environment]
    domains = (env_spec.get("domains") or {}).get(service, svc.get("domains") or [])
    return {
        "image": svc.get("image") or build.tag_for(spec["app"], service, commit or "unknown"),
        "internal_port": int(svc.get("port", 0)),
        "external_port": None,
        "env": {**(spec.get("env") or {}), **(svc.get("env") or {}), **(env_spec.get("env") or {})},
        "command": svc.get("command"),
        "restart_policy": "unless-stopped",
        "health_check": _health(svc),
        "memory_limit": None,
        "cpu_limit": None,
        "labels": {"app": spec["app"], "app-environment": environment, "app-service": service},
        "domains": list(domains),
        "tls": svc.get("tls", "auto"),
        "volumes": list(svc.get("volumes") or []),
        "required_env": list(spec.get("required_env") or []),
        "smoke": list(svc.get("smoke") or []),
        "drain_seconds": float(svc.get("drain", 10)),
    }


async def _secrets(db: AsyncSession, cipher: Cipher, app: App, environment: str) -> dict[str, str]:
    rows = await db.execute(
        select(AppSecret).where(AppSecret.app_id == app.id, AppSecret.environment == environment)
    )
    return {row.name: cipher.decrypt(row.value) for row in rows.scalars()}


async def _servers(db: AsyncSession, caller: Caller, names: list[str]) -> list[Server]:
    found = []
    for name in names:
        try:
            found.append(await servers.find(db, caller=caller, name=name))
        except Exception:
            raise ValidationFailed(
                f"no server named {name} that you may use (see `deploymate servers list`)",
                field="environment",
            ) from None
    return found


async def _deployment_of(
    db: AsyncSession, app: App, environment: str, service: str, server: Server
) -> Deployment | None:
    """The live deployment that runs this service of this app environment on this server."""
    found = await db.execute(
        select(Deployment).where(
            Deployment.app_id == app.id,
            Deployment.app_environment == environment,
            Deployment.app_service == service,
            Deployment.server_id == server.id,
            Deployment.status != "deleted",
        )
    )
    return found.scalar_one_or_none()


async def _deployment(
    db: AsyncSession,
    cipher: Cipher,
    caller: Caller,
    app: App,
    environment: str,
    service: str,
    server: Server,
    settings: dict[str, Any],
    sealed: str | None,
) -> Deployment:
    """The deployment that runs this service of this environment on this server, made to
    match the spec (a new record the first time)."""
    found = await _deployment_of(db, app, environment, service, server)
    if found is None:
        name = deployment_name(app.name, environment, service)
        clash = await db.execute(
            select(Deployment.id).where(
                Deployment.name == name,
                Deployment.server_id == server.id,
                Deployment.status != "deleted",
            )
        )
        if clash.first() is not None:
            raise Conflict(
                f"a deployment named {name} already runs on {server.name}; rename or delete it",
                code="name_taken",
            )
        found = Deployment(
            name=name,
            server_id=server.id,
            owner_id=app.owner_id,
            app_id=app.id,
            app_environment=environment,
            app_service=service,
            status="deploying",
            internal_port=0,
            image=settings["image"],
        )
        db.add(found)
    for key, value in settings.items():
        setattr(found, key, value)
    found.secret_env = sealed
    await db.flush()
    return found


def _images_of(release: AppRelease, called: str, *, code: str) -> dict[str, str]:
    """The one image ID each service of an app release ran, to run again (ship, rollback)."""
    pinned: dict[str, str] = {}
    for service, per_server in release.parts.items():
        ids = {p.get("image_id") for p in per_server.values()}
        if len(ids) != 1 or None in ids:
            raise Conflict(
                f"{called} {release.number} has no single image for {service}", code=code
            )
        pinned[service] = str(ids.pop())
    return pinned


async def _serving(db: AsyncSession, app: App, environment: str, service: str) -> Deployment | None:
    """The first deployment serving a service of an app environment (None: none serves)."""
    found = await db.execute(
        select(Deployment)
        .where(
            Deployment.app_id == app.id,
            Deployment.app_environment == environment,
            Deployment.app_service == service,
            Deployment.current_release_id.is_not(None),
            Deployment.status != "deleted",
        )
        .order_by(Deployment.id)
        .limit(1)
    )
    return found.scalar_one_or_none()


async def deploy(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    name: str,
    environment: str,
    spec_text: str | None,
    commit: str | None,
    branch: str | None,
    clean: bool,
    skip_drift: bool = False,
    migration_files: list[str] | None = None,
    surface: dict[str, str] | None = None,
) -> tuple[AppRelease, Job]:
    """A release of the committed state to a non-production environment; with `surface`
    (service -> why it changed), only those services move and the others keep what serves."""
    app = (
        (await apps.save(db, caller=caller, text=spec_text, commit=False))[0] if spec_text else None
    )
    if app is None:
        app = await apps.get(db, caller=caller, name=name)
    elif app.name != name:
        raise ValidationFailed(f"the spec is for the app {app.name}, not {name}", field="spec")
    spec = app.spec
    if environment == previews.SECRETS_OF and environment not in spec["environments"]:
        scopes.require(caller.scopes, "deploy:preview", "deploy a preview")
        if not branch:
            raise ValidationFailed(
                "a preview is per branch: run `deploymate app deploy preview` on the branch "
                '(API: "branch")',
                field="branch",
            )
        preview = await previews.ensure(db, app=app, branch=branch, caller=caller)
        spec, environment = previews.with_environment(spec, preview), preview.environment
    kind = apps.environment_of(app.name, spec, environment, caller, "deploy to")
    if kind == "production":
        raise Conflict(
            f"{environment} is production: it gets exactly what serves on staging, by "
            "`deploymate app ship`, never a deploy",
            code="use_ship",
        )
    built = [name for name, svc in spec["services"].items() if "build" in svc]
    if built and not (commit and sources.has(context.settings, app.name, commit)):
        raise Conflict(
            f"{', '.join(built)} {'is' if len(built) == 1 else 'are'} built from the commit, "
            "whose source is not on the control host; run `deploymate app deploy` in the "
            "repository (it sends the commit's archive first)",
            code="source_missing",
        )
    return await _stage(
        db,
        context=context,
        caller=caller,
        app=app,
        environment=environment,
        spec=spec,
        commit=commit,
        branch=branch,
        clean=clean,
        action="app.deploy",
        skip_drift=skip_drift,
        migration_files=migration_files,
        surface=surface,
    )


async def _kept(
    db: AsyncSession, app: App, environment: str, service: str, targets: list[Server]
) -> dict[str, Any] | None:
    """An unchanged service's part of the release: what serves it on every server (None when
    a server has nothing serving it, so it has to move after all)."""
    kept: dict[str, Any] = {}
    for server in targets:
        dep = await _deployment_of(db, app, environment, service, server)
        current = (
            await db.get(Release, dep.current_release_id)
            if dep and dep.current_release_id
            else None
        )
        if dep is None or current is None or not current.image_id:
            return None
        kept[server.name] = {
            "deployment_id": dep.id,
            "release_id": current.id,
            "image_id": current.image_id,
            "unchanged": True,
        }
    return kept


async def _stage(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    app: App,
    environment: str,
    spec: dict[str, Any],
    commit: str | None,
    branch: str | None,
    clean: bool,
    action: str,
    pinned: dict[str, str] | None = None,
    shipped_from: int | None = None,
    skip_drift: bool = False,
    migration_files: list[str] | None = None,
    pending_migrations: list[str] | None = None,
    surface: dict[str, str] | None = None,
) -> tuple[AppRelease, Job]:
    """Records for one app release (a release per service per server, the app release, the job
    under every lock of the environment); `pinned`: service -> image ID to run (a ship)."""
    env_spec = spec["environments"][environment]
    if environment.startswith(previews.PREFIX) and environment not in app.spec["environments"]:
        # A preview gets only the secrets the spec names for previews, never another's.
        named = set((spec.get("preview") or {}).get("secrets") or [])
        stored = await _secrets(db, context.cipher, app, previews.SECRETS_OF)
        values = {k: v for k, v in stored.items() if k in named}
    else:
        values = await _secrets(db, context.cipher, app, environment)
    given = set(env_spec.get("env") or {})
    missing = [
        n
        for n in spec.get("required_env") or []
        if n in (spec.get("secrets") or []) and n not in values and n not in given
    ]
    if missing:
        raise ValidationFailed(
            f"{environment} has no value for {', '.join(missing)}; set "
            f"{'it' if len(missing) == 1 else 'each'} with `deploymate secrets set {app.name} "
            f"{environment} {missing[0] if len(missing) == 1 else 'NAME'}`",
            field="secrets",
            code="secret_missing",
        )
    sealed = context.cipher.encrypt(json.dumps(values, sort_keys=True)) if values else None
    targets = await _servers(db, caller, list(env_spec["servers"]))
    number = (
        int(
            (
                await db.execute(
                    select(func.coalesce(func.max(AppRelease.number), 0)).where(
                        AppRelease.app_id == app.id, AppRelease.environment == environment
                    )
                )
            ).scalar_one()
        )
        + 1
    )
    parts: dict[str, Any] = {}
    locks: dict[int, str] = {}
    if surface is not None:
        unknown = sorted(set(surface) - set(spec["services"]))
        if unknown:
            raise ValidationFailed(f"no service named {', '.join(unknown)}", field="services")
        surface = dict(surface)
        for service in spec["services"]:
            if service not in surface:
                kept = await _kept(db, app, environment, service, targets)
                if kept is None:
                    surface[service] = f"nothing of it serves in {environment} yet"
                else:
                    parts[service] = kept
        if not set(surface):
            raise ValidationFailed("nothing changed: no service to deploy", field="services")
    for service in spec["services"]:
        if service in parts:
            continue  # unchanged: it keeps the release that serves
        settings = settings_for(spec, environment, service, commit)
        for server in targets:
            dep = await _deployment(
                db, context.cipher, caller, app, environment, service, server, settings, sealed
            )
            release = await deployments.new_release(
                db,
                dep,
                reason=action.removeprefix("app."),
                actor=caller.username,
                image_id=(pinned or {}).get(service),
            )
            parts.setdefault(service, {})[server.name] = {
                "deployment_id": dep.id,
                "release_id": release.id,
                **({"pinned": True} if (pinned or {}).get(service) else {}),
            }
            locks[dep.id] = dep.name
    app_release = AppRelease(
        app_id=app.id,
        environment=environment,
        number=number,
        commit=commit,
        branch=branch,
        clean=clean,
        shipped_from=shipped_from,
        migration_files=list(migration_files or []),
        pending_migrations=list(pending_migrations or []),
        surface=surface,
        spec=spec,
        parts=parts,
        status="pending",
        created_by=caller.username,
    )
    db.add(app_release)
    await db.flush()
    job = await jobs.enqueue(
        db,
        kind=JOB_KIND,
        deployment_id=None,
        release_id=None,
        created_by=caller.username,
        payload={APP_RELEASE: app_release.id, SKIP_DRIFT: skip_drift},
        also_lock=locks,
    )
    app_release.job_id = job.id
    await audit.record(
        db,
        caller=caller,
        action=action,
        target_type="app",
        target_id=app.id,
        details={
            "app": app.name,
            "environment": environment,
            "release": number,
            "commit": commit,
            "clean": clean,
            **({"skip_drift": True} if skip_drift else {}),
        },
    )
    await db.commit()
    context.wake_worker()
    return app_release, job


async def list_releases(
    db: AsyncSession, *, app: App, environment: str | None = None
) -> list[AppRelease]:
    stmt = select(AppRelease).where(AppRelease.app_id == app.id)
    if environment:
        stmt = stmt.where(AppRelease.environment == environment)
    return list((await db.execute(stmt.order_by(AppRelease.id.desc()).limit(100))).scalars())


def _staging_of(spec: dict[str, Any], source: str | None) -> str:
    staging = [
        name
        for name, env in spec["environments"].items()
        if environment_kind(name, env) == "staging"
    ]
    if source is not None:
        if source not in staging:
            raise ValidationFailed(
                f"{source} is not a staging environment of this app "
                f"({', '.join(staging) or 'none'})",
                field="from",
            )
        return source
    if len(staging) != 1:
        raise ValidationFailed(
            "say which staging environment to ship from: --from "
            + (" or --from ".join(staging) if staging else "(the app has none)"),
            field="from",
        )
    return staging[0]


async def _shippable(
    db: AsyncSession, app: App, environment: str, source: str | None
) -> tuple[AppRelease, dict[str, str]]:
    """The staging release that would ship, with its image ID per service, or why none can."""
    if environment not in app.spec["environments"]:
        raise ValidationFailed(f"{app.name} has no environment {environment}", field="environment")
    if environment_kind(environment, app.spec["environments"][environment]) != "production":
        raise ValidationFailed(
            f"{environment} is not production; deploy to it with `deploymate app deploy`",
            field="environment",
        )
    staging = _staging_of(app.spec, source)
    serving = (
        await db.execute(
            select(AppRelease)
            .where(AppRelease.app_id == app.id, AppRelease.environment == staging)
            .order_by(AppRelease.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if serving is None:
        raise Conflict(
            f"{staging} has no release of {app.name} yet: deploy it there first",
            code="nothing_to_ship",
        )
    if serving.status != "succeeded":
        raise Conflict(
            f"{staging}'s latest release ({serving.number}) {serving.status}: only a release "
            "that serves healthy on staging ships",
            code="staging_not_healthy",
        )
    if not serving.clean:
        raise Conflict(
            f"{staging} release {serving.number} came from a dirty tree: it can never be "
            "shipped; commit and deploy again",
            code="dirty_release",
        )
    shipped = (
        await db.execute(
            select(AppRelease)
            .where(
                AppRelease.app_id == app.id,
                AppRelease.environment == environment,
                AppRelease.status == "succeeded",
            )
            .order_by(AppRelease.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if shipped is not None and shipped.shipped_from == serving.id:
        raise Conflict(
            f"{environment} already serves {staging} release {serving.number}",
            code="already_shipped",
        )
    pinned = _images_of(serving, f"{staging} release", code="staging_not_healthy")
    return serving, pinned


async def _ship_release(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    app: App,
    environment: str,
    serving: AppRelease,
    pinned: dict[str, str],
    action: str,
) -> tuple[AppRelease, Job]:
    return await _stage(
        db,
        context=context,
        caller=caller,
        app=app,
        environment=environment,
        spec=serving.spec,
        commit=serving.commit,
        branch=serving.branch,
        clean=True,
        action=action,
        pinned=pinned,
        shipped_from=serving.id,
        migration_files=serving.migration_files,
        pending_migrations=await pending_migrations(
            db, context, app, environment, serving.spec, serving.migration_files
        ),
    )


async def pending_migrations(
    db: AsyncSession,
    context: AppContext,
    app: App,
    environment: str,
    spec: dict[str, Any],
    files: list[str],
) -> list[str]:
    """The migration files of the release that the environment's `applied` command, run in its
    serving container, does not name. Shown with the command to run them by hand; never run."""
    migrations = spec.get("migrations") or {}
    if not migrations.get("applied") or not files:
        return []
    service = migrations.get("service") or next(iter(spec["services"]))
    dep = await _serving(db, app, environment, service)
    if dep is None:
        return list(files)  # nothing serves there yet: every migration is still to run
    release = await db.get(Release, dep.current_release_id)
    server = await db.get(Server, dep.server_id) if dep.server_id else None
    assert release is not None and release.container_name
    result = await executor_for(context, server).run(
        docker.exec_in(release.container_name, list(migrations["applied"]), 60)
    )
    if not result.ok:
        raise Conflict(
            f"the migrations' applied command failed in {environment} (status "
            f"{result.exit_status}): {result.stdout.strip()[-300:]}; fix it before shipping",
            code="migrations_unknown",
        )
    applied = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    return [
        f
        for f in files
        if not ({f, f.rsplit("/", 1)[-1], f.rsplit("/", 1)[-1].rsplit(".", 1)[0]} & applied)
    ]


async def ship(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    name: str,
    environment: str,
    source: str | None,
    confirm: str | None,
) -> tuple[AppRelease, Job] | ShipRequest:
    """Promote to production exactly what serves on staging: its spec at that commit and its
    image IDs, with production's own env and secrets; nothing rebuilt, no new image reference.
    An admin ships at once (confirming with the app's name); a member's ship becomes a request
    that an admin approves or rejects."""
    scopes.require(caller.scopes, "ship", "ship to production")
    app = await apps.get(db, caller=caller, name=name)
    serving, pinned = await _shippable(db, app, environment, source)
    if not caller.is_admin:
        return await _request(db, caller=caller, app=app, environment=environment, serving=serving)
    if confirm != app.name:
        raise ValidationFailed(
            f"shipping to production needs the app's name typed: --confirm {app.name}",
            field="confirm",
            code="confirmation_required",
        )
    return await _ship_release(
        db,
        context=context,
        caller=caller,
        app=app,
        environment=environment,
        serving=serving,
        pinned=pinned,
        action="app.ship",
    )


async def _request(
    db: AsyncSession, *, caller: Caller, app: App, environment: str, serving: AppRelease
) -> ShipRequest:
    pending = (
        await db.execute(
            select(ShipRequest).where(
                ShipRequest.app_id == app.id,
                ShipRequest.environment == environment,
                ShipRequest.source_release_id == serving.id,
                ShipRequest.status == "pending",
            )
        )
    ).scalar_one_or_none()
    if pending is not None:
        raise Conflict(
            f"a ship request for this release is already waiting (#{pending.id})",
            code="request_pending",
        )
    request = ShipRequest(
        app_id=app.id,
        environment=environment,
        source_release_id=serving.id,
        requested_by=caller.user_id,
        requested_by_name=caller.username,
        status="pending",
    )
    db.add(request)
    await db.flush()
    await audit.record(
        db,
        caller=caller,
        action="app.ship_requested",
        target_type="app",
        target_id=app.id,
        details={
            "app": app.name,
            "environment": environment,
            "request": request.id,
            "staging_release": serving.number,
        },
    )
    await db.commit()
    return request


async def list_requests(
    db: AsyncSession, *, caller: Caller, pending_only: bool = True
) -> list[ShipRequest]:
    stmt = select(ShipRequest).order_by(ShipRequest.id.desc()).limit(200)
    if pending_only:
        stmt = stmt.where(ShipRequest.status == "pending")
    if not caller.is_admin:
        stmt = stmt.where(ShipRequest.requested_by == caller.user_id)
    return list((await db.execute(stmt)).scalars())


async def decide(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    request_id: int,
    approve: bool,
    reason: str | None = None,
) -> tuple[ShipRequest, Job | None]:
    """An admin's answer. An approval ships the very release the member asked for, recorded
    as approved; if staging moved on since, the approval is refused (approvals are for one
    release) and the request marked stale."""
    scopes.require(caller.scopes, "ship", "decide ship requests")
    if not caller.is_admin:
        raise PermissionDenied("only admins approve or reject ship requests", code="forbidden")
    request = await db.get(ShipRequest, request_id)
    if request is None:
        raise NotFound(f"no ship request {request_id}")
    if request.status != "pending":
        raise Conflict(
            f"ship request #{request.id} was already {request.status}", code="already_decided"
        )
    app = await db.get(App, request.app_id)
    assert app is not None
    request.decided_by, request.decided_at, request.reason = caller.username, utcnow(), reason
    if not approve:
        request.status = "rejected"
        await audit.record(
            db,
            caller=caller,
            action="app.ship_rejected",
            target_type="app",
            target_id=app.id,
            details={"request": request.id, "reason": reason},
        )
        await db.commit()
        return request, None
    try:
        serving, pinned = await _shippable(db, app, request.environment, None)
    except Conflict as exc:
        request.status = "stale"
        await db.commit()
        raise Conflict(
            f"request #{request.id} can no longer ship: {exc.detail}", code="request_stale"
        ) from None
    if serving.id != request.source_release_id:
        request.status = "stale"
        await db.commit()
        raise Conflict(
            f"request #{request.id} was for staging release {request.source_release_id}, and "
            f"staging now serves release {serving.number}: approvals are for one release; "
            "ask for a new ship",
            code="request_stale",
        )
    request.status = "approved"
    app_release, job = await _ship_release(
        db,
        context=context,
        caller=caller,
        app=app,
        environment=request.environment,
        serving=serving,
        pinned=pinned,
        action="app.ship",
    )
    app_release.created_by = (
        f"{caller.username} (approved #{request.id} of {request.requested_by_name})"[:64]
    )
    request.app_release_id = app_release.id
    await db.commit()
    return request, job


async def rollback(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    name: str,
    environment: str,
    to: int | None,
    confirm: str | None,
) -> tuple[AppRelease, Job]:
    """Bring an environment back to an earlier app release, whole: its image IDs and its spec,
    every service together (the release flow of a deploy). Production needs the confirmation."""
    app = await apps.get(db, caller=caller, name=name)
    kind = apps.environment_of(app.name, app.spec, environment, caller, "roll back")
    production = kind == "production"
    if production and not caller.is_admin:
        raise PermissionDenied(
            "production is protected: members do not roll it back; ask an admin",
            code="production_protected",
        )
    if production and confirm != app.name:
        raise ValidationFailed(
            f"rolling production back needs the app's name typed: --confirm {app.name}",
            field="confirm",
            code="confirmation_required",
        )
    served = list(
        (
            await db.execute(
                select(AppRelease)
                .where(
                    AppRelease.app_id == app.id,
                    AppRelease.environment == environment,
                    AppRelease.status == "succeeded",
                )
                .order_by(AppRelease.id.desc())
            )
        ).scalars()
    )
    if to is None:
        target = served[1] if len(served) > 1 else None
    else:
        target = next((r for r in served if r.number == to), None)
    if target is None or (served and target.id == served[0].id):
        numbers = ", ".join(str(r.number) for r in served[1:]) or "none"
        raise ValidationFailed(
            f"no earlier release of {environment} that served to go back to (earlier: {numbers})",
            field="to",
        )
    pinned = _images_of(target, "release", code="not_restorable")
    return await _stage(
        db,
        context=context,
        caller=caller,
        app=app,
        environment=environment,
        spec=target.spec,
        commit=target.commit,
        branch=target.branch,
        clean=target.clean,
        action="app.rollback",
        pinned=pinned,
        shipped_from=target.shipped_from,
    )


async def one_off(
    db: AsyncSession,
    *,
    context: AppContext,
    caller: Caller,
    name: str,
    environment: str,
    service: str | None,
    command: list[str],
) -> tuple[Executor, docker.ContainerSpec]:
    """A new container of the release serving `service` in `environment` (same image ID, env,
    secrets, network and volumes) to run `command` in; audited with the program and the number
    of arguments only (they may hold a password)."""
    app = await apps.get(db, caller=caller, name=name)
    kind = apps.environment_of(app.name, app.spec, environment, caller, "run commands in")
    if kind == "production" and not caller.is_admin:
        raise PermissionDenied(
            "production is protected: members do not run commands there",
            code="production_protected",
        )
    service = service or next(iter(app.spec["services"]))
    dep = await _serving(db, app, environment, service)
    if dep is None:
        raise Conflict(
            f"no release of {service} serves in {environment}: deploy it first", code="no_release"
        )
    release = await db.get(Release, dep.current_release_id)
    server = await db.get(Server, dep.server_id) if dep.server_id else None
    assert release is not None and release.image_id
    plan = plan_for(context, dep, release, release.image_id)
    spec = plan.spec(docker.ROLE_SERVING, publish=False)
    one = docker.ContainerSpec(
        name=f"dm-run-{dep.name}-{secrets_token(3)}",
        image=spec.image,
        labels={**spec.labels, docker.LABEL_ROLE: "run"},
        env=spec.env,
        command=command,
        restart_policy="no",
        memory=spec.memory,
        network=NETWORK if plan.routed else None,
        mounts=spec.mounts,
    )
    await audit.record(
        db,
        caller=caller,
        action="app.run",
        target_type="app",
        target_id=app.id,
        details={
            "app": app.name,
            "environment": environment,
            "service": service,
            "program": command[0][:200],
            "arguments": len(command) - 1,
        },
    )
    await db.commit()
    return executor_for(context, server), one
