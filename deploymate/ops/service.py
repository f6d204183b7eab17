"""The ops overview (what is failing, unreachable, recent) and the console's first steps.

Counts are GROUP BY queries and lists are bounded, so the cost does not grow with the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import String, and_, case, func, literal, null, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit.models import AuditEvent
from deploymate.auth.models import User
from deploymate.core.caller import Caller
from deploymate.core.db import utcnow
from deploymate.deployments import service as deployments
from deploymate.deployments.models import Deployment, DeploymentEvent
from deploymate.jobs.models import Job
from deploymate.monitoring import service as monitor
from deploymate.monitoring.models import MonitorState
from deploymate.servers.models import Server

LISTED = 50  # failing deployments and unreachable servers shown at most


def _server_state() -> Any:
    return case(
        (Server.last_check_at.is_(None), "unchecked"),
        (Server.last_check_ok.is_(True), "ok"),
        else_="unreachable",
    )


async def overview(db: AsyncSession) -> dict[str, Any]:
    state = _server_state()
    by_server = {
        str(k): int(n)
        for k, n in (await db.execute(select(state, func.count()).group_by(state))).all()
    }
    by_deployment = {
        str(k): int(n)
        for k, n in (
            await db.execute(
                select(Deployment.status, func.count())
                .where(Deployment.status != "deleted")
                .group_by(Deployment.status)
            )
        ).all()
    }
    failing = (
        await db.execute(
            select(Deployment.id, Deployment.name, Deployment.status, Deployment.status_message)
            .where(
                Deployment.status != "deleted",
                (Deployment.status == "failed") | Deployment.status_message.is_not(None),
            )
            .order_by(Deployment.name)
            .limit(LISTED)
        )
    ).all()
    unreachable = (
        await db.execute(
            select(
                Server.id, Server.name, Server.host, Server.last_check_message, Server.last_check_at
            )
            .where(Server.last_check_at.is_not(None), Server.last_check_ok.is_not(True))
            .order_by(Server.name)
            .limit(LISTED)
        )
    ).all()
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
        "monitoring": await monitoring(db),
        "servers": {"total": sum(by_server.values()), "by_status": by_server},
        "deployments": {"total": sum(by_deployment.values()), "by_status": by_deployment},
        "failing_deployments": [
            {"id": r.id, "name": r.name, "status": r.status, "reason": r.status_message}
            for r in failing
        ],
        "unreachable_servers": [
            {
                "id": r.id,
                "name": r.name,
                "host": r.host,
                "reason": r.last_check_message,
                "checked_at": r.last_check_at,
            }
            for r in unreachable
        ],
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


@dataclass
class Named:
    """A subject with its name, and its monitoring state (None: not checked yet)."""

    id: int
    name: str
    view: monitor.SubjectView | None
    host: str | None = None
    pinned: bool = True


async def _watched(db: AsyncSession) -> tuple[list[Named], list[Named]]:
    """Every server with its state, and every deployment with a problem: one statement."""
    state = MonitorState
    columns = (
        state.check_name,
        state.state,
        state.since,
        state.detail,
        state.last_checked_at,
    )
    servers = (
        select(
            literal(monitor.SERVER).label("kind"),
            Server.id.label("id"),
            Server.name.label("name"),
            Server.host.label("host"),
            case((Server.host_key.is_(None), 0), else_=1).label("pinned"),
            *columns,
        )
        .select_from(Server)
        .outerjoin(state, and_(state.subject_kind == monitor.SERVER, state.subject_id == Server.id))
    )
    problems = (
        select(
            literal(monitor.DEPLOYMENT).label("kind"),
            Deployment.id.label("id"),
            Deployment.name.label("name"),
            null().cast(String).label("host"),
            literal(1).label("pinned"),
            *columns,
        )
        .select_from(state)
        .join(
            Deployment,
            and_(state.subject_kind == monitor.DEPLOYMENT, Deployment.id == state.subject_id),
        )
        .where(state.state != monitor.OK)
    )
    grouped: dict[tuple[str, int], list[Any]] = {}
    found: Sequence[Any] = (await db.execute(union_all(servers, problems))).all()
    for row in found:
        grouped.setdefault((row.kind, row.id), []).append(row)
    now = utcnow()
    out: dict[str, list[Named]] = {monitor.SERVER: [], monitor.DEPLOYMENT: []}
    for (kind, subject_id), rows in grouped.items():
        checked = [r for r in rows if r.check_name is not None]
        first = rows[0]
        out[kind].append(
            Named(
                subject_id,
                first.name,
                monitor.view(kind, subject_id, checked, now) if checked else None,
                first.host,
                bool(first.pinned),
            )
        )
    return out[monitor.SERVER], out[monitor.DEPLOYMENT]


def _state_of(view: monitor.SubjectView | None, *, pinned: bool = True) -> dict[str, Any]:
    if view is None or not view.checks:
        summary = "not checked yet" if pinned else "not watched: no pinned host key"
        return {
            "state": "unchecked",
            "words": "unchecked",
            "summary": summary,
            "since": None,
            "since_text": "",
            "checks": [],
        }
    head = view.headline
    return {
        "state": head.state,
        "words": head.words,
        "summary": view.summary,
        "since_text": head.since_text,
        "detail": head.detail if not head.ok else "",
        "since": head.since,
        "last_checked_at": view.last_checked_at,
        "checks": [c.as_dict() for c in view.checks],
    }


async def monitoring(db: AsyncSession) -> dict[str, Any]:
    """What the monitor sees now: servers (those with a problem first) with their state and
    since when, and every deployment with a problem (the oldest first)."""
    servers, deployments = await _watched(db)
    servers.sort(key=lambda s: (s.view is None or s.view.ok, s.name))
    deployments.sort(key=lambda d: (d.view.headline.since if d.view else utcnow(), d.name))
    return {
        "servers": [
            {"id": s.id, "name": s.name, "host": s.host, **_state_of(s.view, pinned=s.pinned)}
            for s in servers[:LISTED]
        ],
        "deployments": [
            {"id": d.id, "name": d.name, **_state_of(d.view)} for d in deployments[:LISTED]
        ],
    }


async def steps_dismissed(db: AsyncSession, *, caller: Caller) -> bool:
    stmt = select(User.steps_dismissed).where(User.id == caller.user_id)
    return bool((await db.execute(stmt)).scalar_one_or_none())


async def dismiss_steps(db: AsyncSession, *, caller: Caller) -> None:
    await db.execute(update(User).where(User.id == caller.user_id).values(steps_dismissed=True))
    await db.commit()


async def first_steps(db: AsyncSession, *, caller: Caller) -> list[dict[str, Any]]:
    """The getting-started path, counting only what the caller can see (deleted excluded)."""
    owned = select(func.count()).select_from(Server)
    if not caller.is_admin:
        owned = owned.where(Server.owner_id == caller.user_id)
    servers = int((await db.execute(owned)).scalar_one())
    live = await deployments.count_for(db, caller=caller)
    return [
        {
            "title": "Secure your account",
            "done": not caller.must_change_password,
            "detail": "Choose your own password.",
            "href": "/app/change-password",
        },
        {
            "title": "Add a server",
            "done": servers > 0,
            "detail": f"{servers} server(s) registered."
            if servers
            else "Register an SSH target and pin its host key.",
            "href": "/app/server-review#add-server",
        },
        {
            "title": "Create a deployment",
            "done": live > 0,
            "detail": f"{live} deployment(s)."
            if live
            else "Deploy a container image with a health check.",
            "href": "/app/deployment-workflow",
        },
    ]
