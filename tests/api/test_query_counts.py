"""Lists answer in a fixed number of SQL statements, however many rows there are (finding 10).

The rows are inserted through the models; each endpoint is asked once with few rows and once
with ten times as many, and must run the same number of statements.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, insert, select

from deploymate.audit.models import AuditEvent
from deploymate.auth.models import User
from deploymate.core.db import utcnow
from deploymate.deployments.models import Deployment, DeploymentEvent, Release
from deploymate.jobs.models import Job
from deploymate.servers.models import Server
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import login, run_in_app

LISTS = (
    "/api/deployments",
    "/api/deployments?include_deleted=true",
    "/api/servers",
    "/api/admin/users",
    "/api/admin/audit",
    "/api/admin/upgrade-requests",
    "/api/ops/overview",
    "/api/notifications",
    "/api/templates",
    "/api/deployments/1/releases",
    "/api/deployments/1/activity",
    "/app",
    "/app/server-review",
    "/app/deployment-workflow",
    "/app/users",
    "/app/audit",
    "/app/upgrade-requests",
    "/app/notifications",
    "/app/webhooks",
)


async def _add(db: Any, start: int, count: int) -> None:
    """`count` servers, deployments (each with releases, events and an active job) and audit
    rows, numbered from `start`."""
    admin_id = (await db.execute(select(User.id).where(User.username == "admin"))).scalar_one()
    now = utcnow()
    for i in range(start, start + count):
        server = Server(
            name=f"srv-{i}",
            host=f"srv{i}.example.test",
            username="deploy",
            auth_type="password",
            credentials="gAAAAA-not-read-here",
            owner_id=admin_id,
        )
        db.add(server)
        await db.flush()
        dep = Deployment(
            name=f"app-{i}",
            server_id=server.id,
            owner_id=admin_id,
            image="registry.example.com/app:1",
            internal_port=80,
            external_port=8000 + i,
            status="running" if i % 2 else "failed",
            status_message=None if i % 2 else "release failed",
        )
        db.add(dep)
        await db.flush()
        for n in range(1, 4):
            release = Release(
                deployment_id=dep.id,
                number=n,
                reason="redeploy",
                image="registry.example.com/app:1",
                config={"image": "x"},
                status="succeeded",
                log={"lines": []},
            )
            db.add(release)
            await db.flush()
            dep.current_release_id = release.id
        db.add(Job(kind="deploy", deployment_id=dep.id, status="succeeded"))
        await db.execute(
            insert(DeploymentEvent),
            [
                {"deployment_id": dep.id, "created_at": now, "action": "deploy", "message": "x"}
                for _ in range(5)
            ],
        )
        await db.execute(
            insert(AuditEvent),
            [
                {
                    "created_at": now,
                    "action": "deployment.deploy",
                    "outcome": "failure" if k % 3 == 0 else "success",
                    "details": {},
                }
                for k in range(5)
            ],
        )
    await db.commit()


# The app's own background tasks are named (jobs/worker.py, wiring.py, notifications/outbox.py).
BACKGROUND = (
    "worker-",
    "job-",
    "heartbeat-",
    "event-bus",
    "ssh-reaper",
    "webhook-",
    "preview-reaper",
    "monitor",
)


def _in_request() -> bool:
    """A statement of the request being measured, not of the worker's or the event bus's polls."""
    task = asyncio.current_task()
    return task is not None and not task.get_name().startswith(BACKGROUND)


def _statements(client: TestClient) -> dict[str, int]:
    engine = client.app.state.context.engine.sync_engine  # type: ignore[attr-defined]
    seen = [0]

    def count(*_: Any) -> None:
        if _in_request():
            seen[0] += 1

    counts = {}
    event.listen(engine, "before_cursor_execute", count)
    try:
        for path in LISTS:
            client.get(path)  # the first request may refresh a session's last-seen time
            seen[0] = 0
            res = client.get(path)
            assert res.status_code == 200, (path, res.text)
            counts[path] = seen[0]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return counts


def test_every_list_runs_the_same_statements_for_3_or_30_rows(client: TestClient) -> None:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    run_in_app(client, _add, 0, 3)
    few = _statements(client)
    run_in_app(client, _add, 3, 27)
    many = _statements(client)
    assert many == few
    assert 2 <= min(few.values()) and max(few.values()) <= 16, few


def test_lists_come_a_page_at_a_time_with_the_total(client: TestClient) -> None:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    run_in_app(client, _add, 0, 60)
    for path, total in (
        ("/api/deployments", 60),
        ("/api/servers", 60),
        ("/api/admin/users", 1),
        ("/api/deployments/1/releases", 3),
    ):
        first = client.get(path)
        assert first.status_code == 200 and first.headers["x-total-count"] == str(total), path
        assert len(first.json()) == min(total, 50)  # the default page
        rest = client.get(path, params={"limit": 500, "offset": 50})
        assert len(rest.json()) == max(0, total - 50), path
    names = [d["name"] for d in client.get("/api/deployments", params={"limit": 5}).json()]
    assert names == sorted(names) and len(names) == 5
    one = client.get("/api/servers", params={"name": "srv-7"})
    assert [s["name"] for s in one.json()] == ["srv-7"] and one.headers["x-total-count"] == "1"
    assert client.get("/api/deployments", params={"limit": 501}).status_code == 422
    assert client.get("/api/deployments", params={"offset": -1}).status_code == 422
