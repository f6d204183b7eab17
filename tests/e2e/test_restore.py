"""A restore moves an instance: a deployment made on SQLite, restored into a fresh PostgreSQL
instance, redeploys on the same lab host, and its old container goes away."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from deploymate.app import create_app
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.e2e.conftest import key_server
from tests.support import postgres
from tests.support.api import login
from tests.support.deploy import fast_health, fetch, job_text, wait_job
from tests.support.lab import LabHost


def _running(host: LabHost, name: str) -> list[str]:
    out = host.docker(
        "ps", "--filter", f"label=deploymate.name={name}", "--format", "{{.Names}}"
    ).stdout
    return sorted(out.split())


def test_a_deployment_restored_into_postgresql_redeploys_on_the_same_host(
    e2e_client: TestClient,
    lab_host: LabHost,
    test_images: dict[str, str],
    pg_server: postgres.PostgresServer,
    credentials_key: str,
    tmp_path: Path,
) -> None:
    server = e2e_client.post("/api/servers", json=key_server(lab_host, "moved-1"))
    assert server.status_code == 201, server.text
    created = e2e_client.post(
        "/api/deployments",
        json={
            "name": "moved",
            "server_id": server.json()["id"],
            "image": "dm-test/web:v1",
            "internal_port": 80,
            "health_check": fast_health(),
            "secret_env": {"API_KEY": "moved-secret-canary-5150"},
        },
    )
    assert created.status_code == 201, created.text
    dep = created.json()
    job = wait_job(e2e_client, dep["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    port = dep["external_port"]
    assert fetch(lab_host.address, port) == "v1"
    before = _running(lab_host, "moved")
    bundle = e2e_client.get("/api/admin/backup-bundle")
    assert bundle.status_code == 200

    database = pg_server.create_database()
    target = make_settings(
        tmp_path / "restored",
        pg_server.url(database),
        server_credentials_key=credentials_key,
        ssh_known_hosts_file=tmp_path / "restored-known_hosts",
        ssh_allow_private=True,
    )
    try:
        with TestClient(create_app(target)) as restored:
            restored.headers["X-CSRF-Token"] = login(restored, "admin", ADMIN_PASSWORD)
            res = restored.post(
                "/api/admin/restore",
                params={"confirm": "restore"},
                content=bundle.content,
                headers={"Content-Type": "application/json"},
            )
            assert res.status_code == 200, res.text
            assert res.json()["restored"]["deployments"] == 1
            listed = restored.get("/api/deployments").json()
            moved = next(d for d in listed if d["name"] == "moved")
            assert moved["status"] == "running" and moved["external_port"] == port
            assert "moved-secret-canary-5150" not in json.dumps(moved)

            again = restored.post(
                f"/api/deployments/{moved['id']}/redeploy", json={"image": "dm-test/web:v2"}
            )
            assert again.status_code == 202, again.text
            job = wait_job(restored, again.json()["job_id"])
            assert job["status"] == "succeeded", job_text(job)
            assert fetch(lab_host.address, port) == "v2"
            after = _running(lab_host, "moved")
            assert len(after) == 1 and after != before, (before, after)
            detail = restored.get(f"/api/deployments/{moved['id']}").json()
            assert detail["current_release"]["number"] == 2
            assert detail["current_release"]["image_id"] == test_images["dm-test/web:v2"]
            # the secret env came across sealed and reached the new container
            env = lab_host.docker("exec", after[0], "/bin/busybox", "env").stdout
            assert "API_KEY=moved-secret-canary-5150" in env
    finally:
        pg_server.drop_database(database)
