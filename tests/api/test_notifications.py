"""In-app notifications and the webhooks admin API, on SQLite and PostgreSQL.

No request leaves the machine here: bad webhook URLs are only validated and refused, and the
webhooks that are created point at a closed port on 127.0.0.1 and never receive an event.
Deliveries to real receivers are in tests/e2e/test_webhooks.py.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from deploymate.core import events
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import audit_rows, create_user, login, second_client, settle

SECRET = "s3cr3tT0ken-XYZZY"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def admin(client: TestClient) -> Iterator[TestClient]:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    yield client


def member(client: TestClient, name: str) -> tuple[int, dict[str, str]]:
    """A member (id, bearer headers); the client's admin session is restored afterwards."""
    temporary, permanent = f"{name}-temporary-pass-1", f"{name}-permanent-pass-2"
    user = create_user(client, client.headers["X-CSRF-Token"], name, password=temporary)
    client.cookies.clear()
    csrf = login(client, name, temporary)
    res = client.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": temporary, "new_password": permanent},
    )
    assert res.status_code == 200, res.text
    res = client.post(
        "/api/auth/tokens", json={"name": "t"}, headers={"X-CSRF-Token": res.json()["csrf_token"]}
    )
    assert res.status_code in (200, 201), res.text
    token = res.json()["token"]
    client.cookies.clear()
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    return int(user["user"]["id"]), {"Authorization": f"Bearer {token}"}


def publish(client: TestClient, event: str, text: str, **kwargs: Any) -> None:
    """Emit an event as a domain does (in its own transaction) and wait for its dispatch."""

    async def call() -> None:
        async with client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
            payload = {"text": text, "link": kwargs.get("link")}
            events.emit(db, event, {**payload, "user_ids": list(kwargs.get("user_ids", []))})
            await db.commit()

    assert client.portal is not None
    client.portal.call(call)
    settle(client)


def allow_private(client: TestClient, value: bool) -> None:
    client.app.state.context.settings.webhook_allow_private = value  # type: ignore[attr-defined]


# --- in-app notifications -----------------------------------------------------------------------


def test_notifications_reach_the_users_and_every_admin(admin: TestClient) -> None:
    alice_id, alice = member(admin, "alice")
    _, bob = member(admin, "bob")
    publish(
        admin, "deploy.failed", "web: release 2 failed", link="/deployments/1", user_ids=[alice_id]
    )
    publish(admin, "deploy.succeeded", "web: release 3 is serving", user_ids=[alice_id, alice_id])

    mine = admin.get("/api/notifications", headers=alice).json()
    assert [n["event"] for n in mine] == ["deploy.succeeded", "deploy.failed"]  # newest first
    assert mine[1]["title"] == "Deploy failed" and mine[1]["link"] == "/deployments/1"
    assert mine[1]["body"] == "web: release 2 failed" and not mine[1]["read"]
    assert admin.get("/api/notifications/unread-count", headers=alice).json() == {"unread": 2}
    # Admins get every notification once; other members get none.
    assert len(admin.get("/api/notifications").json()) == 2
    assert admin.get("/api/notifications", headers=bob).json() == []

    res = admin.post(f"/api/notifications/{mine[1]['id']}/read", headers=alice)
    assert res.status_code == 200 and res.json()["read"] and res.json()["read_at"]
    assert admin.get("/api/notifications/unread-count", headers=alice).json() == {"unread": 1}
    unread = admin.get("/api/notifications?unread=true", headers=alice).json()
    assert [n["id"] for n in unread] == [mine[0]["id"]]
    # Someone else's notification is not found, and stays unread.
    res = admin.post(f"/api/notifications/{mine[0]['id']}/read", headers=bob)
    assert res.status_code == 404
    assert admin.get("/api/notifications/unread-count", headers=alice).json() == {"unread": 1}
    assert admin.post("/api/notifications/999999/read", headers=alice).status_code == 404

    assert admin.post("/api/notifications/read-all", headers=alice).json() == {"marked": 1}
    assert admin.get("/api/notifications/unread-count", headers=alice).json() == {"unread": 0}
    assert admin.get("/api/notifications/unread-count").json() == {"unread": 2}  # admin's own
    assert admin.get("/api/notifications?limit=0").status_code == 422
    assert admin.get("/api/notifications").status_code == 200
    assert second_client(admin).get("/api/notifications").status_code == 401


