"""Continuous monitoring through the app, on SQLite and PostgreSQL: the rounds' records (once
per change, compare-and-set), what is no longer watched, and the state with since when on the
ops overview (API and page), the servers page and a deployment's page.

Nothing here reaches a real host: a server round meets a closed port on 127.0.0.1. The real
thing (a killed container, a stopped sshd) is tests/e2e/test_monitoring.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncssh
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.core.db import utcnow
from deploymate.core.events import EventRecord
from deploymate.deployments.models import Deployment, DeploymentEvent, Release
from deploymate.monitoring import service
from deploymate.monitoring.models import MonitorChange, MonitorState
from deploymate.monitoring.service import DEPLOYMENT, OK, SERVER, Seen, Subject
from deploymate.ops import monitor as rounds
from deploymate.servers.models import Server
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import login, run_in_app


@pytest.fixture
def admin(client: TestClient) -> Iterator[TestClient]:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    yield client


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _counts(db: AsyncSession) -> dict[str, Any]:
    events = (await db.execute(select(EventRecord.name).order_by(EventRecord.id))).scalars()
    return {
        "events": list(events),
        "changes": int((await db.execute(select(func.count(MonitorChange.id)))).scalar_one()),
        "activity": list(
            (
                await db.execute(
                    select(DeploymentEvent.action)
                    .where(DeploymentEvent.actor == "monitor")
                    .order_by(DeploymentEvent.id)
                )
            ).scalars()
        ),
    }


async def _world(db: AsyncSession) -> dict[str, int]:
    """A server and a running deployment on it (records only)."""
    server = Server(
        name="web-1", host="203.0.113.10", username="deploy", auth_type="password", credentials="x"
    )
    db.add(server)
    await db.flush()
    dep = Deployment(
        name="api", server_id=server.id, image="web:1", internal_port=80, status="running"
    )
    db.add(dep)
    await db.flush()
    release = Release(
        deployment_id=dep.id,
        number=1,
        reason="create",
        image="web:1",
        status="succeeded",
        container_name="dm-api-r1",
    )
    db.add(release)
    await db.flush()
    dep.current_release_id = release.id
    await db.commit()
    return {"server": server.id, "deployment": dep.id}


def _record(client: TestClient, subject: Subject, *seen: Seen, **kw: Any) -> list[str]:
    async def go(db: AsyncSession) -> list[str]:
        found = await rounds.record(db, subject, list(seen), **kw)
        await db.commit()
        return [c.event for c in found]

    return list(run_in_app(client, go))


def test_a_change_is_recorded_and_announced_once_however_often_it_is_seen(
    admin: TestClient,
) -> None:
    ids = run_in_app(admin, _world)
    dep = Subject(DEPLOYMENT, ids["deployment"], "api on web-1")
    assert _record(admin, dep, Seen("container", OK, "running")) == []  # first look: silent
    exited = Seen("container", "exited", "the container dm-api-r1 exited (exit code 137)")
    assert _record(admin, dep, exited) == ["deployment.exited"]
    for _ in range(3):
        assert _record(admin, dep, exited) == []
    assert _record(admin, dep, Seen("container", OK, "running")) == ["deployment.recovered"]
    counts = run_in_app(admin, _counts)
    assert counts["events"] == ["deployment.exited", "deployment.recovered"]
    assert counts["activity"] == ["deployment.exited", "deployment.recovered"]
    assert counts["changes"] == 2
    activity = admin.get(f"/api/deployments/{ids['deployment']}/activity").json()
    texts = [a["message"] for a in activity if a["actor"] == "monitor"]
    assert any("api on web-1: not running: the container dm-api-r1 exited" in t for t in texts)
    assert any(t.startswith("api on web-1: healthy again (was not running since") for t in texts)


def test_a_failure_a_person_already_announced_is_logged_not_announced_again(
    admin: TestClient,
) -> None:
    ids = run_in_app(admin, _world)
    server = Subject(SERVER, ids["server"], "web-1")
    down = Seen("reachability", "unreachable", "refused")
    assert _record(admin, server, down, announced={"reachability"}) == ["server.unreachable"]
    assert run_in_app(admin, _counts)["events"] == []
    assert _record(admin, server, Seen("reachability", OK, "SSH answers")) == ["server.recovered"]
    assert run_in_app(admin, _counts)["events"] == ["server.recovered"]


def test_a_change_another_monitor_stored_first_is_not_announced_twice(admin: TestClient) -> None:
    ids = run_in_app(admin, _world)
    dep = Subject(DEPLOYMENT, ids["deployment"], "api")
    _record(admin, dep, Seen("container", OK, "running"))
    exited = Seen("container", "exited", "gone")

    async def race(db: AsyncSession) -> list[str]:
        await service.known_of(db, DEPLOYMENT, dep.id)  # this monitor read "ok" ...
        await db.commit()
        async with admin.app.state.context.sessions() as other:  # type: ignore[attr-defined]
            await service.record(other, dep, [exited])  # ... another stored "exited" meanwhile
            await other.commit()
        found = await service.record(db, dep, [exited])  # compare-and-set: lost
        await db.commit()
        return [c.event for c in found]

    assert run_in_app(admin, race) == []
    assert run_in_app(admin, _counts)["events"] == ["deployment.exited"]


def test_stopped_deployments_and_deleted_servers_are_forgotten(admin: TestClient) -> None:
    ids = run_in_app(admin, _world)
    _record(admin, Subject(DEPLOYMENT, ids["deployment"], "api"), Seen("container", "exited", ""))
    _record(admin, Subject(SERVER, 999, "gone"), Seen("reachability", "unreachable", ""))

    async def stop_and_round(db: AsyncSession) -> list[tuple[str, int]]:
        dep = await db.get(Deployment, ids["deployment"])
        assert dep is not None
        dep.status = "stopped"
        await db.commit()
        context = admin.app.state.context  # type: ignore[attr-defined]
        await rounds.check_deployments(context)
        await rounds.check_servers(context)  # web-1 has no pinned key: not watched
        rows = await db.execute(select(MonitorState.subject_kind, MonitorState.subject_id))
        return [(k, i) for k, i in rows.all()]

    assert run_in_app(admin, stop_and_round) == []


def test_a_server_round_marks_an_unreachable_server_once(admin: TestClient) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    host_key = key.export_public_key().decode().strip()
    res = admin.post(
        "/api/servers",
        json={
            "name": "closed",
            "host": "127.0.0.1",
            "port": closed_port(),
            "username": "root",
            "auth_type": "key",
            "private_key": key.export_private_key().decode(),
            "host_key": host_key,
        },
    )
    assert res.status_code == 201, res.text
    server_id = res.json()["id"]
    edited = res.json()["updated_at"]

    async def three_rounds(db: AsyncSession) -> None:
        for _ in range(3):
            await rounds.check_servers(admin.app.state.context)  # type: ignore[attr-defined]

    run_in_app(admin, three_rounds)
    assert run_in_app(admin, _counts)["events"] == ["server.unreachable"]
    server = admin.get(f"/api/servers/{server_id}").json()
    assert server["last_check_ok"] is False
    assert "nothing accepts connections" in server["last_check_message"]
    assert server["updated_at"] == edited  # a check is not an edit
    overview = admin.get("/api/ops/overview").json()["monitoring"]
    (listed,) = overview["servers"]
    assert listed["name"] == "closed" and listed["state"] == "unreachable"
    assert listed["summary"].startswith("unreachable since ")


def test_the_overview_and_the_pages_show_the_state_and_since_when(admin: TestClient) -> None:
    ids = run_in_app(admin, _world)
    then = utcnow() - timedelta(minutes=12)
    _record(
        admin,
        Subject(SERVER, ids["server"], "web-1"),
        Seen("reachability", OK, "SSH answers"),
        Seen("disk", "full", "93% used on /var/lib/docker (1.4 GiB free of 20.0 GiB)"),
        now=then,
    )
    _record(
        admin,
        Subject(DEPLOYMENT, ids["deployment"], "api on web-1"),
        Seen("container", "unhealthy", "health check: HTTP 500 on /, expected 200"),
        now=then,
    )
    stamp = then.strftime("%H:%M UTC")
    data = admin.get("/api/ops/overview").json()["monitoring"]
    (server,) = data["servers"]
    assert (
        server["state"] == "full"
        and server["summary"] == f"disk almost full since {stamp} (12 min)"
    )
    assert {c["check"]: c["state"] for c in server["checks"]} == {
        "reachability": OK,
        "disk": "full",
    }
    (dep,) = data["deployments"]
    assert dep["name"] == "api" and dep["state"] == "unhealthy"
    assert dep["detail"] == "health check: HTTP 500 on /, expected 200"

    home = admin.get("/app").text
    assert 'data-testid="monitoring"' in home
    assert 'data-server="web-1" data-state="full"' in home
    assert 'data-deployment="api" data-state="unhealthy"' in home
    assert '">disk almost full</span>' in home and '">unhealthy</span>' in home
    assert home.count(f"since {stamp} (12 min)") == 2
    servers = admin.get("/app/server-review").text
    assert 'data-testid="monitor-state" data-state="full"' in servers
    assert "93% used on /var/lib/docker" in servers
    page = admin.get(f"/deployments/{ids['deployment']}").text
    assert 'data-testid="monitor-state" data-state="unhealthy"' in page
    assert f"since {stamp} (12 min): health check: HTTP 500 on /, expected 200" in page
    assert 'data-testid="server-monitor-state"' in page  # its server's disk
