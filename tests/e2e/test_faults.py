"""Fault injection on real lab hosts: `deploymate serve` killed with SIGKILL at every step of a
release, the target's sshd stopped, its dockerd restarted, its proxy killed, the database
unavailable for 10 seconds (SQLite locked, PostgreSQL stopped), the target's disk full while an
image ships.

The process is held at a step by a failpoint (DEPLOYMATE_FAILPOINTS, core/failpoints.py), so
each fault lands exactly there; the faults themselves are real. Every case ends the same way:
what the records say serves is what the host's proxy or port really answers (no release is
reported succeeded while the previous version serves), and the next deploy succeeds with no
manual cleanup."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from deploymate.core.failpoints import RELEASE_STEPS
from tests.conftest import ADMIN_PASSWORD
from tests.e2e.conftest import key_server
from tests.support import postgres
from tests.support import server as dm_server
from tests.support.apps import via_proxy
from tests.support.deploy import (
    admin_session,
    fast_health,
    fetch,
    job_text,
    wait_for_log,
    wait_job,
)
from tests.support.lab import LabHost

DOMAIN = "steady.test"
# Steps after which the new release is already recorded as serving (the drain and clean-up of
# the old container come after the record).
RECORDED = {"release.drain", "release.cleanup"}


@dataclass
class Site:
    data: Path
    deployment_id: int
    version: str  # what serves now
    env: dict[str, str]


@contextmanager
def serving(
    site_data: Path, env: dict[str, str], failpoints: str = ""
) -> Iterator[tuple[dm_server.RunningServer, httpx.Client]]:
    extra = {**env, "DEPLOYMATE_FAILPOINTS": failpoints}
    server = dm_server.start(site_data, ADMIN_PASSWORD, extra)
    http = admin_session(server.url, ADMIN_PASSWORD)
    try:
        yield server, http
    finally:
        http.close()
        server.stop()


def _steady(server_id: int, **extra: Any) -> dict[str, Any]:
    """The API body of the deployment every case breaks: dm-test/web:v1 behind the proxy."""
    return {
        "name": "steady",
        "server_id": server_id,
        "image": "dm-test/web:v1",
        "internal_port": 80,
        "health_check": fast_health(),
        "domains": [DOMAIN],
        "tls": "off",
        "drain_seconds": 0.2,
        **extra,
    }


def _other(version: str) -> str:
    return "v2" if version == "v1" else "v1"


def _redeploy(http: httpx.Client, site: Site, version: str) -> int:
    res = http.post(
        f"/api/deployments/{site.deployment_id}/redeploy", json={"image": f"dm-test/web:{version}"}
    )
    assert res.status_code == 202, res.text
    return int(res.json()["job_id"])


def _recorded_version(http: httpx.Client, site: Site) -> str:
    state = http.get(f"/api/deployments/{site.deployment_id}").json()
    assert state["status"] == "running", state
    image: str = state["current_release"]["image"]
    return image.rsplit(":", 1)[1]


def _containers(host: LabHost) -> list[str]:
    names = host.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return sorted(n for n in names if n.startswith("dm-steady-"))


def _truthful(http: httpx.Client, site: Site, host: LabHost) -> str:
    """The records and the host agree: what serves is what the records say."""
    recorded = _recorded_version(http, site)
    assert via_proxy(host, DOMAIN) == recorded, (recorded, via_proxy(host, DOMAIN))
    containers = _containers(host)
    assert len(containers) == 1, containers  # nothing left behind, nothing claimed missing
    return recorded


def _next_deploy_succeeds(http: httpx.Client, site: Site, host: LabHost) -> None:
    target = _other(site.version)
    job = wait_job(http, _redeploy(http, site, target))
    assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(host, DOMAIN) == target
    assert _recorded_version(http, site) == target
    site.version = target


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, lab_host: LabHost, test_images: dict[str, str]
) -> Site:
    """One deployment behind the host's proxy, serving v1; the tests take it from there."""
    data = tmp_path_factory.mktemp("faults") / "data"
    with serving(data, {}) as (_, http):
        sid = http.post("/api/servers", json=key_server(lab_host, "faulty")).json()["id"]
        res = http.post(
            "/api/deployments", json=_steady(sid, smoke=[{"http": "/version", "expect": 200}])
        )
        assert res.status_code == 201, res.text
        job = wait_job(http, res.json()["job_id"])
        assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(lab_host, DOMAIN) == "v1"
    return Site(data, int(res.json()["id"]), "v1", {})


