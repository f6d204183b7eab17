"""Releases behind the proxy under load, on a lab host: how many requests a deploy drops.

Run as root from the repository: `.venv/bin/python -m benchmarks.zero_downtime`.

1. Load run: about 200 requests a second through the proxy (a new connection each) during 10
   back-to-back redeploys and 2 rollbacks of one deployment (drain 8 s, as in production where
   it defaults to 10 s); every failed or wrong-version answer counts. Prints `failed N of M`.
2. Ratio: a DeployMate redeploy (drain 0) against the bare commands of the same swap, measured
   here in the same run: `docker run` the new container on the proxy's network, poll it at its
   address until it answers, write the proxy config and POST it to Caddy's admin socket, then
   `docker rm -f` the old container.
3. Rollback time: POST rollback until the job succeeded (drain 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from deploymate.app import create_app
from deploymate.runtime import proxy
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.e2e.conftest import key_server
from tests.support import images
from tests.support.api import login
from tests.support.deploy import fast_health, wait_job
from tests.support.lab import Lab, LabHost
from tests.support.load import steady_load

DOMAIN = "bench.test"


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _redeploy(client: TestClient, dep_id: int, version: str) -> tuple[float, float]:
    """(seconds until the release is recorded serving, seconds until the job ended), from the
    records' own clocks: the release ends when the proxy sends users to it; the job after the
    old container is stopped and removed."""
    res = client.post(
        f"/api/deployments/{dep_id}/redeploy", json={"image": f"dm-test/web:{version}"}
    )
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "succeeded", job
    release = client.get(f"/api/deployments/{dep_id}/releases").json()[0]
    queued = _stamp(job["created_at"])
    serving = (_stamp(release["finished_at"]) - queued).total_seconds()
    return serving, (_stamp(job["finished_at"]) - queued).total_seconds()


def via_proxy_version(host: LabHost) -> str:
    """Each deploy counts as succeeded only when the new version answers through the proxy."""
    return httpx.get(f"http://{host.address}/version", headers={"Host": DOMAIN}).text.strip()


def _rollback(client: TestClient, dep_id: int) -> float:
    """Seconds from the request until the earlier release is recorded serving again."""
    res = client.post(f"/api/deployments/{dep_id}/rollback", json={})
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "succeeded", job
    release = client.get(f"/api/deployments/{dep_id}/releases").json()[0]
    return (_stamp(release["finished_at"]) - _stamp(job["created_at"])).total_seconds()


def _ip(host: LabHost, name: str) -> str:
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return host.docker("inspect", "--format", fmt, name).stdout.strip()


def bare_swaps(host: LabHost, rounds: int, workdir: Path) -> tuple[list[float], list[float]]:
    """The same swap by hand, on the proxy DeployMate installed (a route of its own): seconds
    until the proxy sends users to the new container, and until the old one is removed."""
    socket = (
        host.docker(
            "volume", "inspect", "--format", "{{.Mountpoint}}", proxy.CONFIG_VOLUME
        ).stdout.strip()
        + f"/{proxy.ADMIN_SOCKET}"
    )
    switched, times, old = [], [], None
    for i in range(rounds + 1):
        version = "v2" if i % 2 else "v1"
        name = f"bare-{i}"
        started = time.monotonic()
        host.docker(
            "run", "-d", "--network", proxy.NETWORK, "--name", name, f"dm-test/web:{version}"
        )
        ip = _ip(host, name)
        while host.exec(
            "curl", "-sf", "-o", "/dev/null", f"http://{ip}/version", check=False
        ).returncode:
            time.sleep(0.05)
        config = proxy.render([proxy.Route("bare", ("bare.test",), f"{name}:80", "off")])
        (workdir / "c.json").write_text(json.dumps(config))
        subprocess.run(
            [
                "curl",
                "-sf",
                "--unix-socket",
                socket,
                "-H",
                "Host: ",
                "-H",
                "Content-Type: application/json",
                "--data",
                f"@{workdir / 'c.json'}",
                "http://admin/load",
            ],
            check=True,
            capture_output=True,
        )
        at_switch = time.monotonic() - started
        if old:
            host.docker("rm", "-f", old)
        if i:
            switched.append(at_switch)
            times.append(time.monotonic() - started)
        old = name
    host.docker("rm", "-f", old or "")
    return switched, times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=7, help="redeploys for the ratio")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dm-bench-zd-"))
    with Lab() as lab:
        images.build_images(None)
        images.build_caddy_image(None)
        host = lab.add_host()
        settings = make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'dm.db'}")
        with TestClient(create_app(settings)) as client:
            client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
            sid = client.post("/api/servers", json=key_server(host, "bench")).json()["id"]
            body: dict[str, Any] = {
                "name": "bench",
                "server_id": sid,
                "image": "dm-test/web:v1",
                "internal_port": 80,
                "health_check": fast_health(interval=0.2, retries=100),
                "domains": [DOMAIN],
                "tls": "off",
                "drain_seconds": 8,
            }
            res = client.post("/api/deployments", json=body)
            dep_id = res.json()["id"]
            assert wait_job(client, res.json()["job_id"])["status"] == "succeeded"
            started = time.monotonic()
            with steady_load(
                f"http://{host.address}/version",
                DOMAIN,
                rate=args.rate,
                workers=16,
                accept=("v1", "v2"),
            ) as report:
                time.sleep(1)
                for i in range(10):
                    _redeploy(client, dep_id, "v2" if i % 2 == 0 else "v1")
                    assert via_proxy_version(host) == ("v2" if i % 2 == 0 else "v1")
                    if i in (4, 9):
                        _rollback(client, dep_id)
                time.sleep(1)
            took = time.monotonic() - started
            # A proxy upgrade replaces the container that holds ports 80 and 443.
            with steady_load(
                f"http://{host.address}/version", DOMAIN, rate=args.rate, workers=16
            ) as upgrade_load:
                time.sleep(1)
                upgraded = client.post(f"/api/proxy/{sid}/upgrade")
                assert upgraded.status_code == 200, upgraded.text
                time.sleep(1)
            changed = client.patch(f"/api/deployments/{dep_id}", json={"drain_seconds": 0})
            assert wait_job(client, changed.json()["job_id"])["status"] == "succeeded"
            ours = [
                _redeploy(client, dep_id, "v2" if i % 2 == 0 else "v1") for i in range(args.rounds)
            ]
            rollbacks = [_rollback(client, dep_id) for _ in range(3)]
            base_switch, base = bare_swaps(host, args.rounds, tmp)
    print(
        f"load: {args.rate:g} req/s for {took:.0f}s during 10 redeploys and 2 rollbacks (drain 8s)"
    )
    print(
        f"failed {report.failed} of {report.sent}; answers {dict(report.answers)}"
        + (f"; errors {dict(report.errors)}" if report.errors else "")
    )
    failures = [t for t, answer in upgrade_load.timeline if answer.startswith("ERROR")]
    window = f" within {max(failures) - min(failures):.2f}s" if failures else ""
    print(
        f"proxy upgrade (container replaced): failed {upgrade_load.failed} of "
        f"{upgrade_load.sent}{window}"
    )
    bs, b = statistics.median(base_switch), statistics.median(base)
    ds = statistics.median(s for s, _ in ours)
    d = statistics.median(t for _, t in ours)
    print(f"bare swap behind the proxy (run, poll, load config | rm old): {bs:.3f}s | {b:.3f}s")
    print(f"DeployMate redeploy (gated, via SSH, recorded | old removed): {ds:.3f}s | {d:.3f}s")
    print(f"ratio DeployMate / bare: {ds / bs:.2f}x to serving, {d / b:.2f}x to the end")
    print(f"rollback: median {statistics.median(rollbacks):.3f}s (max {max(rollbacks):.3f}s)")


if __name__ == "__main__":
    main()
