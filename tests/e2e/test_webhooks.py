"""Outgoing webhooks against a real HTTP receiver started by the test, and real deploys.

The only traffic sent is to receivers on 127.0.0.1 that these tests start (and to a closed
127.0.0.1 port for the "receiver down" case); link-local, loopback-when-disallowed and private
addresses are only validated and refused, never contacted.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deploymate.app import create_app
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.e2e.conftest import key_server
from tests.support.api import audit_rows, login
from tests.support.deploy import fast_health, job_text, wait_job
from tests.support.lab import LabHost

ENV_SECRET = "envT0ken-QQQ"
HOOK_SECRET = "hookT0ken-WWW"


class Receiver:
    """A real HTTP server on 127.0.0.1 recording every request it gets."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver._lock:
                    receiver.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )

            def _answer(self) -> None:
                self._record()
                if self.path.startswith("/redirect-meta"):
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                elif self.path.startswith("/redirect-self"):
                    self.send_response(302)
                    self.send_header("Location", receiver.url("/followed"))
                elif self.path.startswith("/fail"):
                    self.send_response(500)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = _answer
            do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, prefix: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def wait(self, prefix: str, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.at(prefix)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{prefix}: expected {count} requests, got {self.at(prefix)}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    yield instance
    instance.stop()


@pytest.fixture
def hook_client(tmp_path: Path, credentials_key: str, receiver: Receiver) -> Iterator[TestClient]:
    """The e2e app with private webhook targets allowed and a default endpoint in the env."""
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'dm.db'}",
        server_credentials_key=credentials_key,
        ssh_known_hosts_file=tmp_path / "known_hosts",
        webhook_allow_private=True,
        notification_webhook=receiver.url(f"/default/{ENV_SECRET}"),
    )
    with TestClient(create_app(settings)) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
        yield client


def add_hook(client: TestClient, name: str, url: str, events: list[str], **extra: Any) -> int:
    res = client.post(
        "/api/admin/webhooks", json={"name": name, "url": url, "events": events, **extra}
    )
    assert res.status_code == 201, res.text
    return int(res.json()["id"])


def deliveries(client: TestClient, hook_id: int) -> list[dict[str, Any]]:
    res = client.get(f"/api/admin/webhooks/{hook_id}/deliveries")
    assert res.status_code == 200, res.text
    return list(res.json())