# --- kill -9 of the control host at every step ----------------------------------------------


@pytest.mark.parametrize("step", RELEASE_STEPS)
def test_kill_9_at_each_step_of_a_release(site: Site, lab_host: LabHost, step: str) -> None:
    before, target = site.version, _other(site.version)
    with serving(site.data, site.env, failpoints=step) as (server, http):
        job_id = _redeploy(http, site, target)
        wait_for_log(http, job_id, f"failpoint {step}")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    with serving(site.data, site.env) as (_, http):
        job = http.get(f"/api/jobs/{job_id}").json()
        assert job["status"] == "interrupted", job_text(job)
        serving_now = _truthful(http, site, lab_host)
        # Before the record, the old release serves; after it, the new one does.
        assert serving_now == (target if step in RECORDED else before), step
        activity = http.get(f"/api/deployments/{site.deployment_id}/activity").json()
        assert activity[0]["action"] == "reconciled", activity[0]
        site.version = serving_now
        _next_deploy_succeeds(http, site, lab_host)


# --- the target fails mid-release ------------------------------------------------------------


def test_sshd_stopped_mid_release(site: Site, lab_host: LabHost) -> None:
    before = site.version
    with serving(site.data, site.env, failpoints="release.health=3") as (_, http):
        job_id = _redeploy(http, site, _other(before))
        wait_for_log(http, job_id, "failpoint release.health")
        lab_host.stop_sshd()
        try:
            job = wait_job(http, job_id)
        finally:
            lab_host.start_sshd()
        assert job["status"] == "failed", job_text(job)
        assert "previous release keeps serving" in (job["error"] or ""), job_text(job)
        assert _recorded_version(http, site) == before
        assert via_proxy(lab_host, DOMAIN) == before
        _next_deploy_succeeds(http, site, lab_host)  # the new container left behind goes
        assert _truthful(http, site, lab_host) == site.version


def test_dockerd_restarted_mid_release(site: Site, lab_host: LabHost) -> None:
    with serving(site.data, site.env, failpoints="release.health=3") as (_, http):
        job_id = _redeploy(http, site, _other(site.version))
        wait_for_log(http, job_id, "failpoint release.health")
        lab_host.restart_dockerd()
        job = wait_job(http, job_id)
        assert job["status"] in ("succeeded", "failed"), job_text(job)
        site.version = _truthful(http, site, lab_host)
        _next_deploy_succeeds(http, site, lab_host)
        assert _truthful(http, site, lab_host) == site.version


def test_the_proxy_killed_mid_release(site: Site, lab_host: LabHost) -> None:
    with serving(site.data, site.env, failpoints="release.switch=3") as (_, http):
        job_id = _redeploy(http, site, _other(site.version))
        wait_for_log(http, job_id, "failpoint release.switch")
        proxies = lab_host.docker("ps", "-q", "--filter", "name=deploymate-proxy").stdout.split()
        assert proxies, lab_host.docker("ps", "-a").stdout
        lab_host.docker("kill", *proxies)
        job = wait_job(http, job_id)
        text = job_text(job)
        if job["status"] == "failed":  # named, and no promise that anything still serves
            assert "deploymate proxy install" in text, text
            assert "keeps serving" not in (job["error"] or ""), text
        _next_deploy_succeeds(http, site, lab_host)
        assert _truthful(http, site, lab_host) == site.version


