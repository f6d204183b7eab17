"""Users admin, upgrade requests, audit log, exports, saved views and the ops overview."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from deploymate.deps import require_admin
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import (
    audit_rows,
    create_user,
    login,
    member_headers,
    run_in_app,
    second_client,
)


@pytest.fixture
def admin(client: TestClient) -> Iterator[TestClient]:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    yield client


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes)
        elif isinstance(route, APIRoute):
            yield route


def _needs_admin(dependant: Any) -> bool:
    return dependant.call is require_admin or any(_needs_admin(d) for d in dependant.dependencies)


def test_a_member_gets_403_on_every_admin_route(admin: TestClient) -> None:
    member = member_headers(admin, "plain")
    anon = second_client(admin)
    routes = [
        r
        for r in _routes(admin.app.router.routes)
        if _needs_admin(r.dependant) or r.path.startswith(("/api/admin", "/api/ops"))
    ]
    assert len(routes) >= 12
    for route in routes:
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in route.methods:
            res = anon.request(method, path, headers=member, json={})
            assert res.status_code == 403, (method, route.path, res.status_code)
            assert _needs_admin(route.dependant), f"{route.path} lacks the admin check"


def test_users_filters_and_exports(admin: TestClient) -> None:
    for name, role in (("alice", "member"), ("bob", "admin"), ("carol", "member")):
        create_user(admin, admin.headers["X-CSRF-Token"], name, role=role)
    names = lambda res: [u["username"] for u in res.json()]  # noqa: E731
    assert names(admin.get("/api/admin/users?role=member")) == ["alice", "carol"]
    assert names(admin.get("/api/admin/users?q=AR")) == ["carol"]
    carol = admin.get("/api/admin/users?q=carol").json()[0]
    admin.patch(f"/api/admin/users/{carol['id']}", json={"is_active": False})
    assert names(admin.get("/api/admin/users?status=disabled")) == ["carol"]
    bad = admin.get("/api/admin/users?role=owner")
    assert bad.status_code == 422 and "role" in bad.json()["detail"]
    exported = admin.get("/api/admin/users?role=member&format=csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["username"] for r in rows] == ["alice", "carol"] and "password_hash" not in rows[0]
    as_json = admin.get("/api/admin/users?status=active&format=json").json()
    assert {u["username"] for u in as_json} == {"admin", "alice", "bob"}
    assert "users.export" in [r["action"] for r in audit_rows(admin)]


def test_disabling_ends_sessions_and_tokens_and_the_last_admin_is_protected(
    admin: TestClient,
) -> None:
    member = member_headers(admin, "dave")
    anon = second_client(admin)
    assert anon.get("/api/auth/me", headers=member).status_code == 200
    dave = admin.get("/api/admin/users?q=dave").json()[0]
    assert (
        admin.patch(f"/api/admin/users/{dave['id']}", json={"is_active": False}).status_code == 200
    )
    assert anon.get("/api/auth/me", headers=member).status_code == 401
    assert (
        admin.post(
            "/api/auth/login",
            json={"username": "dave", "password": "dave-second-pass-456"},
            headers={},
        ).status_code
        == 401
    )
    admin.patch(f"/api/admin/users/{dave['id']}", json={"is_active": True})
    me = admin.get("/api/auth/me").json()["user"]
    for change in ({"is_active": False}, {"role": "member"}):
        res = admin.patch(f"/api/admin/users/{me['id']}", json=change)
        assert res.status_code == 409 and res.json()["code"] == "last_admin"
    assert admin.get("/api/auth/me").json()["user"]["role"] == "admin"


def test_reset_password_gives_a_temporary_one_and_ends_sessions(admin: TestClient) -> None:
    member = member_headers(admin, "erin")
    erin = admin.get("/api/admin/users?q=erin").json()[0]
    temp = admin.post(f"/api/admin/users/{erin['id']}/reset-password").json()["temporary_password"]
    assert second_client(admin).get("/api/auth/me", headers=member).status_code == 401
    fresh = second_client(admin)
    login(fresh, "erin", temp)
    assert fresh.get("/api/auth/me").json()["user"]["must_change_password"] is True
    assert temp not in repr(audit_rows(admin))


def test_bulk_actions_report_each_item(admin: TestClient) -> None:
    ids = [create_user(admin, admin.headers["X-CSRF-Token"], n)["user"]["id"] for n in ("f1", "f2")]
    me = admin.get("/api/auth/me").json()["user"]["id"]
    results = admin.post(
        "/api/admin/users/bulk", json={"action": "disable", "ids": [*ids, 9999, me]}
    ).json()
    assert [(r["id"], r["ok"]) for r in results] == [
        (ids[0], True),
        (ids[1], True),
        (9999, False),
        (me, False),
    ]
    assert results[2]["detail"] == "no such user" and "last active admin" in results[3]["detail"]
    assert admin.get("/api/auth/me").status_code == 200
    role = admin.post(
        "/api/admin/users/bulk", json={"action": "set_role", "ids": ids, "role": "admin"}
    ).json()
    assert all(r["ok"] for r in role)
    missing_role = admin.post("/api/admin/users/bulk", json={"action": "set_role", "ids": ids})
    assert missing_role.status_code == 422 and "role" in missing_role.json()["detail"]
    empty = admin.post("/api/admin/users/bulk", json={"action": "enable", "ids": []})
    assert empty.status_code == 422 and "ids" in empty.json()["detail"]


def test_upgrade_requests_flow(admin: TestClient) -> None:
    member = member_headers(admin, "gina")
    anon = second_client(admin)
    res = anon.post(
        "/api/upgrade-requests",
        headers=member,
        json={"kind": "local_deployments", "reason": "I deploy to the staging box"},
    )
    assert res.status_code == 201, res.text
    dup = anon.post(
        "/api/upgrade-requests",
        headers=member,
        json={"kind": "local_deployments", "reason": "again"},
    )
    assert dup.status_code == 409
    second = anon.post(
        "/api/upgrade-requests", headers=member, json={"kind": "admin_role", "reason": "on call"}
    )
    inbox = admin.get("/api/admin/upgrade-requests?status=pending").json()
    assert {r["kind"] for r in inbox} == {"local_deployments", "admin_role"} and inbox[0][
        "username"
    ] == "gina"
    assert (
        admin.get("/api/admin/upgrade-requests?kind=admin_role&q=on%20call").json()[0]["id"]
        == second.json()["id"]
    )
    ok = admin.post(
        f"/api/admin/upgrade-requests/{res.json()['id']}/decision",
        json={"decision": "approve", "note": "go ahead"},
    )
    assert ok.status_code == 200 and ok.json()["status"] == "approved"
    gina = admin.get("/api/admin/users?q=gina").json()[0]
    assert gina["can_deploy_local"] is True and gina["role"] == "member"
    bulk = admin.post(
        "/api/admin/upgrade-requests/bulk",
        json={
            "ids": [second.json()["id"], res.json()["id"], 777],
            "decision": "reject",
            "note": "not now",
        },
    ).json()
    assert [r["ok"] for r in bulk] == [True, False, False]
    assert "already approved" in bulk[1]["detail"]
    mine = anon.get("/api/upgrade-requests", headers=member).json()
    assert {(r["kind"], r["status"]) for r in mine} == {
        ("local_deployments", "approved"),
        ("admin_role", "rejected"),
    }
    assert admin.get("/api/admin/users?q=gina").json()[0]["role"] == "member"
    actions = [r["action"] for r in audit_rows(admin)]
    assert "upgrade_request.approved" in actions and "upgrade_request.rejected" in actions


def test_audit_log_filters_pages_and_exports(admin: TestClient) -> None:
    for name in ('=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(1)"):
        admin.post(
            "/api/auth/login", json={"username": name, "password": "wrong-password-1"}, headers={}
        )
    failures = admin.get("/api/admin/audit?action=auth.login&outcome=failure").json()
    assert failures["total"] == 4 and len(failures["items"]) == 4
    paged = admin.get("/api/admin/audit?per_page=2&page=2").json()
    assert paged["page"] == 2 and len(paged["items"]) == 2 and paged["total"] >= 6
    text = admin.get("/api/admin/audit?q=hyperlink").json()
    assert text["total"] == 1
    assert admin.get("/api/admin/audit?since=2999-01-01T00:00:00Z").json()["total"] == 0
    for bad in (
        "since=yesterday",
        "until=2026-13-45",
        "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
    ):
        res = admin.get(f"/api/admin/audit?{bad}")
        assert res.status_code == 422 and bad.split("=")[0] in res.json()["detail"], bad
    exported = admin.get("/api/admin/audit?action=auth.login&outcome=failure&format=csv")
    actors = [r["actor_name"] for r in csv.DictReader(io.StringIO(exported.text))]
    assert sorted(actors) == sorted(['\'=HYPERLINK("http://x")', "'+1+1", "'-2", "'@SUM(1)"])
    as_json = admin.get("/api/admin/audit?outcome=failure&format=json").json()
    assert len(as_json) == 4
    assert "audit.export" in [r["action"] for r in audit_rows(admin)]


def test_audit_rows_cannot_be_changed_by_the_application(admin: TestClient) -> None:
    from sqlalchemy import select

    from deploymate.audit.models import AuditEvent

    async def tamper(db: Any, mode: str) -> None:
        row = (await db.execute(select(AuditEvent).limit(1))).scalar_one()
        if mode == "update":
            row.outcome = "failure"
        else:
            await db.delete(row)
        await db.commit()

    for mode in ("update", "delete"):
        with pytest.raises(PermissionError):
            run_in_app(admin, tamper, mode)


def test_saved_views_are_per_user_and_page(admin: TestClient) -> None:
    res = admin.post(
        "/api/views",
        json={
            "page": "audit",
            "name": "failed logins",
            "query": "action=auth.login&outcome=failure",
        },
    )
    assert res.status_code == 201
    admin.post("/api/views", json={"page": "users", "name": "admins", "query": "role=admin"})
    views = admin.get("/api/views?page=audit").json()
    assert [(v["name"], v["query"]) for v in views] == [
        ("failed logins", "action=auth.login&outcome=failure")
    ]
    member = member_headers(admin, "hank")
    assert second_client(admin).get("/api/views?page=audit", headers=member).json() == []
    assert (
        second_client(admin).delete(f"/api/views/{views[0]['id']}", headers=member).status_code
        == 404
    )
    assert admin.delete(f"/api/views/{views[0]['id']}").status_code == 204
    bad = admin.post("/api/views", json={"page": "nope", "name": "x", "query": ""})
    assert bad.status_code == 422 and "page" in bad.json()["detail"]


def test_ops_overview_shape(admin: TestClient) -> None:
    data = admin.get("/api/ops/overview").json()
    assert set(data) >= {
        "servers",
        "deployments",
        "failing_deployments",
        "unreachable_servers",
        "jobs_24h",
        "recent_activity",
    }
    assert data["servers"]["total"] == 0 and data["jobs_24h"]["failed"] == 0


def test_a_members_server_limit_and_the_more_servers_request(admin: TestClient) -> None:
    import asyncssh

    member = member_headers(admin, "ivy")
    anon = second_client(admin)
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()

    def add(n: int) -> Any:
        return anon.post(
            "/api/servers",
            headers=member,
            json={
                "name": f"ivy-{n}",
                "host": f"ivy{n}.example.test",
                "username": "deploy",
                "auth_type": "key",
                "private_key": key,
            },
        )

    assert [add(n).status_code for n in range(3)] == [201, 201, 201]
    refused = add(3)
    assert refused.status_code == 403 and refused.json()["code"] == "server_limit"
    ask = anon.post(
        "/api/upgrade-requests", headers=member, json={"kind": "more_servers", "reason": "new app"}
    )
    admin.post(
        f"/api/admin/upgrade-requests/{ask.json()['id']}/decision", json={"decision": "approve"}
    )
    assert add(3).status_code == 201
    assert admin.get("/api/admin/users?q=ivy").json()[0]["server_limit"] == 8