def finished(client: TestClient, hook_id: int, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        rows = deliveries(client, hook_id)
        done = [r for r in rows if r["status"] != "pending"]
        return rows if len(done) >= count else None

    rows: list[dict[str, Any]] = wait_for(check, f"{count} finished deliveries of {hook_id}")
    return rows


def run_job(client: TestClient, res: Any) -> dict[str, Any]:
    assert res.status_code in (201, 202), res.text
    return wait_job(client, res.json()["job_id"])


def test_deploy_outcomes_reach_webhooks_and_the_owner(
    hook_client: TestClient, receiver: Receiver, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    client = hook_client
    every = add_hook(
        client,
        "deploys",
        receiver.url(f"/hooks/deploys/{HOOK_SECRET}"),
        ["deploy.succeeded", "deploy.failed", "deploy.rolled_back"],
    )
    add_hook(client, "failures", receiver.url("/hooks/failures"), ["deploy.failed"])
    add_hook(client, "off", receiver.url("/hooks/off"), ["deploy.succeeded"], enabled=False)
    res = client.post("/api/servers", json=key_server(lab_host, "hooked"))
    assert res.status_code == 201, res.text
    body = {
        "name": "notify",
        "server_id": res.json()["id"],
        "image": "dm-test/web:v1",
        "internal_port": 80,
        "health_check": fast_health(),
    }
    res = client.post("/api/deployments", json=body)
    dep_id = res.json()["id"]
    job = run_job(client, res)
    assert job["status"] == "succeeded", job_text(job)
    (first,) = receiver.wait("/hooks/deploys/", 1)
    payload = first["body"]
    assert payload["event"] == "deploy.succeeded"
    assert "notify on hooked: release 1 (dm-test/web:v1) is serving" in payload["text"]
    # Discord reads markdown: the same text with its markdown characters escaped, no pings
    assert r"notify on hooked: release 1 \(dm-test/web:v1\) is serving" in payload["content"]
    assert payload["allowed_mentions"] == {"parse": []}
    assert payload["link"] == f"/deployments/{dep_id}"
    assert first["method"] == "POST" and first["headers"]["content-type"] == "application/json"
    assert first["headers"]["host"] == f"127.0.0.1:{receiver.port}"
    assert first["headers"]["user-agent"].startswith("DeployMate/")
    # The default endpoint from the environment gets every event.
    (default,) = receiver.wait(f"/default/{ENV_SECRET}", 1)
    assert default["body"]["event"] == "deploy.succeeded"

    job = run_job(
        client,
        client.post(f"/api/deployments/{dep_id}/redeploy", json={"image": "dm-test/web:v2"}),
    )
    assert job["status"] == "succeeded", job_text(job)
    job = run_job(client, client.post(f"/api/deployments/{dep_id}/rollback"))
    assert job["status"] == "succeeded", job_text(job)
    job = run_job(
        client,
        client.post(
            f"/api/deployments/{dep_id}/redeploy", json={"image": "dm-test/unhealthy:http500"}
        ),
    )
    assert job["status"] == "failed"

    got = receiver.wait("/hooks/deploys/", 4)
    assert [r["body"]["event"] for r in got] == [
        "deploy.succeeded",
        "deploy.succeeded",
        "deploy.rolled_back",
        "deploy.failed",
    ]
    assert "rolled back; release 3 (dm-test/web:v1) is serving" in got[2]["body"]["text"]
    failed_text = got[3]["body"]["text"]
    assert "release 4 (dm-test/unhealthy:http500) failed:" in failed_text
    assert failed_text.endswith("; release 3 keeps serving")
    (failure,) = receiver.wait("/hooks/failures", 1)
    assert failure["body"] == got[3]["body"]
    assert receiver.wait("/default/", 4)
    time.sleep(0.5)
    assert receiver.at("/hooks/off") == []  # a disabled webhook gets nothing
    assert len(receiver.at("/hooks/failures")) == 1  # only its event

    history = finished(client, every, 4)
    assert [d["status"] for d in history] == ["succeeded"] * 4
    assert all(d["attempts"] == 1 and d["response_status"] == 200 for d in history)
    assert HOOK_SECRET not in json.dumps(history)
    listed = client.get("/api/admin/webhooks").text
    assert HOOK_SECRET not in listed and "deploys" in listed
    default_rows = client.get("/api/admin/webhook-deliveries?webhook=default").json()
    assert len(default_rows) == 4 and all(d["webhook_id"] is None for d in default_rows)
    assert ENV_SECRET not in json.dumps(default_rows)
    assert ENV_SECRET not in client.get("/api/admin/webhooks/default").text

    # In-app: the owner (here the admin who deployed) has them, unread, newest first.
    mine = client.get("/api/notifications").json()
    assert [n["event"] for n in mine] == [
        "deploy.failed",
        "deploy.rolled_back",
        "deploy.succeeded",
        "deploy.succeeded",
    ]
    assert all(n["link"] == f"/deployments/{dep_id}" for n in mine)
    assert client.get("/api/notifications/unread-count").json() == {"unread": 4}
    assert client.post(f"/api/notifications/{mine[0]['id']}/read").json()["read"]
    assert client.get("/api/notifications/unread-count").json() == {"unread": 3}
    assert client.post("/api/notifications/read-all").json() == {"marked": 3}
    assert client.get("/api/notifications?unread=true").json() == []
    assert HOOK_SECRET not in json.dumps(audit_rows(client))


def test_a_receiver_that_is_down_never_blocks_a_deploy(
    hook_client: TestClient, receiver: Receiver, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    client = hook_client
    down = add_hook(client, "down", f"http://127.0.0.1:{closed_port()}/hook", ["deploy.succeeded"])
    res = client.post("/api/servers", json=key_server(lab_host, "down-lab"))
    assert res.status_code == 201, res.text
    body = {
        "name": "unbothered",
        "server_id": res.json()["id"],
        "image": "dm-test/web:v1",
        "internal_port": 80,
        "health_check": fast_health(),
    }
    job = run_job(client, client.post("/api/deployments", json=body))
    assert job["status"] == "succeeded", job_text(job)
    (delivery,) = finished(client, down, 1)
    assert delivery["status"] == "failed" and delivery["attempts"] == 3
    assert delivery["response_status"] is None and delivery["error"]
    assert delivery["event"] == "deploy.succeeded"
    # The job was done before the webhook gave up (it never waited for the receiver).
    assert datetime.fromisoformat(job["finished_at"]) < datetime.fromisoformat(
        delivery["finished_at"]
    )
    deployment = client.get("/api/deployments").json()
    assert [d["status"] for d in deployment] == ["running"]
    # The other endpoint (the default) still got it.
    assert receiver.wait("/default/", 1)[0]["body"]["event"] == "deploy.succeeded"
    (test,) = [client.post(f"/api/admin/webhooks/{down}/test").json()]
    assert test["status"] == "failed" and test["attempts"] == 3


def test_test_action_redirects_and_checks_at_send_time(
    hook_client: TestClient, receiver: Receiver
) -> None:
    client = hook_client
    settings = client.app.state.context.settings  # type: ignore[attr-defined]
    ok = add_hook(client, "ok", receiver.url(f"/hooks/ok/{HOOK_SECRET}"), ["deploy.failed"])
    res = client.post(f"/api/admin/webhooks/{ok}/test")
    assert res.status_code == 200, res.text
    result = res.json()
    assert result["status"] == "succeeded" and result["attempts"] == 1
    assert result["response_status"] == 200 and result["event"] == "webhook.test"
    assert HOOK_SECRET not in res.text
    (got,) = receiver.at("/hooks/ok/")
    assert got["body"]["event"] == "webhook.test" and got["body"]["allowed_mentions"] == {
        "parse": []
    }
    assert "ok" in got["body"]["text"]

    # Redirects are never followed: not to the metadata address, not even to the receiver.
    meta = add_hook(client, "meta", receiver.url("/redirect-meta"), ["deploy.failed"])
    result = client.post(f"/api/admin/webhooks/{meta}/test").json()
    assert result["status"] == "failed" and result["response_status"] == 302
    assert result["attempts"] == 1 and "redirect not followed" in result["error"]
    hop = add_hook(client, "hop", receiver.url("/redirect-self"), ["deploy.failed"])
    result = client.post(f"/api/admin/webhooks/{hop}/test").json()
    assert result["status"] == "failed" and result["response_status"] == 302
    time.sleep(0.3)
    assert receiver.at("/followed") == [] and len(receiver.at("/redirect-")) == 2

    # A server error is retried: three attempts in all.
    failing = add_hook(client, "failing", receiver.url("/fail"), ["deploy.failed"])
    result = client.post(f"/api/admin/webhooks/{failing}/test").json()
    assert result["status"] == "failed" and result["attempts"] == 3
    assert result["response_status"] == 500 and len(receiver.at("/fail")) == 3

    # Checked again at send time: once loopback is disallowed nothing is sent.
    settings.webhook_allow_private = False
    try:
        before = len(receiver.requests)
        result = client.post(f"/api/admin/webhooks/{ok}/test").json()
        assert result["status"] == "failed" and result["attempts"] == 0
        assert result["error"].startswith("refused: 127.0.0.1 is a loopback address")
        assert len(receiver.requests) == before
        # ...and new URLs are refused, the metadata address always (422 naming `url`).
        for url in ("http://127.0.0.1/", "http://10.0.0.1/", "http://169.254.169.254/"):
            res = client.post(
                "/api/admin/webhooks", json={"name": "x", "url": url, "events": ["deploy.failed"]}
            )
            assert res.status_code == 422 and res.json()["detail"].startswith("url: "), res.text
    finally:
        settings.webhook_allow_private = True
    res = client.post(
        "/api/admin/webhooks",
        json={"name": "x", "url": "http://169.254.169.254/", "events": ["deploy.failed"]},
    )
    assert res.status_code == 422 and "always refused" in res.json()["detail"]
    res = client.post(
        "/api/admin/webhooks",
        json={"name": "x", "url": "ftp://127.0.0.1/", "events": ["deploy.failed"]},
    )
    assert res.status_code == 422 and res.json()["detail"].startswith("url: ")

    history = deliveries(client, ok)
    assert [d["status"] for d in history] == ["failed", "succeeded"]  # newest first
    tests = [r for r in audit_rows(client) if r["action"] == "webhook.test"]
    assert [t["outcome"] for t in tests] == ["success", "failure", "failure", "failure", "failure"]
    assert HOOK_SECRET not in json.dumps(audit_rows(client))

    # The console shows the result and the history.
    page = client.post(
        f"/app/webhooks/{ok}/test", data={"csrf_token": client.headers["X-CSRF-Token"]}
    )
    assert page.status_code == 200 and 'data-testid="test-result"' in page.text
    assert "succeeded" in page.text and HOOK_SECRET not in page.text
    assert page.text.count('data-testid="delivery-row"') == 3


def test_unreachable_server_reaches_the_webhook(
    hook_client: TestClient, receiver: Receiver
) -> None:
    client = hook_client
    add_hook(client, "servers", receiver.url("/hooks/servers"), ["server.unreachable"])
    body = {
        "name": "vanished",
        "host": "127.0.0.1",
        "port": closed_port(),
        "username": "root",
        "auth_type": "password",
        "password": "server-password-1",
    }
    res = client.post("/api/servers", json=body)
    assert res.status_code == 201, res.text
    check = client.post(f"/api/servers/{res.json()['id']}/test").json()
    assert check["failed_step"] == "reachability"
    (got,) = receiver.wait("/hooks/servers", 1)
    assert got["body"]["event"] == "server.unreachable"
    assert "Server vanished (127.0.0.1:" in got["body"]["text"]
    assert receiver.wait("/default/", 1)[0]["body"]["event"] == "server.unreachable"
    assert [n["event"] for n in client.get("/api/notifications").json()] == ["server.unreachable"]
