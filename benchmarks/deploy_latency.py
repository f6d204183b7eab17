"""DeployMate redeploy latency vs the bare docker commands doing the same swap, on a lab host.

Run as root from the repository: `.venv/bin/python -m benchmarks.deploy_latency [--rounds N]`.
Both sides run in the same session on the same lab host (its own sshd and dockerd):

- baseline: `docker run` the new version on a second port, poll it over HTTP until it answers,
  `docker rm -f` the old one (what an operator's script does, with no health gate on the old port);
- DeployMate: `POST /api/deployments/{id}/redeploy` until the job succeeded (image check, candidate,
  health gate, swap of the public port, cleanup), through SSH like any remote target.

Prints the medians, the ratio, and the median gap during which the public port had no server.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from deploymate.app import create_app
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.e2e.conftest import key_server
from tests.support import images
from tests.support.api import login
from tests.support.deploy import fast_health, wait_job
from tests.support.lab import Lab, LabHost


def _poll(url: str, want: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).text.strip() == want:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} never answered {want}")


def baseline(host: LabHost, rounds: int) -> list[float]:
    times, ports, old = [], (8101, 8102), None
    for i in range(rounds + 1):
        version = "v2" if i % 2 else "v1"
        name, port = f"bench-{i}", ports[i % 2]
        started = time.monotonic()
        host.docker("run", "-d", "--name", name, "-p", f"{port}:80", f"dm-test/web:{version}")
        _poll(f"http://{host.address}:{port}/version", version)
        if old:
            host.docker("rm", "-f", old)
        if i:  # the first run only sets up the "old" container
            times.append(time.monotonic() - started)
        old = name
    host.docker("rm", "-f", old or "")
    return times


def deploymate_redeploys(host: LabHost, rounds: int) -> tuple[list[float], list[float]]:
    tmp = Path(tempfile.mkdtemp(prefix="dm-bench-"))
    settings = make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'dm.db'}")
    times, gaps = [], []
    with TestClient(create_app(settings)) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
        sid = client.post("/api/servers", json=key_server(host, "bench")).json()["id"]
        health = fast_health(interval=0.2, retries=100)
        res = client.post(
            "/api/deployments",
            json={
                "name": "bench",
                "server_id": sid,
                "image": "dm-test/web:v1",
                "internal_port": 80,
                "health_check": health,
            },
        )
        assert res.status_code == 201, res.text
        dep = res.json()
        assert wait_job(client, dep["job_id"])["status"] == "succeeded"
        for i in range(rounds):
            version = "v2" if i % 2 == 0 else "v1"
            started = time.monotonic()
            job_id = client.post(
                f"/api/deployments/{dep['id']}/redeploy", json={"image": f"dm-test/web:{version}"}
            ).json()["job_id"]
            job = wait_job(client, job_id)
            times.append(time.monotonic() - started)
            assert job["status"] == "succeeded", job
            release = client.get(f"/api/deployments/{dep['id']}/releases").json()[0]
            gaps.extend(
                float(line.split("after a ")[1].split("s gap")[0])
                for line in release["log"]
                if "s gap" in line
            )
        wait_job(client, client.delete(f"/api/deployments/{dep['id']}").json()["job_id"])
    return times, gaps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with Lab() as lab:
        images.build_images(None)
        host = lab.add_host()
        images.copy_images(["dm-test/web:v1", "dm-test/web:v2"], host.docker_host)
        base = baseline(host, args.rounds)
        ours, gaps = deploymate_redeploys(host, args.rounds)
    b, d = statistics.median(base), statistics.median(ours)
    print(f"rounds: {args.rounds}")
    spread = "median {:.3f}s (min {:.3f}, max {:.3f})"
    print("bare docker swap (run, poll, rm old):", spread.format(b, min(base), max(base)))
    print("DeployMate redeploy (gated, via SSH):", spread.format(d, min(ours), max(ours)))
    print(f"ratio DeployMate / bare docker: {d / b:.2f}x")
    if gaps:
        print(
            f"public port gap during the swap: median {statistics.median(gaps):.3f}s "
            f"(max {max(gaps):.3f}s)"
        )


if __name__ == "__main__":
    main()
