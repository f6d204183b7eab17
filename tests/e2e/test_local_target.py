"""The same flow on the control host's own Docker, and the capability flag that forbids it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deploymate.app import create_app
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.support.api import login
from tests.support.deploy import fast_health, fetch, job_text, wait_job


def _client(tmp_path: Path, enabled: bool) -> TestClient:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'dm.db'}", local_docker_enabled=enabled
    )
    return TestClient(create_app(settings))


@pytest.fixture
def local_client(tmp_path: Path, test_images: dict[str, str]) -> Iterator[TestClient]:
    with _client(tmp_path, True) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
        yield client


def test_deploy_redeploy_fail_and_delete_on_the_control_host(local_client: TestClient) -> None:
    res = local_client.post(
        "/api/deployments",
        json={
            "name": "localweb",
            "server_id": None,
            "image": "dm-test/web:v1",
            "internal_port": 80,
            "health_check": fast_health(),
        },
    )
    assert res.status_code == 201, res.text
    dep = res.json()
    assert dep["target"] == "control host"
    try:
        job = wait_job(local_client, dep["job_id"])
        assert job["status"] == "succeeded", job_text(job)
        assert "streaming" not in job_text(job)  # the image is already on this daemon
        port = dep["external_port"]
        assert fetch("127.0.0.1", port) == "v1"
        job = wait_job(
            local_client,
            local_client.post(
                f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/web:v2"}
            ).json()["job_id"],
        )
        assert job["status"] == "succeeded" and fetch("127.0.0.1", port) == "v2"
        job = wait_job(
            local_client,
            local_client.post(
                f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/unhealthy:v1"}
            ).json()["job_id"],
        )
        assert job["status"] == "failed" and fetch("127.0.0.1", port) == "v2"
    finally:
        job = wait_job(
            local_client, local_client.delete(f"/api/deployments/{dep['id']}").json()["job_id"]
        )
    assert job["status"] == "succeeded"
    names = subprocess.run(
        ["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [n for n in names if n.startswith("dm-localweb-")]


def test_local_target_refused_when_disabled(tmp_path: Path) -> None:
    with _client(tmp_path, False) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
        res = client.post(
            "/api/deployments",
            json={
                "name": "nope",
                "server_id": None,
                "image": "dm-test/web:v1",
                "internal_port": 80,
            },
        )
        assert res.status_code == 403 and res.json()["code"] == "local_docker_disabled"
        assert "DEPLOYMATE_LOCAL_DOCKER_ENABLED" in res.json()["detail"]
        assert client.get("/api/deployments").json() == []
