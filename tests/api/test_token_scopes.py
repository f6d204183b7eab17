"""API token scopes and expiry: a CI token with `deploy:staging` reads, deploys to staging and
nothing else (no ship, no production, no other write); a token made without scopes keeps its
owner's full rights, as every token made before scopes did; an expired token says so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.apps.models import App, AppSecret
from deploymate.auth.models import ApiToken
from deploymate.core.db import utcnow
from tests.api.test_apps_api import SECRET
from tests.api.test_apps_api import admin as admin
from tests.support.api import run_in_app
from tests.unit.test_app_spec import BASE


def _token(client: TestClient, **body: object) -> dict[str, str]:
    res = client.post("/api/auth/tokens", json={"name": "ci", **body})
    assert res.status_code == 201, res.text
    return {"Authorization": f"Bearer {res.json()['token']}"}


def _stored(client: TestClient) -> tuple[str, list[str]]:
    async def read(db: AsyncSession) -> tuple[str, list[str]]:
        spec = (await db.execute(select(App.spec_text))).scalar_one()
        names = list((await db.execute(select(AppSecret.name))).scalars())
        return spec, names

    return run_in_app(client, read)


def test_a_deploy_staging_token_gets_403_on_ship_production_and_other_writes(
    admin: TestClient,
) -> None:
    assert admin.post("/api/apps", json={"spec": BASE}).status_code == 201
    ci = _token(admin, scopes=["deploy:staging"], expires_in_days=30)
    listed = admin.get("/api/auth/tokens").json()[-1]
    assert listed["scopes"] == ["deploy:staging"] and listed["expires_at"] is not None
    # It reads.
    assert admin.get("/api/apps/shop", headers=ci).status_code == 200
    assert admin.get("/api/servers", headers=ci).status_code == 200
    before = _stored(admin)
    for method, url, body in (
        ("POST", "/api/apps/shop/ship", {"confirm": "shop"}),
        ("POST", "/api/apps/shop/rollback", {"environment": "production", "confirm": "shop"}),
        ("POST", "/api/apps/shop/run", {"environment": "production", "command": ["true"]}),
        ("PUT", "/api/apps/shop/secrets/production/DATABASE_URL", {"value": SECRET}),
        ("POST", "/api/servers", {"name": "x", "host": "x.test", "username": "d"}),
        ("POST", "/api/auth/tokens", {"name": "wider"}),
        ("POST", "/api/approvals/1/approve", {}),
    ):
        res = admin.request(method, url, json=body, headers=ci)
        assert res.status_code == 403, (url, res.text)
        assert res.json()["code"] == "token_scope", res.text
        assert "deploy:staging" in res.json()["detail"] and SECRET not in res.text
    # A deploy to production is never a deploy; the spec sent with a refused one is not kept.
    changed = BASE.replace("LOG_LEVEL: info", "LOG_LEVEL: debug")
    to_production = admin.post(
        "/api/apps/shop/deploy",
        json={"environment": "production", "spec": changed, "commit": "abc1234"},
        headers=ci,
    )
    assert to_production.status_code == 403 and "deploy:production" in to_production.text
    assert _stored(admin) == before
    # What it is for: staging's secrets (and its deploys, on lab hosts in tests/e2e).
    staging = "/api/apps/shop/secrets/staging/DATABASE_URL"
    assert admin.put(staging, json={"value": SECRET}, headers=ci).status_code == 204
    assert _stored(admin)[1] == ["DATABASE_URL"]


def test_a_read_token_only_reads_and_a_token_without_scopes_keeps_full_rights(
    admin: TestClient,
) -> None:
    assert admin.post("/api/apps", json={"spec": BASE}).status_code == 201
    reader = _token(admin, scopes=["read"])
    assert admin.get("/api/apps", headers=reader).status_code == 200
    denied = admin.put(
        "/api/apps/shop/secrets/staging/DATABASE_URL", json={"value": SECRET}, headers=reader
    )
    assert denied.status_code == 403 and denied.json()["code"] == "token_scope"
    # The tokens made before scopes existed have none: they act with the owner's full rights.
    full = _token(admin)
    assert admin.get("/api/auth/tokens").json()[-1]["scopes"] == []
    made = admin.post(
        "/api/servers?test=false",
        json={
            "name": "extra",
            "host": "extra.example.test",
            "username": "deploy",
            "auth_type": "password",
            "password": "pw-not-used-9",
        },
        headers=full,
    )
    assert made.status_code == 201, made.text
    prod = "/api/apps/shop/secrets/production/DATABASE_URL"
    assert admin.put(prod, json={"value": SECRET}, headers=full).status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["deploy:qa"]},
        {"scopes": ["admin"]},
        {"expires_in_days": 0},
        {"expires_in_days": 99999},
    ],
)
def test_unknown_scopes_and_bad_expiries_are_refused(
    admin: TestClient,
    body: dict[str, object],
) -> None:
    res = admin.post("/api/auth/tokens", json={"name": "ci", **body})
    assert res.status_code == 422, res.text
    assert admin.get("/api/auth/tokens").json() == []


def test_an_expired_token_is_refused_with_what_to_do(admin: TestClient) -> None:
    ci = _token(admin, scopes=["deploy:staging"], expires_in_days=1)
    assert admin.get("/api/apps", headers=ci).status_code == 200

    async def expire(db: AsyncSession) -> None:
        await db.execute(update(ApiToken).values(expires_at=utcnow() - timedelta(minutes=1)))
        await db.commit()

    run_in_app(admin, expire)
    res = admin.get("/api/apps", headers=ci)
    assert res.status_code == 401 and res.json()["code"] == "token_expired"
    assert "expired on" in res.json()["detail"] and "create a new one" in res.json()["detail"]
    page = admin.get("/app/tokens")
    assert "expired " in page.text and "deploy:staging" in page.text
