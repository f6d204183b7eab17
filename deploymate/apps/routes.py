"""JSON API for apps: the spec (YAML or JSON text) and secrets per environment."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from deploymate.apps import previews, releases, service, sources
from deploymate.apps.models import App, AppPreview, AppRelease, ShipRequest
from deploymate.apps.spec import environment_kind
from deploymate.core import scopes
from deploymate.core.errors import DeployMateError, NotFound
from deploymate.deployments.schemas import CommandLine
from deploymate.deps import AdminDep, CallerDep, ContextDep, DbDep, IdPath
from deploymate.runtime import docker
from deploymate.web import sse

router = APIRouter(prefix="/api/apps", tags=["apps"])
AppName = Annotated[str, Path(max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
EnvName = Annotated[str, Path(max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
SecretName = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class SpecIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    spec: Annotated[str, Field(min_length=1, max_length=1_048_576)]


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: SecretStr


class AppOut(BaseModel):
    id: int
    name: str
    owner_id: int | None
    services: list[str]
    environments: dict[str, dict[str, Any]]
    spec: dict[str, Any]
    spec_text: str
    created_at: datetime
    updated_at: datetime


def _out(app: App) -> AppOut:
    envs = app.spec.get("environments") or {}
    return AppOut(
        id=app.id,
        name=app.name,
        owner_id=app.owner_id,
        services=sorted(app.spec.get("services") or {}),
        environments={
            name: {"kind": environment_kind(name, env), "servers": env.get("servers", [])}
            for name, env in envs.items()
        },
        spec=app.spec,
        spec_text=app.spec_text,
        created_at=app.created_at,
        updated_at=app.updated_at,
    )


@router.get("")
async def list_apps(db: DbDep, me: CallerDep) -> list[AppOut]:
    return [_out(a) for a in await service.list_for(db, caller=me)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def save(body: SpecIn, response: Response, db: DbDep, me: CallerDep) -> AppOut:
    """Create an app from spec text (YAML or JSON), or store a new spec for an app you own.
    A refused spec answers 422 with every problem's line and column in `problems`."""
    app, created = await service.save(db, caller=me, text=body.spec)
    if not created:
        response.status_code = status.HTTP_200_OK
    return _out(app)


@router.get("/{name}")
async def get(name: AppName, db: DbDep, me: CallerDep) -> AppOut:
    return _out(await service.get(db, caller=me, name=name))


Commit = Annotated[str, Path(pattern=r"^[0-9a-f]{40}$", description="a full commit id")]


@router.get("/{name}/sources/{commit}", status_code=status.HTTP_204_NO_CONTENT)
async def has_source(
    name: AppName, commit: Commit, db: DbDep, me: CallerDep, context: ContextDep
) -> None:
    """204 when the control host holds the commit's archive (the CLI then sends nothing)."""
    app = await service.get(db, caller=me, name=name)
    if not sources.has(context.settings, app.name, commit):
        raise NotFound(f"the source of commit {commit[:12]} is not on the control host")


@router.put("/{name}/sources/{commit}", status_code=status.HTTP_201_CREATED)
async def put_source(
    name: AppName,
    commit: Commit,
    request: Request,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
) -> dict[str, Any]:
    """The commit's `git archive --format=tar.gz` (Content-Type: application/gzip), the
    input of the builds of services with `build:`; stored once per commit."""
    app = await service.get(db, caller=me, name=name)
    scopes.require_any_deploy(me.scopes, "send an app's source")
    settings = context.settings
    size = await sources.store(
        settings, app.name, commit, request.stream(), settings.max_source_bytes
    )
    return {"commit": commit, "bytes": size}


@router.get("/{name}/secrets")
async def secrets(name: AppName, db: DbDep, me: CallerDep) -> dict[str, list[str]]:
    """Per environment, the secrets that have a value; values are never returned."""
    app = await service.get(db, caller=me, name=name)
    return await service.secret_names(db, app=app)


@router.put("/{name}/secrets/{environment}/{secret}", status_code=status.HTTP_204_NO_CONTENT)
async def set_secret(
    name: AppName,
    environment: EnvName,
    secret: SecretName,
    body: SecretIn,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
) -> None:
    await service.set_secret(
        db,
        caller=me,
        cipher=context.cipher,
        name=name,
        environment=environment,
        secret=secret,
        value=body.value.get_secret_value(),
    )


