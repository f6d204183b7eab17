"""The ops overview: what is failing, what is unreachable, what ran recently."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit.models import AuditEvent
from deploymate.db import utcnow
from deploymate.deployments.models import Deployment, DeploymentEvent
from deploymate.jobs.models import Job
from deploymate.servers.models import Server


def _server_status(server: Server) -> str:
    if server.last_check_at is None:
        return "unchecked"
    return "ok" if server.last_check_ok else "unreachable"


async def overview(db: AsyncSession) -> dict[str, Any]:
    servers = list((await db.execute(select(Server).order_by(Server.name))).scalars())
    by_server: dict[str, int] = {}
    for server in servers:
        by_server[_server_status(server)] = by_server.get(_server_status(server), 0) + 1
    deployments = list(
        (
            await db.execute(
                select(Deployment).where(Deployment.status != "deleted").order_by(Deployment.name)
            )
        ).scalars()
    )
    by_deployment: dict[str, int] = {}
    for dep in deployments:
        by_deployment[dep.status] = by_deployment.get(dep.status, 0) + 1
    failing = [
        {"id": d.id, "name": d.name, "status": d.status, "reason": d.status_message}
        for d in deployments
        if d.status == "failed" or d.status_message
    ]
    unreachable = [
        {
            "id": s.id,
            "name": s.name,
            "host": s.host,
            "reason": s.last_check_message,
            "checked_at": s.last_check_at,
        }
        for s in servers
        if _server_status(s) == "unreachable"
    ]
    since = utcnow() - timedelta(hours=24)
    job_counts = dict(
        (
            await db.execute(
                select(Job.status, func.count()).where(Job.created_at >= since).group_by(Job.status)
            )
        ).all()
    )
    activity = (
        await db.execute(
            select(DeploymentEvent, Deployment.name)
            .join(Deployment, Deployment.id == DeploymentEvent.deployment_id)
            .order_by(DeploymentEvent.id.desc())
            .limit(15)
        )
    ).all()
    security = (
        await db.execute(
            select(AuditEvent)
            .where(AuditEvent.outcome == "failure")
            .order_by(AuditEvent.id.desc())
            .limit(10)
        )
    ).scalars()
    return {
        "servers": {"total": len(servers), "by_status": by_server},
        "deployments": {"total": len(deployments), "by_status": by_deployment},
        "failing_deployments": failing,
        "unreachable_servers": unreachable,
        "jobs_24h": {
            "running": int(job_counts.get("running", 0)) + int(job_counts.get("queued", 0)),
            "failed": int(job_counts.get("failed", 0)) + int(job_counts.get("interrupted", 0)),
            "succeeded": int(job_counts.get("succeeded", 0)),
        },
        "recent_activity": [
            {
                "at": e.created_at,
                "deployment": name,
                "deployment_id": e.deployment_id,
                "actor": e.actor,
                "action": e.action,
                "message": e.message,
            }
            for e, name in activity
        ],
        "recent_failures": [
            {"at": a.created_at, "actor": a.actor_name, "action": a.action, "target": a.target_id}
            for a in security
        ],
    }
