"""Deployments behind the proxy on a real lab host: real Caddy (built offline), real Docker.

Requests go from the control host to the lab host's port 80/443 with a Host header, as a user's
browser would after DNS.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import key_server
from tests.support.deploy import fast_health, job_text, wait_job
from tests.support.lab import LabHost
from tests.support.load import steady_load

pytestmark = pytest.mark.usefixtures("test_images")


def _server(client: TestClient, host: LabHost) -> int:
    res = client.post("/api/servers", json=key_server(host, "edge"))
    assert res.status_code == 201, res.text
    return int(res.json()["id"])


def _deploy(client: TestClient, server_id: int, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "server_id": server_id,
        "image": "dm-test/web:v1",
        "internal_port": 80,
        "health_check": fast_health(),
        "drain_seconds": 0.5,
        **extra,
    }
    res = client.post("/api/deployments", json=body)
    assert res.status_code == 201, res.text
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    return dict(res.json())


def via_proxy(host: LabHost, domain: str, path: str = "/version") -> str:
    try:
        res = httpx.get(f"http://{host.address}{path}", headers={"Host": domain}, timeout=3)
    except httpx.HTTPError as exc:
        return f"error {type(exc).__name__}"
    return res.text.strip() if res.status_code == 200 else f"HTTP {res.status_code}"


def via_https(host: LabHost, domain: str, cafile: str, path: str = "/version") -> str:
    """HTTPS with the domain's name (SNI and certificate check), resolved to the lab host."""
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            cafile,
            "--resolve",
            f"{domain}:443:{host.address}",
            f"https://{domain}{path}",
        ],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else f"curl {done.returncode}: {done.stderr}"


def test_two_deployments_on_one_target_are_routed_by_host_name(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    server_id = _server(client, lab_host)
    one = _deploy(client, server_id, "one", domains=["one.test"], tls="off")
    two = _deploy(client, server_id, "two", image="dm-test/web:v2", domains=["two.test"], tls="off")
    assert one["external_port"] is None and two["domains"] == ["two.test"]
    assert via_proxy(lab_host, "one.test") == "v1"
    assert via_proxy(lab_host, "two.test") == "v2"
    assert via_proxy(lab_host, "nobody.test") != "v1"
    # The same host name on the same target is refused, and nothing is recorded.
    taken = client.post(
        "/api/deployments",
        json={
            "name": "three",
            "server_id": server_id,
            "image": "dm-test/web:v1",
            "internal_port": 80,
            "domains": ["ONE.test"],
        },
    )
    assert taken.status_code == 409 and "one.test" in taken.json()["detail"], taken.text
    assert "three" not in [d["name"] for d in client.get("/api/deployments").json()]
    # The proxy's admin API is published nowhere: only 80 and 443 are.
    ports = lab_host.docker("port", "deploymate-proxy").stdout
    assert "2019" not in ports and "80/tcp" in ports and "443/tcp" in ports


def test_a_redeploy_under_load_fails_no_request(e2e_client: TestClient, lab_host: LabHost) -> None:
    client = e2e_client
    server_id = _server(client, lab_host)
    dep = _deploy(client, server_id, "steady", domains=["steady.test"], tls="off")
    with steady_load(
        f"http://{lab_host.address}/version", "steady.test", rate=100, accept=("v1", "v2")
    ) as report:
        time.sleep(0.5)
        for image in ("dm-test/web:v2", "dm-test/web:v1", "dm-test/web:v2"):
            res = client.post(f"/api/deployments/{dep['id']}/redeploy", json={"image": image})
            job = wait_job(client, res.json()["job_id"])
            assert job["status"] == "succeeded", job_text(job)
            # Reported succeeded only when the new version serves.
            assert via_proxy(lab_host, "steady.test") == image.rsplit(":", 1)[1]
        time.sleep(0.5)
    assert report.sent > 100
    # Nothing is refused any more (the published-port swap refused connections for ~0.8 s).
    # Debian's Caddy 2.6 may close one connection at the instant it swaps its config (a race
    # in its listener hand-over, fixed upstream): at most one per switch is tolerated here;
    # `make bench` counts them over 20,000 requests.
    assert "ConnectError" not in report.errors, report.summary()
    assert report.failed <= 3, report.summary()
    log = job_text(job)
    assert "proxy switched steady.test" in log and "draining" in log
    assert "no public port" in log
    # Each release started its container once: no candidate.
    assert "candidate" not in log
