"""Admin console pages without JavaScript: users, upgrade inbox, audit, overview."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.support.api import create_user, login


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_users_page_bulk_and_saved_view(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    ids = [create_user(client, csrf, n)["user"]["id"] for n in ("ann", "ben")]
    page = client.get("/app/users")
    assert page.status_code == 200 and 'data-user="ann"' in page.text
    res = client.post(
        "/app/users/bulk",
        data={"csrf_token": _csrf(page.text), "action": "disable", "ids": [str(i) for i in ids]},
    )
    assert res.status_code == 200 and res.text.count("status-ok") >= 2
    assert client.get("/app/users?status=disabled").text.count('data-testid="user-row"') == 2
    saved = client.post(
        "/app/views",
        data={"csrf_token": csrf, "page": "users", "name": "off", "query": "status=disabled"},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/app/users?status=disabled"
    assert 'href="/app/users?status=disabled">off</a>' in client.get("/app/users").text
    bad = client.get("/app/users?role=owner")
    assert bad.status_code == 422 and "role" in bad.text


def test_created_user_gets_a_temporary_password_once(client: TestClient) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/app/users")
    res = client.post(
        "/app/users", data={"csrf_token": _csrf(page.text), "username": "cleo", "role": "member"}
    )
    assert 'data-testid="temporary-password"' in res.text
    assert 'data-testid="temporary-password"' not in client.get("/app/users").text
    evil = client.post("/app/users", data={"csrf_token": _csrf(page.text), "username": "<b>x</b>"})
    assert evil.status_code == 422 and "<b>x</b>" not in evil.text


def test_pages_are_admin_only_and_members_can_ask(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    create_user(client, csrf, "dora", password="dora-first-pass-123")
    client.cookies.clear()
    csrf = login(client, "dora", "dora-first-pass-123")
    client.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": "dora-first-pass-123", "new_password": "dora-second-pass-456"},
    )
    for path in ("/app/users", "/app/audit"):
        assert client.get(path).status_code == 403
    page = client.get("/app/upgrade-requests")
    assert (
        page.status_code == 200
        and "Send request" in page.text
        and 'data-testid="inbox"' not in page.text
    )
    res = client.post(
        "/app/upgrade-requests",
        data={
            "csrf_token": _csrf(page.text),
            "kind": "more_servers",
            "reason": "<script>alert(1)</script> need two more",
        },
    )
    assert "Request sent" in res.text and "<script>alert(1)</script>" not in res.text
    no_csrf = client.post("/app/upgrade-requests", data={"kind": "admin_role", "reason": "please"})
    assert no_csrf.status_code == 403


def test_audit_page_filters_and_bad_dates(client: TestClient) -> None:
    client.post("/api/auth/login", json={"username": "admin", "password": "wrong-password-1"})
    login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/app/audit?outcome=failure")
    assert page.status_code == 200 and page.text.count('data-testid="audit-row"') == 1
    bad = client.get("/app/audit?since=last-tuesday")
    assert bad.status_code == 422 and "since" in bad.text


def test_admin_overview_shows_operations(client: TestClient) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    assert 'data-testid="ops-overview"' in client.get("/app").text
