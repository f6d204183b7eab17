"""Continuous monitoring against a real lab host, with rounds every half second: a container
killed with `docker kill` and a stopped sshd are each one change (one activity entry, one
notification, one webhook delivery) however many rounds see them, and so is each recovery;
the pages say what holds and since when."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.app import create_app
from deploymate.monitoring.models import MonitorState
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.e2e.conftest import key_server
from tests.e2e.test_webhooks import Receiver
from tests.support.api import login, run_in_app
from tests.support.deploy import fast_health, job_text, wait_job
from tests.support.lab import LabHost

ROUND = 0.5  # seconds between monitoring rounds here (60 and 30 by default)
ROUNDS = 6  # rounds waited after a change to see that it is not announced again
EVENTS = [
    "server.unreachable",
    "server.recovered",
    "deployment.exited",
    "deployment.restarting",
    "deployment.unhealthy",
    "deployment.recovered",
]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory,
    receiver: Receiver,
    lab_host: LabHost,
    test_images: dict[str, str],
) -> Iterator[dict[str, Any]]:
    """The app with short rounds, a webhook for the monitoring events, the lab host as a
    server and a deployment serving on it."""
    tmp = tmp_path_factory.mktemp("monitoring")
    settings = make_settings(
        tmp,
        f"sqlite+aiosqlite:///{tmp / 'dm.db'}",
        server_credentials_key=Fernet.generate_key().decode(),
        ssh_known_hosts_file=tmp / "known_hosts",
        ssh_allow_private=True,
        webhook_allow_private=True,
        monitor_server_seconds=ROUND,
        monitor_deployment_seconds=ROUND,
    )
    with TestClient(create_app(settings)) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
        res = client.post(
            "/api/admin/webhooks",
            json={"name": "ops", "url": receiver.url("/hooks/ops"), "events": EVENTS},
        )
        assert res.status_code == 201, res.text
        res = client.post("/api/servers", json=key_server(lab_host, "watched-host"))
        assert res.status_code == 201, res.text
        server_id = res.json()["id"]
        body = {
            "name": "watched",
            "server_id": server_id,
            "image": "dm-test/web:v1",
            "internal_port": 80,
            "health_check": fast_health(),
        }
        res = client.post("/api/deployments", json=body)
        assert res.status_code == 201, res.text
        job = wait_job(client, res.json()["job_id"])
        assert job["status"] == "succeeded", job_text(job)
        yield {"client": client, "server_id": server_id, "deployment_id": res.json()["id"]}


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def state_of(client: TestClient, kind: str, subject_id: int, check: str) -> str | None:
    async def read(db: AsyncSession) -> str | None:
        row = await db.execute(
            select(MonitorState.state).where(
                MonitorState.subject_kind == kind,
                MonitorState.subject_id == subject_id,
                MonitorState.check_name == check,
            )
        )
        return row.scalar_one_or_none()

    return run_in_app(client, read)  # type: ignore[no-any-return]


def announced(client: TestClient, receiver: Receiver, event: str, dep_id: int) -> dict[str, int]:
    """How often one event reached the webhook, the admin's notifications and the activity."""
    hooks = [r for r in receiver.at("/hooks/ops") if r["body"]["event"] == event]
    notes = [n for n in client.get("/api/notifications?limit=200").json() if n["event"] == event]
    activity = client.get(f"/api/deployments/{dep_id}/activity").json()
    return {
        "webhook": len(hooks),
        "notification": len(notes),
        "activity": len([a for a in activity if a["action"] == event]),
    }


def once_each(
    client: TestClient,
    receiver: Receiver,
    event: str,
    dep_id: int,
    activity: int = 1,
    times: int = 1,
) -> None:
    """The event arrives once more everywhere (`times` in all), and no more after several
    more rounds."""
    want = {"webhook": times, "notification": times, "activity": activity * times}
    wait_for(lambda: announced(client, receiver, event, dep_id) == want, f"{event} x{times}")
    time.sleep(ROUNDS * ROUND)
    assert announced(client, receiver, event, dep_id) == want


