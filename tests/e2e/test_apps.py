"""Apps on a real lab host: the services of an environment move together, or none does."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import key_server
from tests.support.api import member_headers
from tests.support.deploy import job_text, wait_job
from tests.support.lab import LabHost
from tests.support.repo import cli, git
from tests.support.server import RunningServer

pytestmark = pytest.mark.usefixtures("test_images")

WORKER = ["/bin/sh", "-c", "trap 'exit 0' TERM; echo worker up; while true; do sleep 1; done"]


def spec(version: str, worker: list[str] = WORKER) -> str:
    command = ", ".join(f'"{part}"' for part in worker)
    return f"""app: shop
services:
  web:
    image: dm-test/web:{version}
    port: 80
    health: {{path: /version, interval: 0.3, retries: 10}}
    domains: [web.shop.test]
    tls: off
    drain: 0.5
    smoke: [{{http: /version, expect: 200}}]
  worker:
    image: dm-test/web:{version}
    command: [{command}]
    drain: 0
env: {{LOG_LEVEL: info}}
environments:
  staging:
    servers: [edge]
  production:
    servers: [edge]
    domains: {{web: [www.shop.test]}}
"""


def via_proxy(host: LabHost, domain: str = "web.shop.test") -> str:
    try:
        res = httpx.get(f"http://{host.address}/version", headers={"Host": domain}, timeout=3)
    except httpx.HTTPError as exc:
        return f"error {type(exc).__name__}"
    return res.text.strip() if res.status_code == 200 else f"HTTP {res.status_code}"


def _deploy(client: TestClient, text: str, environment: str = "staging") -> dict[str, Any]:
    res = client.post(
        "/api/apps/shop/deploy",
        json={"environment": environment, "spec": text, "commit": "a1b2c3d4e5f6", "branch": "main"},
    )
    assert res.status_code == 202, res.text
    return dict(res.json())


def _running(host: LabHost) -> list[str]:
    return sorted(host.docker("ps", "--format", "{{.Names}}").stdout.split())


def test_two_services_deploy_together_and_a_failing_worker_takes_the_web_back(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
    first = _deploy(client, spec("v1"))
    job = wait_job(client, first["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(lab_host) == "v1"
    names = _running(lab_host)
    assert "dm-shop-staging-web-r1" in names and "dm-shop-staging-worker-r1" in names
    releases = client.get("/api/apps/shop/releases").json()
    assert releases[0]["status"] == "succeeded" and releases[0]["commit"] == "a1b2c3d4e5f6"
    images = {s: p["edge"]["image_id"] for s, p in releases[0]["parts"].items()}
    assert images["web"] == images["worker"] and images["web"].startswith("sha256:")

    # Both move to v2 together.
    second = _deploy(client, spec("v2"))
    job = wait_job(client, second["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(lab_host) == "v2"
    names = _running(lab_host)
    assert "dm-shop-staging-worker-r2" in names and "dm-shop-staging-worker-r1" not in names

    # A worker that cannot start: the web service does not move either.
    crashing = ["/bin/sh", "-c", "echo worker cannot start >&2; exit 3"]
    third = _deploy(client, spec("v1", worker=crashing))
    job = wait_job(client, third["job_id"])
    assert job["status"] == "failed", job_text(job)
    assert "worker@edge" in job["error"] and "before any switch" in job["error"]
    assert via_proxy(lab_host) == "v2"
    names = _running(lab_host)
    assert "dm-shop-staging-web-r3" not in names and "dm-shop-staging-worker-r3" not in names
    assert "dm-shop-staging-web-r2" in names and "dm-shop-staging-worker-r2" in names
    assert client.get("/api/apps/shop/releases").json()[0]["status"] == "failed"
    web = next(d for d in client.get("/api/deployments").json() if d["name"] == "shop-staging-web")
    assert web["current_release"]["image"] == "dm-test/web:v2" and web["image"] == "dm-test/web:v2"


def test_a_failed_smoke_check_after_the_switch_takes_every_service_back(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
    job = wait_job(client, _deploy(client, spec("v1"))["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    broken = spec("v2").replace(
        "smoke: [{http: /version, expect: 200}]", "smoke: [{http: /version, contains: v1}]"
    )
    job = wait_job(client, _deploy(client, broken)["job_id"])
    assert job["status"] == "failed", job_text(job)
    assert "went back as a whole" in job["error"]
    assert "proxy switched back" in job_text(job)
    time.sleep(0.2)
    assert via_proxy(lab_host) == "v1"
    names = _running(lab_host)
    assert "dm-shop-staging-worker-r2" not in names and "dm-shop-staging-worker-r1" in names


def test_production_is_shipped_not_deployed(e2e_client: TestClient, lab_host: LabHost) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
    res = client.post(
        "/api/apps/shop/deploy", json={"environment": "production", "spec": spec("v1")}
    )
    assert res.status_code == 409 and res.json()["code"] == "use_ship", res.text
    assert "deploymate app ship" in res.json()["detail"]


def test_app_deploy_from_a_repository_ships_what_is_committed_and_refuses_a_dirty_tree(
    tmp_path: Path, running_server: RunningServer, lab_host: LabHost
) -> None:
    cfg = tmp_path / "cli.json"
    login = ["login", "--url", running_server.url, "--username", "admin"]
    assert cli([*login, "--password", running_server.admin_password], cfg, tmp_path).returncode == 0
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        ).json()["csrf_token"]
        res = http.post(
            "/api/servers", json=key_server(lab_host, "edge"), headers={"X-CSRF-Token": csrf}
        )
        assert res.status_code == 201, res.text
    repo = tmp_path / "shop"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "deploymate.yaml").write_text(spec("v1"))
    git(repo, "add", "deploymate.yaml")
    git(repo, "commit", "-q", "-m", "shop v1")
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()

    # A new app's spec is stored first (its secrets could be set now), then deployed.
    saved = cli(["app", "save"], cfg, repo)
    assert saved.returncode == 0 and "app shop stored" in saved.stdout, saved.stderr
    deployed = cli(["app", "deploy", "staging"], cfg, repo)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert f"commit {commit[:12]} on main" in deployed.stdout
    assert "[web@edge] proxy switched web.shop.test" in deployed.stdout
    assert via_proxy(lab_host) == "v1"

    # A changed spec and an untracked file: refused, with their names.
    (repo / "deploymate.yaml").write_text(spec("v2"))
    (repo / "notes.txt").write_text("scratch\n")
    refused = cli(["app", "deploy", "staging"], cfg, repo)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "deploymate.yaml" in refused.stderr and "notes.txt" in refused.stderr
    assert "--allow-dirty" in refused.stderr

    # Allowed dirty: marked so, and still the committed spec (v1), never the working tree.
    dirty = cli(["app", "deploy", "staging", "--allow-dirty"], cfg, repo)
    assert dirty.returncode == 0 and "(dirty)" in dirty.stdout, dirty.stdout + dirty.stderr
    assert via_proxy(lab_host) == "v1"
    with httpx.Client(base_url=running_server.url) as http:
        http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        )
        releases = http.get("/api/apps/shop/releases").json()
    assert [r["clean"] for r in releases[:2]] == [False, True]
    assert releases[0]["commit"] == commit and releases[0]["branch"] == "main"


def test_ship_promotes_exactly_the_staging_release_to_production(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
    nothing = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    assert nothing.status_code == 404  # no app yet
    job = wait_job(client, _deploy(client, spec("v2"))["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    unconfirmed = client.post("/api/apps/shop/ship", json={})
    assert unconfirmed.status_code == 422 and "--confirm shop" in unconfirmed.json()["detail"]
    shipped = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    assert shipped.status_code == 202, shipped.text
    job = wait_job(client, shipped.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(lab_host, "www.shop.test") == "v2"
    releases = client.get("/api/apps/shop/releases").json()
    production = next(r for r in releases if r["environment"] == "production")
    staging = next(r for r in releases if r["environment"] == "staging")
    assert production["commit"] == staging["commit"] and production["clean"]
    for service in ("web", "worker"):
        assert (
            production["parts"][service]["edge"]["image_id"]
            == (staging["parts"][service]["edge"]["image_id"])
        )
    page = client.get("/app/apps/shop")
    assert page.status_code == 200 and "a1b2c3d4e5f6" in page.text
    assert "shipped from staging" in page.text and "not deployed yet" not in page.text
    again = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    assert again.status_code == 409 and again.json()["code"] == "already_shipped"
    # A release from a dirty tree never ships.
    dirty = client.post(
        "/api/apps/shop/deploy",
        json={"environment": "staging", "spec": spec("v1"), "commit": "b2c3d4e5", "clean": False},
    )
    assert wait_job(client, dirty.json()["job_id"])["status"] == "succeeded"
    refused = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    assert refused.status_code == 409 and refused.json()["code"] == "dirty_release"
    assert via_proxy(lab_host, "www.shop.test") == "v2"
    # Members never ship to production.
    member = member_headers(client, "milo")
    denied = client.post("/api/apps/shop/ship", json={"confirm": "shop"}, headers=member)
    assert denied.status_code in (403, 404)


def test_rollback_brings_every_service_back_to_an_earlier_app_release(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
    for version in ("v1", "v2"):
        job = wait_job(client, _deploy(client, spec(version))["job_id"])
        assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(lab_host) == "v2"
    res = client.post("/api/apps/shop/rollback", json={"environment": "staging"})
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(lab_host) == "v1"
    releases = client.get("/api/apps/shop/releases?environment=staging").json()
    assert [r["number"] for r in releases] == [3, 2, 1]
    assert (
        releases[0]["parts"]["worker"]["edge"]["image_id"]
        == (releases[2]["parts"]["worker"]["edge"]["image_id"])
    )
    nothing = client.post("/api/apps/shop/rollback", json={"environment": "staging", "to": 9})
    assert nothing.status_code == 422 and "earlier: 2, 1" in nothing.json()["detail"]


def test_a_members_ship_is_a_request_an_admin_approves_for_one_release(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    member = member_headers(client, "mona")
    made = client.post("/api/servers", json=key_server(lab_host, "edge"), headers=member)
    assert made.status_code == 201, made.text
    # The member's CI deploys with a token scoped to staging.
    scoped = client.post(
        "/api/auth/tokens", json={"name": "ci", "scopes": ["deploy:staging"]}, headers=member
    )
    ci = {"Authorization": f"Bearer {scoped.json()['token']}"}

    def deploy_as_member(version: str) -> None:
        res = client.post(
            "/api/apps/shop/deploy",
            json={
                "environment": "staging",
                "spec": spec(version),
                "commit": f"c0ffee0{version[1:]}",
            },
            headers=ci,
        )
        assert res.status_code == 202, res.text
        job = wait_job(client, res.json()["job_id"])
        assert job["status"] == "succeeded", job_text(job)

    deploy_as_member("v1")
    # The staging token cannot ship, and the member cannot touch production directly.
    token_ship = client.post("/api/apps/shop/ship", json={}, headers=ci)
    assert token_ship.status_code == 403 and token_ship.json()["code"] == "token_scope"
    for url, body in (
        ("/api/apps/shop/rollback", {"environment": "production", "confirm": "shop"}),
        ("/api/apps/shop/run", {"environment": "production", "command": ["true"]}),
    ):
        direct = client.post(url, json=body, headers=member)
        assert direct.status_code == 403, direct.text
        assert direct.json()["code"] == "production_protected"
    # A member never ships: the ship becomes a request, and nothing runs yet.
    asked = client.post("/api/apps/shop/ship", json={}, headers=member)
    assert asked.status_code == 202 and asked.json()["status"] == "pending", asked.text
    request_id = asked.json()["request_id"]
    assert via_proxy(lab_host, "www.shop.test") != "v1"
    twice = client.post("/api/apps/shop/ship", json={}, headers=member)
    assert twice.status_code == 409 and twice.json()["code"] == "request_pending"
    assert client.post(f"/api/approvals/{request_id}/approve", headers=member).status_code == 403
    waiting = client.get("/api/approvals").json()
    assert [r["id"] for r in waiting] == [request_id] and waiting[0]["requested_by"] == "mona"

    # The admin approves: the very release asked for ships, recorded as approved.
    approved = client.post(f"/api/approvals/{request_id}/approve")
    assert approved.status_code == 202, approved.text
    job = wait_job(client, approved.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(lab_host, "www.shop.test") == "v1"
    production = client.get("/api/apps/shop/releases?environment=production").json()[0]
    assert production["created_by"].startswith(f"admin (approved #{request_id} of mona")

    # Approvals are for one release: staging moved on, so the old request cannot ship it.
    deploy_as_member("v2")
    second = client.post("/api/apps/shop/ship", json={}, headers=member).json()["request_id"]
    deploy_as_member("v1")
    stale = client.post(f"/api/approvals/{second}/approve")
    assert stale.status_code == 409 and stale.json()["code"] == "request_stale", stale.text
    assert "approvals are for one release" in stale.json()["detail"]
    assert via_proxy(lab_host, "www.shop.test") == "v1"
    rejected = client.post("/api/apps/shop/ship", json={}, headers=member).json()["request_id"]
    # The console's inbox shows it to the admin, who rejects it there with a reason.
    inbox = client.get("/app/approvals")
    assert inbox.status_code == 200 and f'data-request="{rejected}"' in inbox.text
    assert "Approve and ship" in inbox.text and "mona" in inbox.text
    no = client.post(
        f"/app/approvals/{rejected}/reject",
        data={"reason": "not on a Friday"},
        follow_redirects=True,
    )
    assert no.status_code == 200 and f"Request #{rejected} rejected." in no.text
    assert "not on a Friday" in no.text
    mine = client.get("/api/approvals?all=true", headers=member).json()
    assert {r["status"] for r in mine} == {"approved", "stale", "rejected"}


def test_drift_blocks_a_release_before_any_switch_and_a_ship_has_no_bypass(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201

    def with_drift(version: str) -> str:
        return spec(version) + "drift:\n  command: [cat, /www/version]\n  service: web\n"

    assert wait_job(client, _deploy(client, with_drift("v1"))["job_id"])["status"] == "succeeded"
    shipped = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    assert wait_job(client, shipped.json()["job_id"])["status"] == "succeeded"
    # v2 answers differently from what serves: blocked before any switch, both answers shown.
    job = wait_job(client, _deploy(client, with_drift("v2"))["job_id"])
    assert job["status"] == "failed", job_text(job)
    assert "'v1'" in job["error"] and "'v2'" in job["error"] and "drift" in job["error"]
    assert "proxy switched" not in job_text(job)
    assert via_proxy(lab_host) == "v1"
    # A non-production deploy may skip it (audited); a ship may not.
    res = client.post(
        "/api/apps/shop/deploy",
        json={
            "environment": "staging",
            "spec": with_drift("v2"),
            "commit": "d1e2f3a4",
            "skip_drift": True,
        },
    )
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "succeeded" and "drift check skipped" in job_text(job)
    assert via_proxy(lab_host) == "v2"
    audit = client.get("/api/admin/audit?action=app.deploy").json()
    assert any(
        e["action"] == "app.deploy" and e["details"].get("skip_drift") for e in audit["items"]
    )
    blocked = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    job = wait_job(client, blocked.json()["job_id"])
    assert job["status"] == "failed" and "drift" in job["error"], job_text(job)
    assert via_proxy(lab_host, "www.shop.test") == "v1"


def test_app_run_streams_a_one_off_command_and_returns_its_exit_status(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
    assert wait_job(client, _deploy(client, spec("v1"))["job_id"])["status"] == "succeeded"
    res = client.post(
        "/api/apps/shop/run",
        json={
            "environment": "staging",
            "service": "worker",
            "command": ["sh", "-c", "echo level=$LOG_LEVEL; cat /www/version; exit 7"],
        },
    )
    assert res.status_code == 200, res.text
    events = [
        (block.split("\n")[0].removeprefix("event: "), json.loads(block.split("data: ", 1)[1]))
        for block in res.text.strip().split("\n\n")
        if block.startswith("event:")
    ]
    lines = [data["line"] for kind, data in events if kind == "out"]
    assert "level=info" in lines and "v1" in lines
    assert events[-1] == ("end", {"exit_code": 7})
    # The one-off container is gone; the serving ones are untouched.
    names = lab_host.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert not [n for n in names if n.startswith("dm-run-")]
    assert "dm-shop-staging-worker-r1" in names
    audit = client.get("/api/admin/audit?action=app.run").json()["items"]
    assert audit[0]["details"]["program"] == "sh" and audit[0]["details"]["arguments"] == 2
    assert "exit 7" not in json.dumps(audit)  # the arguments are never recorded


def test_pending_migrations_are_listed_at_ship_and_never_run(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
    with_migrations = spec("v1") + (
        "migrations:\n  path: migrations/\n"
        "  applied: [sh, -c, 'ls /tmp/applied 2>/dev/null || true']\n  service: web\n"
    )
    files = ["migrations/0001_init.sql", "migrations/0002_orders.sql"]
    res = client.post(
        "/api/apps/shop/deploy",
        json={
            "environment": "staging",
            "spec": with_migrations,
            "commit": "e1e2e3e4",
            "migrations": files,
        },
    )
    assert wait_job(client, res.json()["job_id"])["status"] == "succeeded"
    first = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    assert first.status_code == 202
    assert first.json()["pending_migrations"] == files  # nothing serves there yet
    assert wait_job(client, first.json()["job_id"])["status"] == "succeeded"
    # Production says it applied 0001 (by hand); a new staging release lists only 0002.
    lab_host.docker(
        "exec",
        "dm-shop-production-web-r1",
        "sh",
        "-c",
        "mkdir -p /tmp/applied && touch /tmp/applied/0001_init",
    )
    res = client.post(
        "/api/apps/shop/deploy",
        json={
            "environment": "staging",
            "spec": with_migrations.replace("v1", "v2"),
            "commit": "f1f2f3f4",
            "migrations": files,
        },
    )
    assert wait_job(client, res.json()["job_id"])["status"] == "succeeded"
    second = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    assert second.status_code == 202, second.text
    assert second.json()["pending_migrations"] == ["migrations/0002_orders.sql"]
    job = wait_job(client, second.json()["job_id"])
    assert job["status"] == "succeeded"
    # Listed in the release record; the release never ran them.
    production = client.get("/api/apps/shop/releases?environment=production").json()[0]
    assert production["pending_migrations"] == ["migrations/0002_orders.sql"]
    assert "0002_orders" not in job_text(job)
    page = client.get("/app/apps/shop").text
    assert 'data-testid="pending-migrations"' in page and "0002_orders.sql" in page