# --- the database goes away for 10 seconds ---------------------------------------------------


def test_sqlite_locked_for_10_seconds_mid_release(site: Site, lab_host: LabHost) -> None:
    with serving(site.data, site.env, failpoints="release.health=1") as (_, http):
        job_id = _redeploy(http, site, _other(site.version))
        wait_for_log(http, job_id, "failpoint release.health")
        locker = sqlite3.connect(site.data / "deploymate.db", timeout=30, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            time.sleep(10)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        job = wait_job(http, job_id)
        assert job["status"] in ("succeeded", "failed"), job_text(job)
        site.version = _truthful(http, site, lab_host)
        _next_deploy_succeeds(http, site, lab_host)


def test_postgresql_stopped_for_10_seconds_mid_release(
    lab_host_factory: Any, pg_server: postgres.PostgresServer, test_images: dict[str, str]
) -> None:
    host = lab_host_factory()
    database = pg_server.create_database()
    here = Path(pg_server.datadir).parent / f"faults-{database}"
    site = Site(here, 0, "v1", {"DEPLOYMATE_DATABASE_URL": pg_server.url(database)})
    try:
        with serving(here, site.env) as (_, http):
            sid = http.post("/api/servers", json=key_server(host, "pg-faulty")).json()["id"]
            res = http.post("/api/deployments", json=_steady(sid))
            assert res.status_code == 201, res.text
            site.deployment_id = int(res.json()["id"])
            assert wait_job(http, res.json()["job_id"])["status"] == "succeeded"
        with serving(here, site.env, failpoints="release.health=1") as (_, http):
            job_id = _redeploy(http, site, "v2")
            wait_for_log(http, job_id, "failpoint release.health")
            pg_server.pause()
            try:
                time.sleep(10)
            finally:
                pg_server.resume()
            job = wait_job(http, job_id)
            assert job["status"] in ("succeeded", "failed", "interrupted"), job_text(job)
            if job["status"] == "interrupted":  # the records could not follow the target
                assert "database was unavailable" in job["error"], job_text(job)
            site.version = _truthful(http, site, host)
            _next_deploy_succeeds(http, site, host)
    finally:
        pg_server.drop_database(database)


# --- the target's disk fills while an image ships --------------------------------------------


def test_disk_full_while_the_image_ships(
    tmp_path: Path, lab_host_factory: Any, test_images: dict[str, str]
) -> None:
    host = lab_host_factory(disk_mb=48)
    data = tmp_path / "data"
    with serving(data, {}) as (_, http):
        sid = http.post("/api/servers", json=key_server(host, "small")).json()["id"]
        res = http.post(
            "/api/deployments",
            json={
                "name": "steady",
                "server_id": sid,
                "image": "dm-test/web:v1",
                "internal_port": 80,
                "health_check": fast_health(),
            },
        )
        assert res.status_code == 201, res.text
        dep = res.json()
        assert wait_job(http, dep["job_id"])["status"] == "succeeded"
        port = dep["external_port"]
        assert fetch(host.address, port) == "v1"
        filler = host.data_root / "filler"
        with filler.open("wb") as fh:  # the disk fills up: writes stop at ENOSPC
            chunk = b"\0" * (1 << 20)
            try:
                while True:
                    fh.write(chunk)
                    fh.flush()
            except OSError:
                pass
        site = Site(data, int(dep["id"]), "v1", {})
        job = wait_job(http, _redeploy(http, site, "v2"))
        assert job["status"] == "failed", job_text(job)
        text = job_text(job)
        assert "no space left on device" in text.lower(), text
        assert "previous release keeps serving" in job["error"], text
        assert fetch(host.address, port) == "v1"
        state = http.get(f"/api/deployments/{dep['id']}").json()
        assert state["current_release"]["number"] == 1
        filler.unlink()
        job = wait_job(http, _redeploy(http, site, "v2"))
        assert job["status"] == "succeeded", job_text(job)
        assert fetch(host.address, port) == "v2"
