"""The apps API: a spec stored from YAML or JSON text, refused with every problem's line and
column, servers checked against the caller's; secrets per environment, write-only."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.apps.models import AppSecret
from deploymate.auth.models import User
from deploymate.servers.models import Server
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import login, member_headers, run_in_app
from tests.unit.test_app_spec import BASE

SECRET = "postgres://shop:s3cret-Value-91@db/shop"


@pytest.fixture
def admin(client: TestClient) -> TestClient:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)

    async def add_servers(db: AsyncSession) -> None:
        admin_id = (await db.execute(select(User.id).where(User.username == "admin"))).scalar_one()
        for name in ("staging-1", "prod-1", "prod-2"):
            db.add(
                Server(
                    name=name,
                    host=f"{name}.example.test",
                    username="deploy",
                    auth_type="password",
                    credentials="gAAAAA-not-read-here",
                    owner_id=admin_id,
                )
            )
        await db.commit()

    run_in_app(client, add_servers)
    return client


def test_a_spec_creates_an_app_and_a_new_spec_updates_it(admin: TestClient) -> None:
    created = admin.post("/api/apps", json={"spec": BASE})
    assert created.status_code == 201, created.text
    app = created.json()
    assert app["name"] == "shop" and app["services"] == ["web", "worker"]
    assert app["environments"]["production"] == {
        "kind": "production",
        "servers": ["prod-1", "prod-2"],
    }
    assert app["spec_text"] == BASE
    again = admin.post(
        "/api/apps", json={"spec": BASE.replace("LOG_LEVEL: info", "LOG_LEVEL: debug")}
    )
    assert again.status_code == 200 and again.json()["spec"]["env"] == {"LOG_LEVEL": "debug"}
    # JSON is accepted too.
    as_json = json.dumps({**again.json()["spec"], "app": "shop-json"})
    assert admin.post("/api/apps", json={"spec": as_json}).status_code == 201
    assert [a["name"] for a in admin.get("/api/apps").json()] == ["shop", "shop-json"]
    assert admin.get("/api/apps/shop").json()["id"] == app["id"]
    assert admin.get("/api/apps/nope").status_code == 404


def test_a_bad_spec_is_a_422_with_lines_and_columns_and_changes_nothing(admin: TestClient) -> None:
    bad = BASE.replace("port: 8000", "port: 80a").replace("rollout: canary", "rollot: canary")
    res = admin.post("/api/apps", json={"spec": bad})
    assert res.status_code == 422, res.text
    body = res.json()
    assert body["code"] == "spec_invalid" and body["field"] == "spec"
    assert body["detail"].startswith("spec: deploymate.yaml:5:11: services.web.port: expected")
    assert [(p["line"], p["column"], p["path"]) for p in body["problems"]] == [
        (5, 11, "services.web.port"),
        (19, 5, "environments.production.rollot"),
    ]
    assert admin.get("/api/apps").json() == []
    unknown = admin.post("/api/apps", json={"spec": BASE.replace("prod-2", "prod-9")})
    assert unknown.status_code == 422
    assert "no server named prod-9" in unknown.json()["problems"][0]["message"]


def test_a_member_names_only_their_own_servers_and_sees_only_their_apps(admin: TestClient) -> None:
    assert admin.post("/api/apps", json={"spec": BASE}).status_code == 201
    member = member_headers(admin, "mila")
    mine = admin.post(
        "/api/apps", json={"spec": BASE.replace("app: shop", "app: blog")}, headers=member
    )
    assert mine.status_code == 422 and "no server named staging-1" in mine.text
    assert admin.get("/api/apps", headers=member).json() == []
    assert admin.get("/api/apps/shop", headers=member).status_code == 404
    taken = admin.post("/api/apps", json={"spec": BASE}, headers=member)
    assert taken.status_code == 422  # its servers are not the member's either: nothing leaks


def test_secrets_are_stored_sealed_per_environment_and_never_returned(admin: TestClient) -> None:
    assert admin.post("/api/apps", json={"spec": BASE}).status_code == 201
    url = "/api/apps/shop/secrets/production/DATABASE_URL"
    assert admin.put(url, json={"value": SECRET}).status_code == 204
    assert admin.get("/api/apps/shop/secrets").json() == {
        "staging": [],
        "production": ["DATABASE_URL"],
    }
    for bad_url, code in (
        ("/api/apps/shop/secrets/qa/DATABASE_URL", 422),
        ("/api/apps/shop/secrets/production/LOG_LEVEL", 422),
        ("/api/apps/nope/secrets/production/DATABASE_URL", 404),
    ):
        res = admin.put(bad_url, json={"value": SECRET})
        assert res.status_code == code, (bad_url, res.text)
        assert SECRET not in res.text
    multiline = admin.put(url, json={"value": "a\nb"})
    assert multiline.status_code == 422
    outputs = [
        admin.get("/api/apps/shop").text,
        admin.get("/api/apps/shop/secrets").text,
        admin.get("/api/admin/audit").text,
    ]
    assert not [o for o in outputs if SECRET in o]

    async def stored(db: AsyncSession) -> list[str]:
        return list((await db.execute(select(AppSecret.value))).scalars())

    values = run_in_app(admin, stored)
    assert len(values) == 1 and SECRET not in values[0] and values[0].startswith("gAAAA")


def _targz(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_commits_source_is_stored_once_as_a_checked_gzip_tar(admin: TestClient) -> None:
    assert admin.post("/api/apps", json={"spec": BASE}).status_code == 201
    commit = "ab" * 20
    url = f"/api/apps/shop/sources/{commit}"
    assert admin.get(url).status_code == 404
    gz = {"Content-Type": "application/gzip"}
    made = admin.put(url, content=_targz({"web/Dockerfile": b"FROM scratch\n"}), headers=gz)
    assert made.status_code == 201 and made.json()["bytes"] > 0, made.text
    assert admin.get(url).status_code == 204
    # Refused, each with a clear error, nothing stored.
    other = "cd" * 20
    for body, headers, status, words in (
        (b"not a tarball", gz, 422, "not a gzip tar archive"),
        (_targz({"a": b"x"}), {"Content-Type": "application/json"}, 415, "application/gzip"),
    ):
        res = admin.put(f"/api/apps/shop/sources/{other}", content=body, headers=headers)
        assert res.status_code == status and words in res.text, res.text
    assert admin.put("/api/apps/shop/sources/HEAD", content=b"x", headers=gz).status_code == 422
    assert admin.get(f"/api/apps/shop/sources/{other}").status_code == 404
    assert admin.put(f"/api/apps/nope/sources/{other}", content=b"x", headers=gz).status_code == 404