class DeployIn(BaseModel):
    """What `deploymate app deploy` sends: the environment, and the spec and commit as they
    are in the repository (the spec at the commit, never the working tree)."""

    model_config = ConfigDict(extra="forbid")
    environment: Annotated[str, Field(max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    spec: Annotated[str, Field(min_length=1, max_length=1_048_576)] | None = None
    commit: Annotated[str, Field(pattern=r"^[0-9a-f]{7,64}$")] | None = None
    branch: Annotated[str, Field(max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")] | None = None
    clean: bool = True
    skip_drift: bool = False  # non-production only (production is shipped); audited
    migrations: Annotated[
        list[Annotated[str, Field(max_length=1024)]], Field(max_length=10_000)
    ] = Field(default_factory=list)  # the files under migrations.path at the commit
    # A changed-surface deploy: only these services move (service -> why); the others keep
    # the release that serves them.
    surface: (
        Annotated[
            dict[
                Annotated[str, Field(max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")],
                Annotated[str, Field(max_length=500)],
            ],
            Field(min_length=1, max_length=100),
        ]
        | None
    ) = None


class AppReleaseOut(BaseModel):
    id: int
    number: int
    environment: str
    commit: str | None
    branch: str | None
    clean: bool
    status: str
    detail: str | None
    job_id: int | None
    parts: dict[str, Any]
    migration_files: list[str]
    pending_migrations: list[str]
    surface: dict[str, str] | None = None  # a changed-surface deploy: what moved and why
    created_by: str | None
    created_at: datetime
    finished_at: datetime | None


def _release_out(r: AppRelease) -> AppReleaseOut:
    return AppReleaseOut(
        id=r.id,
        number=r.number,
        environment=r.environment,
        commit=r.commit,
        branch=r.branch,
        clean=r.clean,
        status=r.status,
        detail=r.detail,
        job_id=r.job_id,
        parts=r.parts,
        migration_files=r.migration_files,
        pending_migrations=r.pending_migrations,
        surface=r.surface,
        created_by=r.created_by,
        created_at=r.created_at,
        finished_at=r.finished_at,
    )


@router.post("/{name}/deploy", status_code=status.HTTP_202_ACCEPTED)
async def deploy(
    name: AppName, body: DeployIn, db: DbDep, me: CallerDep, context: ContextDep
) -> dict[str, Any]:
    """Deploy the app (with the spec given, stored first) to a non-production environment:
    every service on every server, together. 202 with the job to follow."""
    app_release, job = await releases.deploy(
        db,
        context=context,
        caller=me,
        name=name,
        environment=body.environment,
        spec_text=body.spec,
        commit=body.commit,
        branch=body.branch,
        clean=body.clean,
        skip_drift=body.skip_drift,
        migration_files=body.migrations,
        surface=body.surface,
    )
    return {
        "job_id": job.id,
        "release": app_release.number,
        "id": app_release.id,
        "environment": app_release.environment,
    }


def _preview_out(p: AppPreview, spec: dict[str, Any]) -> dict[str, Any]:
    domains = previews.hosts(spec, p) if p.status == "active" else {}
    return {
        "branch": p.branch,
        "slug": p.slug,
        "environment": p.environment,
        "status": p.status,
        "domains": domains,
        "created_by": p.created_by,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "expires_at": p.expires_at,
    }


@router.get("/{name}/previews")
async def list_previews(name: AppName, db: DbDep, me: CallerDep) -> list[dict[str, Any]]:
    """The app's live previews, one per branch, with their domains and expiry."""
    app = await service.get(db, caller=me, name=name)
    return [_preview_out(p, app.spec) for p in await previews.list_for(db, app=app)]


@router.delete("/{name}/previews")
async def destroy_preview(
    name: AppName,
    branch: Annotated[str, Query(min_length=1, max_length=300)],
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
) -> dict[str, Any]:
    """Remove the branch's preview: its containers, routes and volumes (delete jobs)."""
    app = await service.get(db, caller=me, name=name)
    scopes.require(me.scopes, "deploy:preview", "destroy a preview")
    gone = await previews.destroy(
        db, context=context, caller=me, app=app, branch=branch, why="destroyed"
    )
    return _preview_out(gone, app.spec)


@router.get("/{name}/releases")
async def list_releases(
    name: AppName, db: DbDep, me: CallerDep, environment: str | None = None
) -> list[AppReleaseOut]:
    app = await service.get(db, caller=me, name=name)
    return [
        _release_out(r) for r in await releases.list_releases(db, app=app, environment=environment)
    ]


class ShipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: Annotated[
        str, Field(max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    ] = "production"
    source: Annotated[
        str | None,
        Field(alias="from", max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"),
    ] = None
    confirm: Annotated[str, Field(max_length=40)] | None = None


@router.post("/{name}/ship", status_code=status.HTTP_202_ACCEPTED)
async def ship(
    name: AppName, body: ShipIn, db: DbDep, me: CallerDep, context: ContextDep
) -> dict[str, Any]:
    """Promote exactly what serves on staging (its image IDs and its spec) to production. An
    admin confirms with the app's name and gets the job; a member's ship becomes a request for
    an admin (`request_id`, see /api/approvals)."""
    done = await releases.ship(
        db,
        context=context,
        caller=me,
        name=name,
        environment=body.environment,
        source=body.source,
        confirm=body.confirm,
    )
    if isinstance(done, ShipRequest):
        return {"request_id": done.id, "status": done.status}
    app_release, job = done
    return {
        "job_id": job.id,
        "release": app_release.number,
        "id": app_release.id,
        "pending_migrations": app_release.pending_migrations,
    }


approvals_router = APIRouter(prefix="/api/approvals", tags=["apps"])


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=500)] | None = None


def _request_out(r: ShipRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "app_id": r.app_id,
        "environment": r.environment,
        "source_release_id": r.source_release_id,
        "requested_by": r.requested_by_name,
        "status": r.status,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at,
        "reason": r.reason,
        "app_release_id": r.app_release_id,
        "created_at": r.created_at,
    }


@approvals_router.get("")
async def list_requests(db: DbDep, me: CallerDep, all: bool = False) -> list[dict[str, Any]]:
    """Ship requests waiting for an admin (`all`: decided ones too); members see their own."""
    return [
        _request_out(r) for r in await releases.list_requests(db, caller=me, pending_only=not all)
    ]


@approvals_router.post("/{request_id}/approve", status_code=status.HTTP_202_ACCEPTED)
async def approve(
    request_id: IdPath, db: DbDep, me: AdminDep, context: ContextDep
) -> dict[str, Any]:
    """Ship the release the request was for; refused when staging moved on since."""
    request, job = await releases.decide(
        db, context=context, caller=me, request_id=request_id, approve=True
    )
    return {**_request_out(request), "job_id": job.id if job else None}


@approvals_router.post("/{request_id}/reject")
async def reject(
    request_id: IdPath, body: DecisionIn, db: DbDep, me: AdminDep, context: ContextDep
) -> dict[str, Any]:
    request, _ = await releases.decide(
        db, context=context, caller=me, request_id=request_id, approve=False, reason=body.reason
    )
    return _request_out(request)


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    environment: Annotated[str, Field(max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    to: Annotated[int, Field(ge=1, le=2_000_000_000)] | None = None
    confirm: Annotated[str, Field(max_length=40)] | None = None


@router.post("/{name}/rollback", status_code=status.HTTP_202_ACCEPTED)
async def rollback(
    name: AppName, body: RollbackIn, db: DbDep, me: CallerDep, context: ContextDep
) -> dict[str, Any]:
    """The environment back to an earlier app release that served (`to`: its number; default
    the one before), every service together."""
    app_release, job = await releases.rollback(
        db,
        context=context,
        caller=me,
        name=name,
        environment=body.environment,
        to=body.to,
        confirm=body.confirm,
    )
    return {"job_id": job.id, "release": app_release.number, "id": app_release.id}


class RunIn(BaseModel):
    """A one-off command in a new container of the serving release, as an argument list."""

    model_config = ConfigDict(extra="forbid")
    environment: Annotated[str, Field(max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")]
    service: Annotated[
        str | None, Field(max_length=40, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    ] = None
    command: Annotated[CommandLine, Field(min_length=1)]
    timeout: float = Field(default=600, gt=0, le=3600, description="seconds")


@router.post("/{name}/run")
async def run(
    name: AppName, body: RunIn, db: DbDep, me: CallerDep, context: ContextDep
) -> StreamingResponse:
    """Run a command in a new container of the serving release (same image, env, secrets,
    network; removed afterwards): its output as `out` events, then `end` with the exit code."""
    executor, spec = await releases.one_off(
        db,
        context=context,
        caller=me,
        name=name,
        environment=body.environment,
        service=body.service,
        command=list(body.command),
    )

    async def one_off(on_line: sse.Lines) -> int | None:
        try:
            result = await executor.run(docker.run_once(spec, body.timeout), on_line=on_line)
        except DeployMateError:
            await executor.run(docker.remove(spec.name))  # a timeout leaves it running
            raise
        return result.exit_status

    return sse.command_output(one_off)
