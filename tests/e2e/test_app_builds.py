"""Services built from the commit on the control host: never the working tree, never twice,
and a failed build leaves the environment as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import key_server
from tests.support.apps import via_proxy
from tests.support.lab import LabHost
from tests.support.server import RunningServer

pytestmark = pytest.mark.usefixtures("test_images")

SPEC = """app: built
services:
  web:
    build: {context: web%s}
    port: 80
    health: {path: /version, interval: 0.2, retries: 25}
    domains: [web.built.test]
    tls: off
    drain: 0
environments:
  staging:
    servers: [edge]
"""


def _cli(args: list[str], cfg: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEPLOYMATE_CLI_CONFIG": str(cfg), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "deploymate.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.test", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def test_a_build_takes_the_commit_never_the_working_tree_and_happens_once(
    tmp_path: Path, running_server: RunningServer, lab_host: LabHost
) -> None:
    cfg = tmp_path / "cli.json"
    login = ["login", "--url", running_server.url, "--username", "admin", "--password"]
    assert _cli([*login, running_server.admin_password], cfg, tmp_path).returncode == 0
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        ).json()["csrf_token"]
        res = http.post(
            "/api/servers", json=key_server(lab_host, "edge"), headers={"X-CSRF-Token": csrf}
        )
        assert res.status_code == 201, res.text
    repo = tmp_path / "built"
    (repo / "web").mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "deploymate.yaml").write_text(SPEC % "")
    (repo / "web" / "Dockerfile").write_text("FROM dm-test/web:v1\nCOPY version /www/version\n")
    (repo / "web" / "version").write_text("b1")
    commit = _commit(repo, "b1")
    # Uncommitted and untracked changes in the build context never reach the image.
    (repo / "web" / "version").write_text("uncommitted")
    (repo / "web" / "stray.txt").write_text("untracked")

    first = _cli(["app", "deploy", "staging", "--allow-dirty"], cfg, repo)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"sending the source of commit {commit[:12]}" in first.stdout
    assert f"[web] building built-web:{commit} from web (docker build)" in first.stdout
    assert "COPY version /www/version" in first.stdout  # the build's output, live
    assert via_proxy(lab_host, "web.built.test") == "b1"

    again = _cli(["app", "deploy", "staging", "--allow-dirty"], cfg, repo)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"built-web:{commit} already built" in again.stdout
    assert "sending the source" not in again.stdout and "docker build" not in again.stdout

    # A Dockerfile that is not in the commit: the build fails, nothing is touched.
    (repo / "web" / "version").write_text("b2")
    (repo / "deploymate.yaml").write_text(SPEC % ", dockerfile: Nope.dockerfile")
    (repo / "web" / "stray.txt").unlink()
    _commit(repo, "b2 with a wrong Dockerfile path")
    broken = _cli(["app", "deploy", "staging"], cfg, repo)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "no Dockerfile at web/Nope.dockerfile in this commit" in broken.stdout + broken.stderr
    assert "nothing was deployed" in broken.stdout + broken.stderr
    assert via_proxy(lab_host, "web.built.test") == "b1"

    # A symlink in the commit that leaves the repository refuses the whole source.
    (repo / "deploymate.yaml").write_text(SPEC % "")
    (repo / "web" / "escape").symlink_to("/etc")
    _commit(repo, "an escaping symlink")
    escaping = _cli(["app", "deploy", "staging"], cfg, repo)
    assert escaping.returncode == 1, escaping.stdout + escaping.stderr
    assert "leaves the repository" in escaping.stdout + escaping.stderr
    assert via_proxy(lab_host, "web.built.test") == "b1"