def test_disabled_users_get_no_notifications(admin: TestClient) -> None:
    other = create_user(admin, admin.headers["X-CSRF-Token"], "admin2", role="admin")
    res = admin.patch(f"/api/admin/users/{other['user']['id']}", json={"is_active": False})
    assert res.status_code == 200, res.text
    publish(admin, "deploy.failed", "x failed", user_ids=[other["user"]["id"]])

    async def count(db: Any) -> int:
        from sqlalchemy import func, select

        from deploymate.notifications.models import Notification

        stmt = select(func.count()).where(Notification.user_id == other["user"]["id"])
        return int((await db.execute(stmt)).scalar_one())

    from tests.support.api import run_in_app

    assert run_in_app(admin, count) == 0
    assert admin.get("/api/notifications/unread-count").json() == {"unread": 1}


def test_unreachable_server_check_notifies_owner_once(admin: TestClient) -> None:
    _, alice = member(admin, "alice")
    admin.app.state.context.settings.ssh_allow_private = True  # type: ignore[attr-defined]  (127.0.0.1)
    body = {
        "name": "gone",
        "host": "127.0.0.1",
        "port": closed_port(),
        "username": "root",
        "auth_type": "password",
        "password": "server-password-1",
        "purpose": "staging",
    }
    res = admin.post("/api/servers", json=body, headers=alice)
    assert res.status_code == 201, res.text
    server_id = res.json()["id"]
    for _ in range(2):  # the same failure twice notifies once
        res = admin.post(f"/api/servers/{server_id}/test", headers=alice)
        assert res.status_code == 200 and res.json()["failed_step"] == "reachability", res.text
        settle(admin)
    mine = admin.get("/api/notifications", headers=alice).json()
    assert [n["event"] for n in mine] == ["server.unreachable"]
    assert "gone" in mine[0]["body"] and mine[0]["link"] == "/app/server-review"
    assert [n["event"] for n in admin.get("/api/notifications").json()] == ["server.unreachable"]


def test_upgrade_decision_notifies_the_member(admin: TestClient) -> None:
    _, alice = member(admin, "alice")
    res = admin.post(
        "/api/upgrade-requests",
        json={"kind": "local_deployments", "reason": "to try things locally"},
        headers=alice,
    )
    assert res.status_code == 201, res.text
    res = admin.post(
        f"/api/admin/upgrade-requests/{res.json()['id']}/decision",
        json={"decision": "reject", "note": "use staging"},
    )
    assert res.status_code == 200, res.text
    settle(admin)
    mine = admin.get("/api/notifications", headers=alice).json()
    assert [n["event"] for n in mine] == ["upgrade_request.decided"]
    assert "rejected" in mine[0]["body"] and "use staging" in mine[0]["body"]


# --- webhooks: validation (SSRF), CRUD, masking, audit ------------------------------------------

ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.1.1:8080/hook",
    "http://[::ffff:169.254.169.254]/",
    "http://[fe80::1]/",
    "http://0.0.0.0/",
    "http://100.100.100.200/",
]
PRIVATE = [
    "http://127.0.0.1/",
    "http://127.8.9.10:8080/x",
    "http://localhost/hook",
    "http://2130706433/",
    "http://[::1]/",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://[fd12:3456::1]/",
]
NOT_HTTP = [
    "ftp://example.org/hook",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "hooks.slack.com/x",
]


def _refused(admin: TestClient, url: str) -> str:
    res = admin.post(
        "/api/admin/webhooks", json={"name": "bad", "url": url, "events": ["deploy.failed"]}
    )
    assert res.status_code == 422, (url, res.text)
    detail: str = res.json()["detail"]
    assert detail.startswith("url: "), (url, detail)
    return detail


