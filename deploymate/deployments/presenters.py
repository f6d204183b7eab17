"""Deployments, releases and activity as the API and the console show them.

Lists are built with a fixed number of queries whatever their length: servers, serving
releases (only the columns shown) and active jobs are looked up in one query each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.core.crypto import Cipher
from deploymate.deployments.models import Deployment, DeploymentEvent, Release
from deploymate.deployments.schemas import ActivityOut, DeploymentOut, ReleaseBrief, ReleaseOut
from deploymate.deployments.service import secret_env
from deploymate.jobs.models import Job
from deploymate.jobs.service import ACTIVE
from deploymate.servers.models import Server
from deploymate.servers.targets import CONTROL_HOST

STATUS_CLASS = {
    "running": "status-ok",
    "deploying": "status-warn",
    "stopped": "status-warn",
    "failed": "status-bad",
    "deleted": "status-muted",
}


async def _servers(db: AsyncSession, deps: Sequence[Deployment]) -> dict[int, tuple[str, str]]:
    ids = {d.server_id for d in deps if d.server_id is not None}
    if not ids:
        return {}
    rows = await db.execute(select(Server.id, Server.name, Server.host).where(Server.id.in_(ids)))
    return {int(i): (str(name), str(host)) for i, name, host in rows.all()}


async def _current_releases(
    db: AsyncSession, deps: Sequence[Deployment]
) -> dict[int, ReleaseBrief]:
    ids = {d.current_release_id for d in deps if d.current_release_id is not None}
    if not ids:
        return {}
    rows = await db.execute(
        select(Release.id, Release.number, Release.image, Release.image_id, Release.status).where(
            Release.id.in_(ids)
        )
    )
    return {
        int(r.id): ReleaseBrief(
            id=r.id, number=r.number, image=r.image, image_id=r.image_id, status=r.status
        )
        for r in rows.all()
    }


async def _active_jobs(db: AsyncSession, deps: Sequence[Deployment]) -> dict[int, int]:
    ids = [d.id for d in deps]
    if not ids:
        return {}
    rows = await db.execute(
        select(Job.deployment_id, Job.id)
        .where(Job.deployment_id.in_(ids), Job.status.in_(ACTIVE))
        .order_by(Job.id.desc())
    )
    return {  # ordered newest first, so the oldest active job wins
        int(dep_id): int(job_id) for dep_id, job_id in rows.all() if dep_id is not None
    }


def _secret_names(cipher: Cipher, sealed: str | None) -> list[str]:
    return sorted(secret_env(cipher, sealed))


async def present(
    db: AsyncSession, *, deps: Sequence[Deployment], cipher: Cipher
) -> list[DeploymentOut]:
    servers = await _servers(db, deps)
    current = await _current_releases(db, deps)
    active = await _active_jobs(db, deps)
    out = []
    for dep in deps:
        server = servers.get(dep.server_id) if dep.server_id is not None else None
        out.append(
            DeploymentOut(
                id=dep.id,
                name=dep.name,
                server_id=dep.server_id,
                server_name=server[0] if server else None,
                target=server[0] if server else CONTROL_HOST,
                owner_id=dep.owner_id,
                image=dep.image,
                internal_port=dep.internal_port,
                external_port=dep.external_port,
                domains=list(dep.domains or []),
                tls=dep.tls,
                volumes=list(dep.volumes or []),
                required_env=list(dep.required_env or []),
                smoke=list(dep.smoke or []),
                drain_seconds=dep.drain_seconds,
                smoke_result=dep.smoke_result,
                env=dep.env,
                secret_env_keys=_secret_names(cipher, dep.secret_env),
                command=dep.command,
                restart_policy=dep.restart_policy,
                health_check=dep.health_check,
                memory_limit=dep.memory_limit,
                cpu_limit=dep.cpu_limit,
                labels=dep.labels,
                status=dep.status,
                status_message=dep.status_message,
                current_release=current.get(dep.current_release_id)
                if dep.current_release_id
                else None,
                active_job_id=active.get(dep.id),
                created_at=dep.created_at,
                updated_at=dep.updated_at,
                deleted_at=dep.deleted_at,
            )
        )
    return out


async def present_one(db: AsyncSession, *, dep: Deployment, cipher: Cipher) -> DeploymentOut:
    return (await present(db, deps=[dep], cipher=cipher))[0]


async def cards(db: AsyncSession, *, deps: Sequence[Deployment]) -> list[dict[str, Any]]:
    """One overview card per deployment (`_deployment_cards.html`), in three queries."""
    servers = await _servers(db, deps)
    current = await _current_releases(db, deps)
    active = await _active_jobs(db, deps)
    result = []
    for dep in deps:
        server = servers.get(dep.server_id) if dep.server_id is not None else None
        release = current.get(dep.current_release_id) if dep.current_release_id else None
        result.append(
            {
                "id": dep.id,
                "href": f"/deployments/{dep.id}",
                "name": dep.name,
                "status": dep.status,
                "status_class": STATUS_CLASS.get(dep.status, ""),
                "status_message": dep.status_message,
                "target": server[0] if server else CONTROL_HOST,
                "server_id": dep.server_id,
                **_where(dep, server[1] if server else None),
                "image": dep.image,
                "release": release.number if release else None,
                "release_image": release.image if release else None,
                "busy": dep.id in active,
            }
        )
    return result


def domain_url(dep: Deployment, domain: str) -> str:
    return f"{'http' if dep.tls == 'off' else 'https'}://{domain}/"


def _where(dep: Deployment, host: str | None) -> dict[str, str | None]:
    """Where users reach a deployment: its first domain, or the published port."""
    if dep.domains:
        return {"address": dep.domains[0], "url": domain_url(dep, dep.domains[0])}
    if host is None:
        return {"address": f"{CONTROL_HOST} :{dep.external_port}", "url": None}
    return {"address": f"{host}:{dep.external_port}", "url": f"http://{host}:{dep.external_port}/"}


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


def activity_out(event: DeploymentEvent) -> ActivityOut:
    return ActivityOut(
        id=event.id,
        created_at=event.created_at,
        actor=event.actor,
        action=event.action,
        message=event.message,
        job_id=event.job_id,
    )
