"""Deployments behind the proxy on a real lab host: real Caddy (built offline), real Docker.

Requests go from the control host to the lab host's port 80/443 with a Host header, as a user's
browser would after DNS.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
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
    # The published-port swap refused every connection for ~0.8 s (about 80 requests a swap
    # at this rate). Debian's Caddy 2.6 may drop a connection at the instant it swaps its
    # config (a race in its listener hand-over, fixed upstream), more often on a loaded CI
    # machine: at most one per switch is tolerated here; `make bench` counts them over 20,000.
    assert report.failed <= 3, report.summary()
    log = job_text(job)
    assert "proxy switched steady.test" in log and "draining" in log
    assert "no public port" in log
    # Each release started its container once: no candidate.
    assert "candidate" not in log


def _proxy_config(host: LabHost, tmp: Path) -> str:
    """The config Caddy runs with (its autosave of the last load)."""
    host.docker("cp", "deploymate-proxy:/data/config/caddy/autosave.json", str(tmp / "c.json"))
    return (tmp / "c.json").read_text()


def test_an_unhealthy_release_leaves_the_proxy_and_the_old_container_untouched(
    e2e_client: TestClient, lab_host: LabHost, tmp_path: Path
) -> None:
    client = e2e_client
    server_id = _server(client, lab_host)
    dep = _deploy(client, server_id, "calm", domains=["calm.test"], tls="off")
    before = _proxy_config(lab_host, tmp_path)
    res = client.post(
        f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/unhealthy:http500"}
    )
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "failed" and "HTTP 404 on /version" in job["error"], job_text(job)
    assert "proxy switched" not in job_text(job)
    assert _proxy_config(lab_host, tmp_path) == before
    assert via_proxy(lab_host, "calm.test") == "v1"
    names = lab_host.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert "dm-calm-r1" in names and "dm-calm-r2" not in names


def test_a_failed_smoke_check_goes_back_to_the_old_container_without_failed_requests(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    server_id = _server(client, lab_host)
    smoke = [{"http": "/version", "contains": "v1"}, {"command": ["test", "-f", "/www/version"]}]
    dep = _deploy(client, server_id, "guarded", domains=["guarded.test"], tls="off", smoke=smoke)
    assert client.get(f"/api/deployments/{dep['id']}").json()["smoke_result"]["checks"][0]["ok"]
    with steady_load(
        f"http://{lab_host.address}/version", "guarded.test", rate=100, accept=("v1", "v2")
    ) as report:
        time.sleep(0.3)
        res = client.post(
            f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/web:v2"}
        )
        job = wait_job(client, res.json()["job_id"])
        time.sleep(0.3)
    assert job["status"] == "failed", job_text(job)
    assert "automatic rollback" in job["error"] and "does not contain 'v1'" in job["error"]
    log = job_text(job)
    assert "proxy switched guarded.test" in log and "switched back to dm-guarded-r1" in log
    assert via_proxy(lab_host, "guarded.test") == "v1"
    assert report.failed <= 2, report.summary()  # two switches: there and back
    after = client.get(f"/api/deployments/{dep['id']}").json()
    assert after["current_release"]["image"] == "dm-test/web:v1"
    assert after["smoke_result"]["release"] == 2
    assert not after["smoke_result"]["checks"][0]["ok"]
    names = lab_host.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "dm-guarded-r1" in names and "dm-guarded-r2" not in names
    # On demand, from the console: the live release passes, and the page says so.
    ran = client.post(f"/deployments/{dep['id']}/smoke", follow_redirects=True)
    assert ran.status_code == 200 and "Smoke checks: all 2 passed." in ran.text, ran.text[-2000:]
    assert "run on demand" in ran.text
    assert client.get(f"/api/deployments/{dep['id']}").json()["smoke_result"]["checks"][0]["ok"]


def test_required_env_is_checked_before_start_and_in_the_running_process(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    server_id = _server(client, lab_host)
    body = {
        "name": "needy",
        "server_id": server_id,
        "image": "dm-test/drops-env:v1",
        "internal_port": 80,
        "health_check": fast_health(),
        "domains": ["needy.test"],
        "tls": "off",
        "required_env": ["DATABASE_URL", "SECRET_KEY"],
        "env": {"DATABASE_URL": "postgres://db/needy"},
    }
    refused = client.post("/api/deployments", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("required environment: missing SECRET_KEY;")
    assert client.get("/api/deployments").json() == []
    # Given, but the image's entrypoint drops DATABASE_URL before the app starts.
    res = client.post("/api/deployments", json={**body, "secret_env": {"SECRET_KEY": "k"}})
    assert res.status_code == 201, res.text
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "failed", job_text(job)
    assert "lacks the required environment DATABASE_URL" in job["error"]
    assert "host /proc" in job_text(job) and "proxy switched" not in job_text(job)
    assert via_proxy(lab_host, "needy.test") != "v1"


def test_volume_data_survives_a_redeploy_and_a_rollback_and_a_delete_keeps_it(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    server_id = _server(client, lab_host)
    dep = _deploy(
        client,
        server_id,
        "keeper",
        domains=["keeper.test"],
        tls="off",
        volumes=[{"name": "data", "path": "/data"}],
    )
    lab_host.docker("exec", "dm-keeper-r1", "sh", "-c", "echo kept > /data/note")
    res = client.post(f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/web:v2"})
    assert wait_job(client, res.json()["job_id"])["status"] == "succeeded"
    assert lab_host.docker("exec", "dm-keeper-r2", "cat", "/data/note").stdout.strip() == "kept"
    lab_host.docker("exec", "dm-keeper-r2", "sh", "-c", "echo changed-by-v2 >> /data/note")
    res = client.post(f"/api/deployments/{dep['id']}/rollback", json={})
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(lab_host, "keeper.test") == "v1"
    # A rollback restores the code and settings, never the data.
    note = lab_host.docker("exec", "dm-keeper-r3", "cat", "/data/note").stdout.split()
    assert note == ["kept", "changed-by-v2"]
    diagnostics = client.get(f"/api/deployments/{dep['id']}/diagnostics").json()
    assert "dm-keeper-data" in str(diagnostics["volumes"])
    res = client.delete(f"/api/deployments/{dep['id']}")
    job = wait_job(client, res.json()["job_id"])
    assert "kept the volume(s) dm-keeper-data" in job_text(job)
    assert "dm-keeper-data" in lab_host.docker("volume", "ls", "--format", "{{.Name}}").stdout
    assert via_proxy(lab_host, "keeper.test") != "v1"  # the route went with the deployment
    lab_host.docker("volume", "rm", "dm-keeper-data")


def test_tls_internal_is_served_over_https_with_caddys_own_ca(
    e2e_client: TestClient, lab_host: LabHost, tmp_path: Path
) -> None:
    client = e2e_client
    server_id = _server(client, lab_host)
    _deploy(client, server_id, "secure", domains=["secure.test"], tls="internal")
    root = tmp_path / "root.crt"
    lab_host.docker("cp", "deploymate-proxy:/data/caddy/pki/authorities/local/root.crt", str(root))
    deadline = time.monotonic() + 10
    answer = via_https(lab_host, "secure.test", str(root))
    while answer != "v1" and time.monotonic() < deadline:  # the certificate is issued at load
        time.sleep(0.3)
        answer = via_https(lab_host, "secure.test", str(root))
    assert answer == "v1"
    # Plain HTTP for that name redirects to HTTPS.
    res = httpx.get(f"http://{lab_host.address}/version", headers={"Host": "secure.test"})
    assert res.status_code in (301, 308) and res.headers["location"].startswith("https://")


def test_the_proxy_removed_or_restarted_comes_back_with_every_route(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    client = e2e_client
    server_id = _server(client, lab_host)
    _deploy(client, server_id, "sturdy", domains=["sturdy.test"], tls="off")
    # Restarted by Docker (or a reboot): Caddy reads the config file DeployMate wrote.
    lab_host.docker("restart", "deploymate-proxy")
    assert _eventually(lambda: via_proxy(lab_host, "sturdy.test") == "v1")
    # Removed outright: install rebuilds it from the records.
    lab_host.docker("rm", "-f", "deploymate-proxy")
    assert via_proxy(lab_host, "sturdy.test").startswith("error")
    res = client.post(f"/api/proxy/{server_id}/install")
    assert res.status_code == 200, res.text
    assert res.json()["running"] and "installing the proxy" in " ".join(res.json()["log"])
    assert via_proxy(lab_host, "sturdy.test") == "v1"
    # An upgrade replaces the container and keeps the routes.
    res = client.post(f"/api/proxy/{server_id}/upgrade")
    assert res.status_code == 200 and res.json()["version"], res.text
    assert via_proxy(lab_host, "sturdy.test") == "v1"
    state = client.get("/api/proxy/edge").json()
    assert state["routes"] == [{"deployment": "sturdy", "domains": ["sturdy.test"]}]


def _eventually(check: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()
