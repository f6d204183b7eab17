"""Access is checked on every operation and holds under concurrency (findings 14, 17, 20)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncssh
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from deploymate.admin import service as admin_service
from deploymate.admin.schemas import UserUpdate
from deploymate.auth.models import Role, User
from deploymate.core.caller import Caller
from deploymate.core.errors import Conflict, PermissionDenied
from deploymate.servers import service as servers
from deploymate.servers.models import Server
from deploymate.servers.schemas import ServerCreate
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import create_user, login, member_headers, run_in_app, second_client

# A registry that does not resolve: the deployment is recorded, its pull and its job fail fast.
MISSING_IMAGE = "registry.invalid/dm-test/not-there:v0"


@pytest.fixture
def admin(client: TestClient) -> Iterator[TestClient]:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    yield client


def _user_id(admin: TestClient, name: str) -> int:
    users = admin.get("/api/admin/users", params={"q": name}).json()
    return int(next(u["id"] for u in users if u["username"] == name))


def _wait(client: TestClient, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}", headers=headers).json()
        if job["status"] in ("succeeded", "failed", "interrupted"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def _local_deployment(client: TestClient, headers: dict[str, str], name: str) -> int:
    res = client.post(
        "/api/deployments",
        headers=headers,
        json={"name": name, "server_id": None, "image": MISSING_IMAGE, "internal_port": 80},
    )
    assert res.status_code == 201, res.text
    assert _wait(client, headers, res.json()["job_id"])["status"] == "failed"
    return int(res.json()["id"])


OPERATIONS = [
    ("PATCH", "", {"image": "dm-test/other:v1"}),
    ("POST", "/redeploy", {}),
    ("POST", "/rollback", {}),
    ("POST", "/stop", None),
    ("POST", "/start", None),
    ("POST", "/restart", None),
    ("DELETE", "", None),
]


def test_a_member_who_loses_local_deployments_can_no_longer_operate_one(
    admin: TestClient,
) -> None:
    mo = member_headers(admin, "mo")
    mo_id = _user_id(admin, "mo")
    api = second_client(admin)
    assert (
        api.post(
            "/api/deployments",
            headers=mo,
            json={"name": "early", "server_id": None, "image": MISSING_IMAGE, "internal_port": 80},
        ).json()["code"]
        == "local_not_allowed"
    )
    admin.patch(f"/api/admin/users/{mo_id}", json={"can_deploy_local": True})
    dep_id = _local_deployment(api, mo, "mine")
    admin.patch(f"/api/admin/users/{mo_id}", json={"can_deploy_local": False})
    before = api.get(f"/api/deployments/{dep_id}", headers=mo).json()
    for method, path, body in OPERATIONS:
        res = api.request(method, f"/api/deployments/{dep_id}{path}", headers=mo, json=body)
        assert res.status_code == 403, (method, path, res.text)
        assert res.json()["code"] == "local_not_allowed"
    after = api.get(f"/api/deployments/{dep_id}", headers=mo).json()
    assert after == before  # nothing changed, no job queued
    assert len(api.get(f"/api/deployments/{dep_id}/releases", headers=mo).json()) == 1


def test_a_demoted_admin_can_no_longer_operate_a_control_host_deployment(
    admin: TestClient,
) -> None:
    create_user(
        admin, admin.headers["X-CSRF-Token"], "ada", role="admin", password="ada-pass-1234x"
    )
    ada = second_client(admin)
    csrf = login(ada, "ada", "ada-pass-1234x")
    res = ada.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": "ada-pass-1234x", "new_password": "ada-pass-5678y"},
    )
    headers = {"X-CSRF-Token": res.json()["csrf_token"]}
    token = ada.post("/api/auth/tokens", json={"name": "t"}, headers=headers).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    dep_id = _local_deployment(ada, bearer, "adas")
    admin.patch(f"/api/admin/users/{_user_id(admin, 'ada')}", json={"role": "member"})
    res = ada.post(f"/api/deployments/{dep_id}/redeploy", headers=bearer)
    assert res.status_code == 403 and res.json()["code"] == "local_not_allowed"


def _run(client: TestClient, scenario: Any) -> Any:
    assert client.portal is not None
    return client.portal.call(scenario)


def test_concurrent_demotions_never_leave_zero_active_admins(admin: TestClient) -> None:
    for name in ("second", "third"):
        create_user(admin, admin.headers["X-CSRF-Token"], name, role="admin")
    context = admin.app.state.context  # type: ignore[attr-defined]

    async def scenario() -> list[str]:
        async with context.sessions() as db:
            ids = list(
                (await db.execute(select(User.id).where(User.role == Role.admin.value))).scalars()
            )

        async def demote(user_id: int) -> str:
            change = UserUpdate(role=Role.member)
            async with context.sessions() as db:
                try:
                    await admin_service.update_user(
                        db, caller=Caller.system(), user_id=user_id, change=change
                    )
                except Conflict as exc:
                    return exc.code
            return "demoted"

        return list(await asyncio.gather(*(demote(i) for i in ids)))

    for _ in range(3):  # every run: all three at once
        outcomes = _run(admin, scenario)
        assert outcomes.count("last_admin") >= 1, outcomes

        async def active_admins() -> int:
            async with context.sessions() as db:
                stmt = select(func.count()).where(User.role == "admin", User.is_active)
                return int((await db.execute(stmt)).scalar_one())

        assert _run(admin, active_admins) == 1, outcomes

        async def promote_all() -> None:
            async with context.sessions() as db:
                await db.execute(update(User).values(role="admin"))
                await db.commit()

        _run(admin, promote_all)


def test_concurrent_server_creations_never_exceed_a_members_limit(admin: TestClient) -> None:
    create_user(admin, admin.headers["X-CSRF-Token"], "quinn")
    quinn_id = _user_id(admin, "quinn")
    context = admin.app.state.context  # type: ignore[attr-defined]
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    quinn = Caller(user_id=quinn_id, username="quinn", role="member")

    async def scenario() -> list[str]:
        async def add(n: int) -> str:
            data = ServerCreate(
                name=f"quinn-{n}",
                host=f"quinn{n}.example.test",
                username="deploy",
                auth_type="key",
                private_key=key,
            )
            async with context.sessions() as db:
                try:
                    await servers.create(db, context=context, caller=quinn, data=data)
                except PermissionDenied as exc:
                    return exc.code
            return "created"

        return list(await asyncio.gather(*(add(n) for n in range(8))))

    outcomes = _run(admin, scenario)
    assert outcomes.count("created") == 3 and outcomes.count("server_limit") == 5, outcomes

    async def owned(db: Any) -> int:
        stmt = select(func.count()).select_from(Server).where(Server.owner_id == quinn_id)
        return int((await db.execute(stmt)).scalar_one())

    assert run_in_app(admin, owned) == 3


def test_a_members_overview_counts_only_what_they_can_see(admin: TestClient) -> None:
    _local_deployment(admin, {}, "admins-own")
    mo = member_headers(admin, "mo")
    api = second_client(admin)
    assert api.get("/api/deployments", headers=mo).json() == []
    page = api.get("/app", headers=mo)
    assert page.status_code == 200
    assert "0 deployment" not in page.text and "1 deployment(s)" not in page.text
    assert "Deploy a container image with a health check." in page.text  # not done for mo
    admin_page = admin.get("/app")
    assert "1 deployment(s)." in admin_page.text
