"""Pulling from a real registry with stored credentials: Debian's docker-registry with htpasswd
inside a lab host. The password must reach the target's Docker and nothing else."""

from __future__ import annotations

import base64
import sqlite3
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import key_server
from tests.support import images
from tests.support.api import member_headers
from tests.support.deploy import fast_health, fetch, job_text, wait_job
from tests.support.lab import LabHost
from tests.support.registry import lab_registry, push

PASSWORD = "reg-Secret-4c1d9e"  # a test value, searched for in every output


@pytest.mark.usefixtures("test_images")
def test_a_private_image_is_pulled_with_stored_credentials_that_appear_nowhere(
    e2e_client: TestClient, lab_host: LabHost, tmp_path: Path
) -> None:
    client = e2e_client
    images.copy_images([images.WEB_V2], lab_host.docker_host)
    with lab_registry(lab_host, tmp_path / "registry", "deployer", PASSWORD) as registry:
        ref = f"{registry.host}/team/web:2"
        push(lab_host, registry, images.WEB_V2, ref, tmp_path / "push-config")
        server = client.post("/api/servers", json=key_server(lab_host, "private"))
        assert server.status_code == 201, server.text
        body = {
            "name": "private",
            "server_id": server.json()["id"],
            "image": ref,
            "internal_port": 80,
            "health_check": fast_health(),
        }
        # Without credentials the registry refuses, and the job says what to do.
        res = client.post("/api/deployments", json=body)
        job = wait_job(client, res.json()["job_id"])
        assert job["status"] == "failed"
        assert "refused it" in job["error"] and "Registries" in job["error"], job["error"]
        # Bad input is refused with a clear error, and nothing is stored.
        for url in (f"https://{registry.host}/team", f"https://deployer:x@{registry.host}"):
            bad = client.post(
                "/api/registries",
                json={"name": "lab", "url": url, "username": "deployer", "password": PASSWORD},
            )
            assert bad.status_code == 422 and PASSWORD not in bad.text, bad.text
        made = client.post(
            "/api/registries",
            json={
                "name": "lab",
                "url": registry.host,
                "username": "deployer",
                "password": PASSWORD,
            },
        )
        assert made.status_code == 201, made.text
        assert client.get("/api/registries").json()[0]["host"] == registry.host
        dep_id = res.json()["id"]
        again = client.post(f"/api/deployments/{dep_id}/redeploy", json={})
        job = wait_job(client, again.json()["job_id"])
        assert job["status"] == "succeeded", job_text(job)
        assert "with stored credentials" in job_text(job)
        dep = client.get(f"/api/deployments/{dep_id}").json()
        assert fetch(lab_host.address, dep["external_port"]) == "v2"
        # A member sees no unshared registry.
        assert client.get("/api/registries", headers=member_headers(client, "mia")).json() == []
        # The password is in no API answer, job log, audit entry or database row.
        outputs = [
            client.get("/api/registries").text,
            client.get(f"/api/jobs/{job['id']}").text,
            client.get(f"/api/deployments/{dep_id}/releases").text,
            client.get("/api/admin/audit").text,
        ]
        assert not [o for o in outputs if PASSWORD in o]
        db_file = Path(client.app.state.context.settings.resolved_database_url.split("///", 1)[1])  # type: ignore[attr-defined]
        with sqlite3.connect(db_file) as conn:
            dump = "\n".join(conn.iterdump())
        assert PASSWORD not in dump and "deployer" in dump
        # No client config with the credentials is left on the target.
        token = base64.b64encode(f"deployer:{PASSWORD}".encode()).decode()
        found = subprocess.run(
            ["grep", "-rls", "--", token, "/tmp"], capture_output=True, text=True, check=False
        )
        assert found.stdout.strip() == ""
