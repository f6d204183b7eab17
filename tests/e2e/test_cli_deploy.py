"""The deploy CLI against a real `deploymate serve` and a lab host, with live progress."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import key_server
from tests.support.deploy import fetch
from tests.support.lab import LabHost
from tests.support.server import RunningServer


def _cli(args: list[str], cfg: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEPLOYMATE_CLI_CONFIG": str(cfg), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "deploymate.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_deploy_status_rollback_logs_from_the_cli(
    tmp_path: Path, running_server: RunningServer, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    cfg = tmp_path / "cli.json"
    assert (
        _cli(
            [
                "login",
                "--url",
                running_server.url,
                "--username",
                "admin",
                "--password",
                running_server.admin_password,
            ],
            cfg,
        ).returncode
        == 0
    )
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        ).json()
        res = http.post(
            "/api/servers",
            json=key_server(lab_host, "cli-box"),
            headers={"X-CSRF-Token": csrf["csrf_token"]},
        )
        assert res.status_code == 201, res.text

    first = _cli(
        [
            "deploy",
            "cliweb",
            "--image",
            "dm-test/web:v1",
            "--server",
            "cli-box",
            "--health-path",
            "/version",
            "--health-retries",
            "6",
            "--health-interval",
            "0.3",
            "--secret-env",
            "TOKEN=cli-secret-77",
        ],
        cfg,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "starting dm-cliweb-r1" in first.stdout and "deploy of cliweb succeeded" in first.stdout
    assert "cli-secret-77" not in first.stdout
    port = int(first.stdout.split("public port ")[1].split()[0])
    assert fetch(lab_host.address, port) == "v1"

    broken = _cli(["deploy", "cliweb", "--image", "dm-test/crash:v1"], cfg)
    assert broken.returncode == 1 and "deploy of cliweb failed" in broken.stdout
    assert fetch(lab_host.address, port) == "v1"

    upgraded = _cli(["deploy", "cliweb", "--image", "dm-test/web:v2"], cfg)
    assert upgraded.returncode == 0 and fetch(lab_host.address, port) == "v2"
    status = _cli(["status", "cliweb"], cfg)
    assert status.returncode == 0 and "serving release 3: dm-test/web:v2" in status.stdout
    assert "health: healthy" in status.stdout

    back = _cli(["rollback", "cliweb", "--to", "1"], cfg)
    assert back.returncode == 0, back.stdout + back.stderr
    assert fetch(lab_host.address, port) == "v1"
    listed = _cli(["deployments", "list"], cfg)
    assert "cliweb" in listed.stdout and "r4" in listed.stdout
    logs = _cli(["logs", "cliweb", "--tail", "5"], cfg)
    assert logs.returncode == 0 and "dm-test web v1 starting" in logs.stdout
    follower = subprocess.Popen(
        [sys.executable, "-m", "deploymate.cli", "logs", "cliweb", "-f", "--tail", "1"],
        env={**os.environ, "DEPLOYMATE_CLI_CONFIG": str(cfg)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        fetch(lab_host.address, port, "/index.html")  # a request after the follow started
        seen = ""
        deadline = time.monotonic() + 20
        while (
            "/index.html" not in seen and "response:200" not in seen and time.monotonic() < deadline
        ):
            fetch(lab_host.address, port, "/index.html")
            seen += follower.stdout.readline()
        assert "response:200" in seen, seen
    finally:
        follower.kill()
    missing = _cli(["status", "nope"], cfg)
    assert missing.returncode == 1 and "no deployment named nope" in missing.stderr
