"""Previews per branch on a lab host: their own containers, domain, env and volumes; branches
that collide after slugging get two previews; an expired preview goes with its data."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.apps import previews
from deploymate.apps.models import AppPreview
from deploymate.core.db import utcnow
from tests.e2e.conftest import key_server
from tests.support.api import run_in_app
from tests.support.apps import via_proxy
from tests.support.deploy import job_text, wait_job
from tests.support.lab import LabHost

pytestmark = pytest.mark.usefixtures("test_images")

SPEC = """app: shop
services:
  web:
    image: dm-test/web:v1
    port: 80
    health: {path: /version, interval: 0.2, retries: 25}
    domains: [web.shop.test]
    tls: off
    drain: 0
    volumes: [{name: data, path: /www/data}]
environments:
  staging:
    servers: [edge]
preview:
  domain: preview.shop.test
  env: {DB_NAME: "shop_{slug}"}
  ttl_hours: 1
"""


def _deploy(client: TestClient, environment: str, branch: str) -> dict[str, Any]:
    res = client.post(
        "/api/apps/shop/deploy",
        json={"environment": environment, "spec": SPEC, "commit": "5eed5eed", "branch": branch},
    )
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    return dict(res.json())


def _names(host: LabHost, *args: str) -> list[str]:
    return host.docker(
        *args, "--format", "{{.Name}}" if args[0] == "volume" else "{{.Names}}"
    ).stdout.split()


def _gone(host: LabHost, name: str, *args: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while name in _names(host, *args):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_previews_per_branch_with_their_own_domain_env_and_data(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
    _deploy(client, "staging", "main")
    first = _deploy(client, "preview", "feature/Login")
    second = _deploy(client, "preview", "feature-login")
    assert first["environment"] == "preview-feature-login"
    assert second["environment"].startswith("preview-feature-login-")  # collided: hashed
    listed = {p["branch"]: p for p in client.get("/api/apps/shop/previews").json()}
    assert set(listed) == {"feature/Login", "feature-login"}
    hosts = {b: p["domains"]["web"][0] for b, p in listed.items()}
    assert hosts["feature/Login"] == "feature-login.preview.shop.test"
    assert hosts["feature-login"] == f"{second['environment'][8:]}.preview.shop.test"
    for host in (*hosts.values(), "web.shop.test"):
        assert via_proxy(lab_host, host) == "v1", host
    # Its own env ({slug} filled in) and its own data: a file written in staging's volume is
    # not in the preview's.
    env = lab_host.docker(
        "inspect", "--format", "{{json .Config.Env}}", "dm-shop-preview-feature-login-web-r1"
    ).stdout
    assert '"DB_NAME=shop_feature-login"' in env
    lab_host.docker(
        "exec", "dm-shop-staging-web-r1", "sh", "-c", "echo staging-only > /www/data/note"
    )

    def note(host: str) -> int:
        return httpx.get(
            f"http://{lab_host.address}/data/note", headers={"Host": host}, timeout=3
        ).status_code

    assert note("web.shop.test") == 200 and note(hosts["feature/Login"]) == 404

    # Refused branch names change nothing.
    for bad in ("feat;rm -rf /", "x" * 300, "$(reboot)"):
        res = client.post(
            "/api/apps/shop/deploy",
            json={"environment": "preview", "spec": SPEC, "commit": "5eed5eed", "branch": bad},
        )
        assert res.status_code == 422, (bad, res.text)
    assert len(client.get("/api/apps/shop/previews").json()) == 2

    # feature/Login expires: the worker removes it with its volume; the other stays.
    async def expire(db: AsyncSession) -> None:
        await db.execute(
            update(AppPreview)
            .where(AppPreview.branch == "feature/Login")
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        await db.commit()

    run_in_app(client, expire)
    context = client.app.state.context  # type: ignore[attr-defined]
    assert client.portal is not None
    assert client.portal.call(previews.reap, context) == ["preview-feature-login"]
    assert _gone(lab_host, "dm-shop-preview-feature-login-web-r1", "ps", "-a")
    assert _gone(lab_host, "dm-shop-preview-feature-login-web-data", "volume", "ls")
    volumes = _names(lab_host, "volume", "ls")
    assert "dm-shop-preview-feature-login-web-data" not in volumes
    assert "dm-shop-staging-web-data" in volumes
    assert [p["branch"] for p in client.get("/api/apps/shop/previews").json()] == ["feature-login"]
    assert via_proxy(lab_host, hosts["feature-login"]) == "v1"
    assert via_proxy(lab_host, "web.shop.test") == "v1"
    page = client.get("/app/apps/shop").text
    assert 'data-branch="feature-login"' in page and 'data-branch="feature/Login"' not in page
    assert f'href="http://{hosts["feature-login"]}"' in page