def test_a_killed_container_is_one_change_and_its_return_another(
    watched: dict[str, Any], receiver: Receiver, lab_host: LabHost
) -> None:
    client, dep_id = watched["client"], watched["deployment_id"]
    # The first healthy look is stored and says nothing.
    wait_for(lambda: state_of(client, "deployment", dep_id, "container") == "ok", "first look")
    assert receiver.at("/hooks/ops") == []

    lab_host.docker("kill", "dm-watched-r1")
    once_each(client, receiver, "deployment.exited", dep_id)
    (hook,) = [r["body"] for r in receiver.at("/hooks/ops")]
    assert hook["text"].startswith(
        "watched on watched-host: not running: the container dm-watched-r1 exited (exit code 137)"
    )
    assert hook["link"] == f"/deployments/{dep_id}"
    page = client.get(f"/deployments/{dep_id}").text
    assert 'data-testid="monitor-state" data-state="exited"' in page
    assert "not running</span> since " in page
    overview = client.get("/app").text
    assert 'data-deployment="watched" data-state="exited"' in overview

    lab_host.docker("start", "dm-watched-r1")
    once_each(client, receiver, "deployment.recovered", dep_id)
    recovered = [r["body"] for r in receiver.at("/hooks/ops")][-1]
    assert "watched on watched-host: healthy again (was not running since" in recovered["text"]
    assert 'data-state="ok"' in client.get(f"/deployments/{dep_id}").text
    assert len(receiver.at("/hooks/ops")) == 2  # nothing else happened

    # Its process killed: Docker's restart policy brings it back, and the restart count that
    # grew between two checks is a restart loop, until a check sees it steady again.
    pid = lab_host.docker("inspect", "--format", "{{.State.Pid}}", "dm-watched-r1").stdout
    os.kill(int(pid), signal.SIGKILL)
    once_each(client, receiver, "deployment.restarting", dep_id)
    once_each(client, receiver, "deployment.recovered", dep_id, times=2)
    assert state_of(client, "deployment", dep_id, "container") == "ok"


def test_a_stopped_sshd_is_one_change_and_its_return_another(
    watched: dict[str, Any], receiver: Receiver, lab_host: LabHost
) -> None:
    client, server_id, dep_id = watched["client"], watched["server_id"], watched["deployment_id"]
    wait_for(lambda: state_of(client, "server", server_id, "reachability") == "ok", "first look")
    assert state_of(client, "server", server_id, "docker") == "ok"
    assert state_of(client, "server", server_id, "disk") == "ok"
    before = len(receiver.at("/hooks/ops"))

    lab_host.stop_sshd()
    try:
        once_each(client, receiver, "server.unreachable", dep_id, activity=0)
        hook = receiver.at("/hooks/ops")[before]["body"]
        assert hook["text"].startswith("Server watched-host: unreachable: ")
        assert "is not reachable" in hook["text"]
        page = client.get("/app/server-review").text
        assert 'data-testid="monitor-state" data-state="unreachable"' in page
        assert "unreachable since " in page
        assert 'data-server="watched-host" data-state="unreachable"' in client.get("/app").text
        dep_page = client.get(f"/deployments/{dep_id}").text
        assert 'data-testid="server-monitor-state"' in dep_page
        # Its deployment cannot be checked meanwhile: it stays as it was, no alarm.
        assert state_of(client, "deployment", dep_id, "container") == "ok"
    finally:
        lab_host.start_sshd()
    once_each(client, receiver, "server.recovered", dep_id, activity=0)
    assert (
        "Server watched-host: reachable again (was unreachable since"
        in (receiver.at("/hooks/ops")[-1]["body"]["text"])
    )
    assert len(receiver.at("/hooks/ops")) == before + 2
    server = client.get(f"/api/servers/{server_id}").json()
    assert server["last_check_ok"] is True and server["last_check_message"].startswith("ok; Docker")
    own = client.get(f"/app/server-review/{server_id}/diagnostics").text
    assert 'data-testid="monitor-checks"' in own
    assert "reachability: ok</span> since " in own and "disk: ok</span> since " in own
    assert own.count('">server.unreachable</span>') == 1
    assert own.count('">server.recovered</span>') == 1
