"""The control host dies mid-deploy: the job is marked interrupted and the state reconciled."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_PASSWORD
from tests.e2e.conftest import key_server
from tests.support import server as dm_server
from tests.support.apps import app_spec, via_proxy
from tests.support.deploy import admin_session, fast_health, fetch, wait_for_log, wait_job
from tests.support.lab import LabHost


def _names(host: LabHost) -> list[str]:
    return host.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_kill_mid_deploy_then_restart_reconciles(
    tmp_path: Path, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    data = tmp_path / "data"
    first = dm_server.start(data, ADMIN_PASSWORD)
    try:
        http = admin_session(first.url, ADMIN_PASSWORD)
        sid = http.post("/api/servers", json=key_server(lab_host, "box")).json()["id"]
        dep = http.post(
            "/api/deployments",
            json={
                "name": "phoenix",
                "server_id": sid,
                "image": "dm-test/web:v1",
                "internal_port": 80,
                "health_check": fast_health(),
            },
        ).json()
        assert wait_job(http, dep["job_id"])["status"] == "succeeded"
        port = dep["external_port"]
        slow = fast_health(start_period=30)  # the candidate waits here when the process dies
        job_id = http.patch(
            f"/api/deployments/{dep['id']}", json={"image": "dm-test/web:v2", "health_check": slow}
        ).json()["job_id"]
        deadline = time.monotonic() + 30
        while "dm-phoenix-r2-candidate" not in _names(lab_host) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "dm-phoenix-r2-candidate" in _names(lab_host)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()
    assert fetch(lab_host.address, port) == "v1"  # the old release never stopped serving

    second = dm_server.start(data, ADMIN_PASSWORD)
    try:
        http = admin_session(second.url, ADMIN_PASSWORD)
        job = http.get(f"/api/jobs/{job_id}").json()
        assert job["status"] == "interrupted", job
        state = http.get(f"/api/deployments/{dep['id']}").json()
        assert state["status"] == "running" and state["current_release"]["number"] == 1
        assert state["active_job_id"] is None
        releases = http.get(f"/api/deployments/{dep['id']}/releases").json()
        assert releases[0]["number"] == 2 and releases[0]["status"] == "failed"
        names = [n for n in _names(lab_host) if n.startswith("dm-phoenix-")]
        assert names == ["dm-phoenix-r1"]  # no release claims a container that is not there
        activity = http.get(f"/api/deployments/{dep['id']}/activity").json()
        assert activity[0]["action"] == "reconciled" and activity[0]["actor"] == "system"
        assert fetch(lab_host.address, port) == "v1"
        # the lock went with the dead job: the next deploy runs without manual cleanup
        again = http.post(
            f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/web:v2"}
        )
        assert again.status_code == 202, again.text
        assert wait_job(http, again.json()["job_id"])["status"] == "succeeded"
        assert fetch(lab_host.address, port) == "v2"
        http.delete(f"/api/deployments/{dep['id']}")
    finally:
        second.stop()


def test_kill_after_the_proxy_switch_then_restart_routes_back_to_what_the_records_say(
    tmp_path: Path, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    data = tmp_path / "data"
    first = dm_server.start(data, ADMIN_PASSWORD)
    try:
        http = admin_session(first.url, ADMIN_PASSWORD)
        sid = http.post("/api/servers", json=key_server(lab_host, "edge")).json()["id"]
        dep = http.post(
            "/api/deployments",
            json={
                "name": "lazarus",
                "server_id": sid,
                "image": "dm-test/web:v1",
                "internal_port": 80,
                "health_check": fast_health(),
                "domains": ["lazarus.test"],
                "tls": "off",
            },
        ).json()
        assert wait_job(http, dep["job_id"])["status"] == "succeeded"
        # The smoke check holds the release after the switch, when the process dies.
        slow = [{"command": ["sleep", "30"], "timeout": 60}]
        job_id = http.patch(
            f"/api/deployments/{dep['id']}", json={"image": "dm-test/web:v2", "smoke": slow}
        ).json()["job_id"]
        wait_for_log(http, job_id, "proxy switched")
        assert via_proxy(lab_host, "lazarus.test") == "v2"
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()

    second = dm_server.start(data, ADMIN_PASSWORD)
    try:
        http = admin_session(second.url, ADMIN_PASSWORD)
        assert http.get(f"/api/jobs/{job_id}").json()["status"] == "interrupted"
        state = http.get(f"/api/deployments/{dep['id']}").json()
        assert state["status"] == "running" and state["current_release"]["number"] == 1
        names = [n for n in _names(lab_host) if n.startswith("dm-lazarus-")]
        assert names == ["dm-lazarus-r1"]
        # The proxy follows the records again: the release that never finished is gone.
        assert via_proxy(lab_host, "lazarus.test") == "v1"
    finally:
        second.stop()


def test_kill_during_an_app_release_then_restart_brings_every_service_back(
    tmp_path: Path, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    data = tmp_path / "data"
    environments: dict[str, dict[str, object]] = {"staging": {"servers": ["edge"]}}

    def deploy(http: httpx.Client, text: str) -> int:
        res = http.post(
            "/api/apps/phoenix/deploy",
            json={"environment": "staging", "spec": text, "commit": "feedf00d"},
        )
        assert res.status_code == 202, res.text
        return int(res.json()["job_id"])

    first = dm_server.start(data, ADMIN_PASSWORD)
    try:
        http = admin_session(first.url, ADMIN_PASSWORD)
        assert http.post("/api/servers", json=key_server(lab_host, "edge")).status_code == 201
        assert (
            wait_job(http, deploy(http, app_spec("phoenix", "v1", environments)))["status"]
            == "succeeded"
        )
        # v2's smoke check holds the release after the web's switch, when the process dies.
        held = app_spec("phoenix", "v2", environments).replace(
            "smoke: [{http: /version, expect: 200}]",
            'smoke: [{command: [sleep, "30"], timeout: 60}]',
        )
        job_id = deploy(http, held)
        wait_for_log(http, job_id, "proxy switched")
        assert via_proxy(lab_host, "web.phoenix.test") == "v2"
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        first.stop()

    second = dm_server.start(data, ADMIN_PASSWORD)
    try:
        http = admin_session(second.url, ADMIN_PASSWORD)
        assert http.get(f"/api/jobs/{job_id}").json()["status"] == "interrupted"
        release = http.get("/api/apps/phoenix/releases").json()[0]
        assert release["number"] == 2 and release["status"] == "failed"
        assert "interrupted" in release["detail"]
        # Web and worker both back on release 1: the environment is never left mixed.
        assert via_proxy(lab_host, "web.phoenix.test") == "v1"
        names = sorted(n for n in _names(lab_host) if n.startswith("dm-phoenix-"))
        assert names == ["dm-phoenix-staging-web-r1", "dm-phoenix-staging-worker-r1"]
        for dep in http.get("/api/deployments").json():
            assert dep["status"] == "running" and dep["current_release"]["number"] == 1, dep
        # The locks went with the dead job: the next release runs.
        again = deploy(http, app_spec("phoenix", "v2", environments))
        assert wait_job(http, again)["status"] == "succeeded"
        assert via_proxy(lab_host, "web.phoenix.test") == "v2"
    finally:
        second.stop()
