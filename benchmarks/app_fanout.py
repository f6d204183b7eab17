"""Fan-out of an app release: one environment on five lab hosts against the same app on one.

Run as root from the repository: `.venv/bin/python -m benchmarks.app_fanout`.

The app has a web service behind the proxy (health check, smoke check) and a worker. Each round
deploys the next version (v1, v2 alternately) to `one` (a single server) and to `five` (five
servers, at most 5 at a time; then twice with `parallel: 1`), and times the job from its
creation to its end by the records' own clocks. Prints the medians, the ratio five / one (the
goal: at most 1.5x) and the CPU each took: DeployMate's own (this process: API, worker, SSH
client) and the whole machine's (every lab host's dockerd, containerd and containers share
this machine's cores, which real servers do not).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi.testclient import TestClient

from deploymate.app import create_app
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.e2e.conftest import key_server
from tests.support import images
from tests.support.api import login
from tests.support.apps import app_spec, via_proxy
from tests.support.deploy import job_text, wait_job
from tests.support.lab import Lab


@dataclass
class Run:
    seconds: float  # the job, from its creation to its end (old containers removed)
    serving: float  # from the job's creation until the app release was recorded serving
    control_cpu: float  # CPU seconds of this process
    machine_cpu: float  # CPU seconds of the whole machine


def _machine_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot (/proc/stat)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _deploy(
    client: TestClient, app: str, version: str, servers: list[str], parallel: int = 5
) -> Run:
    text = app_spec(app, version, {"staging": {"servers": servers, "parallel": parallel}})
    cpu, machine = time.process_time(), _machine_cpu()
    res = client.post(
        f"/api/apps/{app}/deploy",
        json={"environment": "staging", "spec": text, "commit": "bec0ffee" + version[1:]},
    )
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    release = client.get(f"/api/apps/{app}/releases").json()[0]
    started = _stamp(job["created_at"])
    return Run(
        (_stamp(job["finished_at"]) - started).total_seconds(),
        (_stamp(release["finished_at"]) - started).total_seconds(),
        time.process_time() - cpu,
        _machine_cpu() - machine,
    )


def _median(runs: list[Run], what: str) -> float:
    return statistics.median(getattr(r, what) for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dm-bench-fanout-"))
    with Lab() as lab:
        images.build_images(None)
        images.build_caddy_image(None)
        hosts = lab.add_hosts(6)
        settings = make_settings(
            tmp, f"sqlite+aiosqlite:///{tmp / 'dm.db'}", ssh_allow_private=True
        )
        with TestClient(create_app(settings)) as client:
            client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
            for i, host in enumerate(hosts):
                made = client.post("/api/servers", json=key_server(host, f"h{i}"))
                assert made.status_code == 201, made.text
            single, fleet = ["h0"], [f"h{i}" for i in range(1, 6)]
            # The first deploy of each streams the images and installs the proxies: not timed.
            _deploy(client, "one", "v1", single)
            _deploy(client, "five", "v1", fleet)
            one, five, serial = [], [], []
            for i in range(args.rounds):
                version = "v2" if i % 2 == 0 else "v1"
                one.append(_deploy(client, "one", version, single))
                five.append(_deploy(client, "five", version, fleet))
                assert [via_proxy(h, "web.five.test") for h in hosts[1:]] == [version] * 5
            for i in range(2):  # the same five servers one at a time (parallel: 1)
                serial.append(_deploy(client, "five", "v2" if i % 2 == 0 else "v1", fleet, 1))
    cores = os.cpu_count() or 1
    for label, runs in (
        ("1 server ", one),
        ("5 servers", five),
        ("5 servers, 1 at a time", serial),
    ):
        print(
            f"app release (web + worker) on {label}: median {_median(runs, 'serving'):.3f}s to "
            f"serving, {_median(runs, 'seconds'):.3f}s to the end; "
            f"CPU: DeployMate {_median(runs, 'control_cpu'):.2f}s, "
            f"machine {_median(runs, 'machine_cpu'):.2f}s of {cores} cores"
        )
    ratio = _median(five, "seconds") / _median(one, "seconds")
    live = _median(five, "serving") / _median(one, "serving")
    print(
        f"ratio 5 servers / 1 server: {live:.2f}x to serving, {ratio:.2f}x to the end, "
        f"over {args.rounds} rounds (goal: 1.5x)"
    )
    gain = _median(serial, "seconds") / _median(five, "seconds")
    print(f"5 servers at once against one at a time: {gain:.2f}x faster")


if __name__ == "__main__":
    main()
