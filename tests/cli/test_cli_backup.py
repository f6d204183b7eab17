"""`deploymate backup create|dry-run` against a real running server, with the stored token, and
`deploymate restore` of its bundle into a fresh control host's database."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.server import RunningServer

CLI = [sys.executable, "-m", "deploymate.cli"]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _login(server: RunningServer, cfg: Path, username: str, password: str) -> dict[str, str]:
    env = {"DEPLOYMATE_CLI_CONFIG": str(cfg)}
    res = run(["login", "--url", server.url, "--username", username, "--password", password], env)
    assert res.returncode == 0, res.stderr
    return env


def _member(server: RunningServer, username: str, password: str) -> None:
    """A member who has already chosen their own password."""
    with httpx.Client(base_url=server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": server.admin_password}
        ).json()["csrf_token"]
        res = http.post(
            "/api/admin/users",
            json={"username": username, "role": "member", "password": "temporary-pass-123"},
            headers={"X-CSRF-Token": csrf},
        )
        assert res.status_code == 201, res.text
    with httpx.Client(base_url=server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": username, "password": "temporary-pass-123"}
        ).json()["csrf_token"]
        res = http.post(
            "/api/auth/change-password",
            json={"current_password": "temporary-pass-123", "new_password": password},
            headers={"X-CSRF-Token": csrf},
        )
        assert res.status_code == 200, res.text


def test_create_writes_a_private_bundle_and_dry_run_prints_the_table(
    tmp_path: Path, running_server: RunningServer
) -> None:
    env = _login(running_server, tmp_path / "cli.json", "admin", running_server.admin_password)
    target = tmp_path / "backup.json"
    res = run(["backup", "create", str(target)], env)
    assert res.returncode == 0, res.stderr
    assert f"wrote {target}" in res.stdout and "users" in res.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    doc = json.loads(target.read_text())
    assert doc["manifest"]["format"] == "deploymate-backup"
    assert doc["manifest"]["counts"]["users"] >= 1
    assert running_server.admin_password not in target.read_text()

    again = run(["backup", "create", str(target)], env)
    assert again.returncode == 2 and "pass --force" in again.stderr
    assert run(["backup", "create", str(target), "--force"], env).returncode == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    check = run(["backup", "dry-run", str(target)], env)
    assert check.returncode == 0, check.stderr  # warnings (admin exists here) are not errors
    lines = check.stdout.splitlines()
    assert lines[0].split()[:4] == ["section", "records", "status", "reasons"]
    sections = (
        "bundle",
        "users",
        "servers",
        "deployments",
        "templates",
        "releases",
        "apps",
        "app_secrets",
        "app_releases",
        "webhooks",
        "settings",
    )
    rows = {p[0]: p[2] for p in (line.split() for line in lines[1:]) if p and p[0] in sections}
    assert list(rows) == list(sections)
    assert rows["bundle"] == "ok" and rows["users"] == "warn" and rows["settings"] == "ok"
    assert "name_clash" in check.stdout and "nothing was changed" in check.stdout


def test_dry_run_exits_1_on_errors_and_bad_files(
    tmp_path: Path, running_server: RunningServer
) -> None:
    env = _login(running_server, tmp_path / "cli.json", "admin", running_server.admin_password)
    target = tmp_path / "backup.json"
    assert run(["backup", "create", str(target)], env).returncode == 0
    doc = json.loads(target.read_text())
    doc["sections"]["users"][0]["role"] = "member"  # tampered: the checksum no longer matches
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc))
    res = run(["backup", "dry-run", str(tampered)], env)
    assert res.returncode == 1
    assert "checksum_mismatch" in res.stdout and "error" in res.stdout

    garbage = tmp_path / "garbage.json"
    garbage.write_text("this is not a bundle")
    res = run(["backup", "dry-run", str(garbage)], env)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: the bundle is not valid JSON: Expecting value at line 1 column 1"
    ]
    truncated = tmp_path / "truncated.json"
    truncated.write_bytes(target.read_bytes()[:300])
    res = run(["backup", "dry-run", str(truncated)], env)
    assert res.returncode == 2 and res.stderr.startswith("error: the bundle is truncated")

    missing = run(["backup", "dry-run", str(tmp_path / "nope.json")], env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_members_cannot_create_or_check_bundles(
    tmp_path: Path, running_server: RunningServer
) -> None:
    _member(running_server, "cli.member", "cli-member-password-9")
    env = _login(running_server, tmp_path / "cli.json", "cli.member", "cli-member-password-9")
    target = tmp_path / "backup.json"
    res = run(["backup", "create", str(target)], env)
    assert res.returncode == 2 and "admin role required" in res.stderr
    assert not target.exists()
    target.write_text("{}")
    res = run(["backup", "dry-run", str(target)], env)
    assert res.returncode == 2 and "admin role required" in res.stderr


def test_restore_applies_a_bundle_to_a_fresh_control_host_once(
    tmp_path: Path, running_server: RunningServer
) -> None:
    env = _login(running_server, tmp_path / "cli.json", "admin", running_server.admin_password)
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login",
            json={"username": "admin", "password": running_server.admin_password},
        ).json()["csrf_token"]
        res = http.post(
            "/api/servers",
            headers={"X-CSRF-Token": csrf},
            json={
                "name": "restore-1",
                "host": "127.0.0.1",
                "port": 2209,
                "username": "deploy",
                "auth_type": "password",
                "password": "restore-server-pass-7",
            },
        )
        assert res.status_code == 201, res.text
    bundle = tmp_path / "backup.json"
    made = run(["backup", "create", str(bundle), "--include-password-hashes"], env)
    assert made.returncode == 0, made.stderr
    assert "holds password hashes" in made.stdout
    key = (running_server.data_dir / "server-credentials.key").read_text().strip()
    fresh = tmp_path / "fresh"
    local = {"DEPLOYMATE_DATA_DIR": str(fresh), "DEPLOYMATE_SERVER_CREDENTIALS_KEY": key}

    asked = subprocess.run(
        [*CLI, "restore", str(bundle)],
        env={**os.environ, **local},
        input="yes\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 2 and "type restore to confirm" in asked.stderr
    done = run(["restore", str(bundle), "--yes"], local)
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout and "1 servers" in done.stdout
    assert "temporary passwords" not in done.stdout  # the hashes came with the bundle
    with sqlite3.connect(fresh / "deploymate.db") as db:
        assert db.execute("select name, port from servers").fetchall() == [("restore-1", 2209)]
        users = dict(db.execute("select username, must_change_password from users").fetchall())
    assert users["admin"] == 0

    again = run(["restore", str(bundle), "--yes"], local)
    assert again.returncode == 2 and "not empty (1 servers)" in again.stderr
    merged = run(["restore", str(bundle), "--yes", "--merge"], local)
    assert merged.returncode == 0, merged.stderr
    assert "kept as they are here (servers): restore-1" in merged.stdout

    other = {**local, "DEPLOYMATE_DATA_DIR": str(tmp_path / "other")}
    other["DEPLOYMATE_SERVER_CREDENTIALS_KEY"] = "x" * 43 + "="
    refused = run(["restore", str(bundle), "--yes"], other)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "credentials_unreadable" in refused.stdout  # the dry-run's table, then the error
    assert "nothing was changed" in refused.stderr
    assert "DEPLOYMATE_SERVER_CREDENTIALS_KEY" in refused.stderr + refused.stdout