def test_webhook_urls_are_checked_against_ssrf(admin: TestClient) -> None:
    for url in ALWAYS_REFUSED:
        assert "always refused" in _refused(admin, url), url
    for url in PRIVATE:
        assert "DEPLOYMATE_WEBHOOK_ALLOW_PRIVATE" in _refused(admin, url), url
    for url in NOT_HTTP:
        _refused(admin, url)
    assert "spaces" in _refused(admin, "http://example.org/a b")
    assert admin.get("/api/admin/webhooks").json() == []

    allow_private(admin, True)  # loopback and private become allowed; link-local never does
    for url in ALWAYS_REFUSED + NOT_HTTP:
        _refused(admin, url)
    res = admin.post(
        "/api/admin/webhooks",
        json={
            "name": "lan",
            "url": "http://10.0.0.1/hook",
            "events": ["deploy.failed"],
            "enabled": False,
        },
    )
    assert res.status_code == 201, res.text  # validated only: nothing is ever sent to it
    hook_id = res.json()["id"]
    res = admin.patch(f"/api/admin/webhooks/{hook_id}", json={"url": "http://169.254.169.254/"})
    assert res.status_code == 422 and res.json()["detail"].startswith("url: ")
    assert admin.get(f"/api/admin/webhooks/{hook_id}").json()["url"] == "http://10.0.0.1/…"
    assert admin.delete(f"/api/admin/webhooks/{hook_id}").status_code == 204

    failures = [
        r
        for r in audit_rows(admin)
        if r["action"] == "webhook.create" and r["outcome"] == "failure"
    ]
    assert len(failures) == 2 * len(ALWAYS_REFUSED + NOT_HTTP) + len(PRIVATE) + 1
    assert {"host": "169.254.169.254"}.items() <= failures[0]["details"].items()
    update_failure = [r for r in audit_rows(admin) if r["action"] == "webhook.update"]
    assert update_failure[0]["outcome"] == "failure" and update_failure[0]["target"] == str(hook_id)


def test_webhook_body_validation(admin: TestClient) -> None:
    allow_private(admin, True)
    url = f"http://127.0.0.1:{closed_port()}/hook"
    cases = [
        ({"name": "x", "url": url, "events": ["deploy.exploded"]}, "events"),
        ({"name": "x", "url": url, "events": []}, "events"),
        ({"name": "x", "url": url, "events": ["webhook.test"]}, "events"),
        ({"name": "   ", "url": url, "events": ["deploy.failed"]}, "name"),
        ({"name": "x" * 101, "url": url, "events": ["deploy.failed"]}, "name"),
        ({"name": "x", "url": "http://x/" + "a" * 2100, "events": ["deploy.failed"]}, "url"),
        ({"name": "x", "url": url, "events": ["deploy.failed"], "secret": "y"}, "secret"),
        ({"url": url, "events": ["deploy.failed"]}, "name"),
    ]
    for body, field in cases:
        res = admin.post("/api/admin/webhooks", json=body)
        assert res.status_code == 422, (body, res.text)
        assert res.json()["detail"].startswith(f"{field}: "), (body, res.json())
    assert admin.get("/api/admin/webhooks").json() == []
    assert admin.patch("/api/admin/webhooks/4242", json={"enabled": False}).status_code == 404
    assert admin.delete("/api/admin/webhooks/4242").status_code == 404
    assert admin.post("/api/admin/webhooks/4242/test").status_code == 404
    assert admin.get("/api/admin/webhooks/4242/deliveries").status_code == 404
    assert admin.get("/api/admin/webhook-deliveries?webhook=abc").status_code == 422


