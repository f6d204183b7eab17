"""Operator audits from the CLI: exit 0 clean, 1 on a finding, 2 when they cannot run; the
instance smoke against a real `deploymate serve`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from cryptography.fernet import Fernet

from tests.cli.test_cli import CLI, run
from tests.support.server import RunningServer
from tests.unit.test_audits import GITHUB, GOOD


def test_audit_env_exits_by_what_it_found(tmp_path: Path) -> None:
    good = tmp_path / "good.env"
    good.write_text(GOOD)
    clean = run(["audit", "env", str(good)], {})
    assert clean.returncode == 0 and "clean" in clean.stdout, clean.stderr
    weak = tmp_path / "weak.env"
    weak.write_text(GOOD.replace("SECURE_COOKIES=true", "SECURE_COOKIES=false"))
    found = run(["audit", "env", str(weak), "--json"], {})
    assert found.returncode == 1
    assert [f["check"] for f in json.loads(found.stdout)["findings"]] == ["secure_cookies"]
    missing = run(["audit", "env", str(tmp_path / "nope.env")], {})
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_audit_secrets_masks_what_it_finds_and_reports_what_it_cannot_read(
    tmp_path: Path,
) -> None:
    (tmp_path / "ci.yml").write_text(f"token: {GITHUB}\n")
    locked = tmp_path / "locked.env"
    locked.write_text(f"GH={GITHUB}\n")
    locked.chmod(0)
    (tmp_path / "loop").symlink_to(tmp_path)
    # Without root's capabilities, so the mode-000 file is really unreadable here.
    unprivileged = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", *CLI]
    done = subprocess.run(
        [*unprivileged, "audit", "secrets", str(tmp_path)],
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert f"github_token: {tmp_path}/ci.yml:1: ghp_" in done.stdout
    assert f"unreadable: {locked}: skipped: Permission denied" in done.stdout
    assert GITHUB not in done.stdout + done.stderr
    missing = run(["audit", "secrets", str(tmp_path / "absent")], {})
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_audit_runtime_on_the_control_host(tmp_path: Path) -> None:
    env = {"DEPLOYMATE_DATA_DIR": str(tmp_path / "data")}
    clean = run(["audit", "runtime"], env)
    assert clean.returncode == 0 and "runtime: clean" in clean.stdout, clean.stderr
    production = {
        "DEPLOYMATE_DATA_DIR": str(tmp_path / "prod"),
        "DEPLOYMATE_ENV": "production",
        "DEPLOYMATE_SECURE_COOKIES": "true",
        "DEPLOYMATE_LOCAL_DOCKER_ENABLED": "true",
        "DEPLOYMATE_SERVER_CREDENTIALS_KEY": Fernet.generate_key().decode(),
    }
    found = run(["audit", "runtime"], production)
    assert found.returncode == 1 and "WARN local_docker" in found.stdout, found.stderr


def test_smoke_checks_a_live_instance(running_server: RunningServer) -> None:
    creds = {
        "DEPLOYMATE_SMOKE_USERNAME": "admin",
        "DEPLOYMATE_SMOKE_PASSWORD": running_server.admin_password,
    }
    passed = run(["smoke", "--url", running_server.url], creds)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "every check passed" in passed.stdout and "ok   api /api/apps" in passed.stdout
    wrong = run(
        ["smoke", "--url", running_server.url, "--json"],
        {**creds, "DEPLOYMATE_SMOKE_PASSWORD": "not-the-password"},
    )
    assert wrong.returncode == 1
    checks = {c["name"]: c["ok"] for c in json.loads(wrong.stdout)["checks"]}
    assert checks == {"health": True, "sign-in": False}
    for bad in ("ftp://example.com", "example.com"):
        refused = run(["smoke", "--url", bad], creds)
        assert refused.returncode == 2 and "is not an http(s) URL" in refused.stderr
