"""A git repository made by a test, and the CLI run in it against a real `deploymate serve`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.conftest import key_server
from tests.support.lab import LabHost
from tests.support.server import RunningServer


def cli(
    args: list[str], cfg: Path, cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`deploymate ARGS` in `cwd`, with the CLI config file `cfg`."""
    env = {**os.environ, "DEPLOYMATE_CLI_CONFIG": str(cfg), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "deploymate.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.test", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Everything in the tree committed; the commit id."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def login_and_add_server(
    running_server: RunningServer, lab_host: LabHost, name: str, cfg: Path, cwd: Path
) -> None:
    """The CLI signed in as admin, and the lab host registered as server `name`."""
    login = ["login", "--url", running_server.url, "--username", "admin", "--password"]
    assert cli([*login, running_server.admin_password], cfg, cwd).returncode == 0
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        ).json()["csrf_token"]
        res = http.post(
            "/api/servers", json=key_server(lab_host, name), headers={"X-CSRF-Token": csrf}
        )
        assert res.status_code == 201, res.text