def test_webhook_crud_masks_the_url_and_audits(admin: TestClient) -> None:
    allow_private(admin, True)
    port = closed_port()
    url = f"http://127.0.0.1:{port}/services/T000/B000/{SECRET}-abcd1234"
    res = admin.post(
        "/api/admin/webhooks",
        json={
            "name": "ops",
            "url": url,
            "events": ["deploy.failed", "deploy.failed", "server.unreachable"],
        },
    )
    assert res.status_code == 201, res.text
    hook = res.json()
    assert hook["url"] == f"http://127.0.0.1:{port}/…1234"
    assert hook["events"] == ["deploy.failed", "server.unreachable"] and hook["enabled"]
    assert hook["created_by"] == "admin" and hook["last_delivery"] is None

    res = admin.patch(
        f"/api/admin/webhooks/{hook['id']}",
        json={"name": "ops-2", "enabled": False, "events": ["deploy.succeeded"], "url": url + "x"},
    )
    assert res.status_code == 200, res.text
    assert res.json()["name"] == "ops-2" and not res.json()["enabled"]
    assert res.json()["events"] == ["deploy.succeeded"] and res.json()["url"].endswith("…234x")

    listed = admin.get("/api/admin/webhooks")
    assert [h["name"] for h in listed.json()] == ["ops-2"]
    assert admin.get(f"/api/admin/webhooks/{hook['id']}/deliveries").json() == []
    assert admin.get("/api/admin/webhook-deliveries?webhook=default").json() == []
    default = admin.get("/api/admin/webhooks/default").json()
    assert default["configured"] is False and "deploy.failed" in default["events"]

    # The secret part of the URL is in no response and no audit row.
    page = admin.get("/app/webhooks")
    assert page.status_code == 200 and "/…234x" in page.text
    audits = [r for r in audit_rows(admin) if r["action"].startswith("webhook.")]
    for text in (listed.text, res.text, page.text, json.dumps(audits)):
        assert SECRET not in text and "/T000/B000/" not in text
    assert [(r["action"], r["outcome"]) for r in audits] == [
        ("webhook.create", "success"),
        ("webhook.update", "success"),
    ]
    assert audits[0]["details"]["host"] == "127.0.0.1"
    assert sorted(audits[1]["details"]["changed"]) == ["enabled", "events", "name", "url"]

    assert admin.delete(f"/api/admin/webhooks/{hook['id']}").status_code == 204
    assert admin.get(f"/api/admin/webhooks/{hook['id']}").status_code == 404
    assert admin.get("/api/admin/webhooks").json() == []
    deleted = [r for r in audit_rows(admin) if r["action"] == "webhook.delete"]
    assert deleted[0]["target"] == str(hook["id"]) and SECRET not in json.dumps(deleted)


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes)
        elif isinstance(route, APIRoute):
            yield route


def test_member_gets_403_on_every_webhook_admin_route(admin: TestClient) -> None:
    allow_private(admin, True)
    res = admin.post(
        "/api/admin/webhooks",
        json={
            "name": "x",
            "url": f"http://127.0.0.1:{closed_port()}/h",
            "events": ["deploy.failed"],
        },
    )
    assert res.status_code == 201
    _, alice = member(admin, "alice")
    routes = [
        r
        for r in _routes(admin.app.router.routes)  # type: ignore[attr-defined]
        if r.path.startswith(("/api/admin/webhook", "/app/webhooks"))
    ]
    assert len(routes) >= 12
    for route in routes:
        path = re.sub(r"\{[^}]+\}", str(res.json()["id"]), route.path)
        for method in route.methods:
            answer = admin.request(method, path, headers=alice, json={})
            assert answer.status_code == 403, (method, route.path, answer.status_code)
    assert admin.get("/api/admin/webhooks").json()[0]["enabled"]  # nothing changed
    assert not [r for r in audit_rows(admin) if r["action"] == "webhook.test"]


def test_console_pages(admin: TestClient) -> None:
    csrf = admin.headers["X-CSRF-Token"]
    publish(admin, "deploy.failed", "web-1: release 2 failed", link="/deployments/7")
    publish(admin, "server.unreachable", "Server lab is unreachable", link="javascript:alert(1)")
    page = admin.get("/app/notifications")
    assert page.status_code == 200 and "2 unread" in page.text
    assert 'href="/deployments/7"' in page.text and "javascript:" not in page.text
    ids = re.findall(r'action="/app/notifications/(\d+)/read"', page.text)
    assert len(ids) == 2
    res = admin.post(
        f"/app/notifications/{ids[0]}/read", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert res.status_code == 303
    assert "1 unread" in admin.get("/app/notifications").text
    assert (
        admin.post(
            f"/app/notifications/{ids[1]}/read", data={}, headers={"X-CSRF-Token": ""}
        ).status_code
        == 403
    )
    res = admin.post(
        "/app/notifications/read-all",
        data={"csrf_token": csrf, "unread": "1"},
        follow_redirects=False,
    )
    assert res.status_code == 303 and res.headers["location"] == "/app/notifications?unread=1"
    assert "0 unread" in admin.get("/app/notifications?unread=1").text

    # Webhooks: a refused URL re-renders the form with the reason; a good one is listed masked.
    res = admin.post(
        "/app/webhooks",
        data={
            "csrf_token": csrf,
            "name": "meta",
            "url": "http://169.254.169.254/",
            "events": ["deploy.failed"],
        },
    )
    assert res.status_code == 422 and "always refused" in res.text
    allow_private(admin, True)
    port = closed_port()
    res = admin.post(
        "/app/webhooks",
        data={
            "csrf_token": csrf,
            "name": "ops",
            "url": f"http://127.0.0.1:{port}/hooks/{SECRET}-zz99",
            "events": ["deploy.failed", "deploy.succeeded"],
            "enabled": "true",
        },
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    page = admin.get(res.headers["location"])
    assert "Webhook ops created." in page.text and f"127.0.0.1:{port}/…zz99" in page.text
    assert SECRET not in page.text
    assert "Webhook ops created." not in admin.get("/app/webhooks").text  # said once
    hook_id = admin.get("/api/admin/webhooks").json()[0]["id"]
    res = admin.post(
        f"/app/webhooks/{hook_id}/enabled", data={"csrf_token": csrf, "enabled": "false"}
    )
    assert res.status_code == 200 and "Webhook ops disabled." in res.text
    assert res.history and res.history[0].status_code == 303  # a reload repeats nothing
    assert not admin.get(f"/api/admin/webhooks/{hook_id}").json()["enabled"]

    # Editing: the stored URL is never sent back; left empty it stays.
    edit = admin.get(f"/app/webhooks?edit={hook_id}")
    assert 'data-testid="webhook-edit-form"' in edit.text and SECRET not in edit.text
    res = admin.post(
        f"/app/webhooks/{hook_id}",
        data={"csrf_token": csrf, "name": "ops-2", "url": "", "events": ["deploy.succeeded"]},
    )
    assert res.status_code == 200 and "Webhook ops-2 saved." in res.text
    hook = admin.get(f"/api/admin/webhooks/{hook_id}").json()
    assert hook["name"] == "ops-2" and hook["events"] == ["deploy.succeeded"]
    assert hook["url"].endswith("…zz99") and not hook["enabled"]
    res = admin.post(
        f"/app/webhooks/{hook_id}",
        data={"csrf_token": csrf, "name": "ops-3", "url": "ftp://x", "events": []},
    )
    assert res.status_code == 422 and 'data-testid="webhook-edit-form"' in res.text
    assert 'data-field="url"' in res.text or 'data-field="events"' in res.text
    assert admin.get(f"/api/admin/webhooks/{hook_id}").json() == hook  # nothing saved
    res = admin.get(f"/app/webhooks?history={hook_id}")
    assert res.status_code == 200 and "Nothing sent yet." in res.text
    res = admin.post(f"/app/webhooks/{hook_id}/delete", data={"csrf_token": csrf})
    assert res.status_code == 422 and "confirmation" in res.text
    res = admin.post(f"/app/webhooks/{hook_id}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert res.status_code == 200 and "Webhook deleted." in res.text and res.history
    assert admin.get("/api/admin/webhooks").json() == []
