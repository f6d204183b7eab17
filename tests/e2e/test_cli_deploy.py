"""The deploy CLI against a real `deploymate serve` and a lab host, with live progress."""

from __future__ import annotations

import json
import os
import re
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

    # Each step shows its time; the run ends with the total.
    assert re.search(r"^\s+\d+\.\ds  starting dm-cliweb-r1", first.stdout, re.M), first.stdout
    assert re.search(r"deploy of cliweb succeeded in \d+\.\ds", first.stdout)

    broken = _cli(["deploy", "cliweb", "--image", "dm-test/crash:v1"], cfg)
    assert broken.returncode == 1 and "deploy of cliweb failed after" in broken.stderr
    assert "deploy of cliweb failed" not in broken.stdout  # failures go to stderr
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
    assert missing.returncode == 2 and "no deployment named nope" in missing.stderr
    assert missing.stdout == ""


def _login(cfg: Path, server: RunningServer) -> None:
    args = ["login", "--url", server.url, "--username", "admin"]
    res = _cli([*args, "--password", server.admin_password], cfg)
    assert res.returncode == 0, res.stderr


def test_every_deploy_option_reaches_an_existing_deployment(
    tmp_path: Path, running_server: RunningServer, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    cfg = tmp_path / "cli.json"
    _login(cfg, running_server)
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        ).json()["csrf_token"]
        res = http.post(
            "/api/servers",
            json=key_server(lab_host, "opt-box"),
            headers={"X-CSRF-Token": csrf},
        )
        assert res.status_code == 201, res.text

    # Creating needs a place: no --server and no --local is refused (exit 2) before anything.
    nowhere = _cli(["deploy", "optweb", "--image", "dm-test/web:v1"], cfg)
    assert nowhere.returncode == 2 and "--server SERVER" in nowhere.stderr, nowhere.stderr
    both = _cli(["deploy", "optweb", "--server", "opt-box", "--local"], cfg)
    assert both.returncode == 2 and "give one" in both.stderr
    unknown = _cli(["deploy", "optweb", "--image", "x:1", "--server", "nope"], cfg)
    assert unknown.returncode == 2 and "deploymate servers list" in unknown.stderr

    args = ["deploy", "optweb", "--server", "opt-box", "--image", "dm-test/web:v1"]
    created = _cli([*args, "--health-path", "/version", "--health-interval", "0.3"], cfg)
    assert created.returncode == 0, created.stdout + created.stderr
    port = int(created.stdout.split("public port ")[1].split()[0])

    new_port = port + 1 if port < 8999 else port - 1
    changed = _cli(
        [
            "deploy",
            "optweb",
            "--port",
            "8080",
            "--env",
            "PORT=8080",
            "--external-port",
            str(new_port),
            "--secret-env",
            "TOKEN=opt-secret-91",
            "--label",
            "team=core",
            "--cmd",
            "/bin/sh",
            "--cmd",
            "/start.sh",
            "--restart-policy",
            "always",
            "--memory",
            "256m",
            "--cpus",
            "0.5",
            "--health-type",
            "http",
            "--health-path",
            "/index.html",
            "--health-status",
            "200",
            "--health-retries",
            "7",
            "--health-interval",
            "0.4",
            "--health-timeout",
            "3",
            "--health-start-period",
            "0.1",
        ],
        cfg,
    )
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert "opt-secret-91" not in changed.stdout + changed.stderr
    shown = _cli(["status", "optweb", "--json"], cfg)
    assert shown.returncode == 0, shown.stderr
    dep = json.loads(shown.stdout)["deployment"]
    assert dep["internal_port"] == 8080 and dep["external_port"] == new_port
    assert dep["env"] == {"PORT": "8080"} and dep["secret_env_keys"] == ["TOKEN"]
    assert dep["labels"] == {"team": "core"} and dep["command"] == ["/bin/sh", "/start.sh"]
    assert dep["restart_policy"] == "always" and dep["memory_limit"] == "256m"
    assert dep["cpu_limit"] == 0.5
    assert dep["health_check"] == {
        "type": "http",
        "path": "/index.html",
        "expected_status": 200,
        "retries": 7,
        "interval": 0.4,
        "timeout": 3.0,
        "start_period": 0.1,
    }
    assert fetch(lab_host.address, new_port) == "v1" and fetch(lab_host.address, port) is None

    # Only the given health option changes; the others stay as they were.
    narrowed = _cli(["deploy", "optweb", "--health-retries", "9"], cfg)
    assert narrowed.returncode == 0, narrowed.stderr
    health = json.loads(_cli(["status", "optweb", "--json"], cfg).stdout)["deployment"]
    assert health["health_check"]["retries"] == 9
    assert health["health_check"]["path"] == "/index.html"

    # Read commands speak JSON for scripts.
    listed = json.loads(_cli(["deployments", "list", "--json"], cfg).stdout)
    assert "optweb" in [d["name"] for d in listed]
    servers = json.loads(_cli(["servers", "list", "--json"], cfg).stdout)
    assert any(s["name"] == "opt-box" and s["deployments"] >= 1 for s in servers)
    assert "opt-box" in _cli(["servers", "list"], cfg).stdout
    lines = json.loads(_cli(["logs", "optweb", "--json", "--timestamps"], cfg).stdout)["lines"]
    assert lines and re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", lines[0]), lines
    assert json.loads(_cli(["whoami", "--json"], cfg).stdout)["username"] == "admin"
    assert json.loads(_cli(["version", "--json"], cfg).stdout)["version"]

    # A one-off command in the container, streamed; its failure is exit 1.
    ran = _cli(["exec", "optweb", "--", "cat", "/www/version"], cfg)
    assert ran.returncode == 0 and ran.stdout.strip() == "v1", ran.stdout + ran.stderr
    failed = _cli(["exec", "optweb", "--", "sh", "-c", "echo oops >&2; exit 4"], cfg)
    assert failed.returncode == 1 and "oops" in failed.stdout
    assert "sh exited with status 4" in failed.stderr
    injected = _cli(["exec", "optweb", "--", "echo", "$(id)", ";", "touch", "/tmp/pwned"], cfg)
    assert injected.stdout.strip() == "$(id) ; touch /tmp/pwned"  # arguments, never a shell line
    with httpx.Client(base_url=running_server.url) as http:
        http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        )
        audit = http.get("/api/admin/audit", params={"action": "deployment.exec"}).json()
    programs = [(e["details"]["program"], e["details"]["arguments"]) for e in audit["items"]]
    assert ("cat", 1) in programs and ("sh", 2) in programs
    assert "oops" not in json.dumps(audit)  # arguments may hold secrets: never recorded

    # stop, start, restart, delete (delete wants --yes without a terminal)
    assert _cli(["stop", "optweb"], cfg).returncode == 0
    assert fetch(lab_host.address, new_port) is None
    again = _cli(["stop", "optweb"], cfg)
    assert again.returncode in (0, 1)  # stopping a stopped container is harmless either way
    assert _cli(["start", "optweb"], cfg).returncode == 0
    assert fetch(lab_host.address, new_port) == "v1"
    restarted = _cli(["restart", "optweb"], cfg)
    assert restarted.returncode == 0 and "restart of optweb succeeded" in restarted.stdout
    refused = _cli(["delete", "optweb"], cfg)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert fetch(lab_host.address, new_port) == "v1"
    deleted = _cli(["delete", "optweb", "--yes"], cfg)
    assert deleted.returncode == 0, deleted.stderr
    assert fetch(lab_host.address, new_port) is None
    gone = _cli(["status", "optweb"], cfg)
    assert gone.returncode == 2 and "no deployment named optweb" in gone.stderr


def test_the_proxy_options_move_a_deployment_behind_the_proxy_and_smoke_runs_on_demand(
    tmp_path: Path, running_server: RunningServer, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    cfg = tmp_path / "cli.json"
    _login(cfg, running_server)
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        ).json()["csrf_token"]
        http.post(
            "/api/servers", json=key_server(lab_host, "px-box"), headers={"X-CSRF-Token": csrf}
        )
    args = ["deploy", "pxweb", "--server", "px-box", "--image", "dm-test/web:v1"]
    created = _cli([*args, "--health-path", "/version", "--health-interval", "0.3"], cfg)
    assert created.returncode == 0, created.stdout + created.stderr
    bad = _cli(["deploy", "pxweb", "--volume", "data"], cfg)
    assert bad.returncode == 2 and "NAME:/path" in bad.stderr, bad.stderr
    moved = _cli(
        [
            "deploy",
            "pxweb",
            "--domain",
            "px.test",
            "--tls",
            "off",
            "--volume",
            "data:/data",
            "--require-env",
            "DATABASE_URL",
            "-e",
            "DATABASE_URL=postgres://db/px",
            "--smoke-http",
            "/version=200",
            "--drain",
            "0.5",
        ],
        cfg,
    )
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "proxy switched px.test" in moved.stdout and "required env checked" in moved.stdout
    dep = json.loads(_cli(["status", "pxweb", "--json"], cfg).stdout)["deployment"]
    assert dep["domains"] == ["px.test"] and dep["external_port"] is None
    assert dep["volumes"] == [{"name": "data", "path": "/data", "read_only": False}]
    assert dep["required_env"] == ["DATABASE_URL"] and dep["drain_seconds"] == 0.5
    res = httpx.get(f"http://{lab_host.address}/version", headers={"Host": "px.test"})
    assert res.text.strip() == "v1"
    smoked = _cli(["smoke", "pxweb"], cfg)
    assert smoked.returncode == 0 and "ok   GET /version: passed" in smoked.stdout, smoked.stdout
    # The proxy as operators see it: state, version, and the routes from the records.
    state = _cli(["proxy", "status", "px-box"], cfg)
    assert state.returncode == 0, state.stderr
    assert "proxy on px-box: running, Caddy 2." in state.stdout, state.stdout
    assert "px.test -> pxweb" in state.stdout
    parsed = json.loads(_cli(["proxy", "status", "px-box", "--json"], cfg).stdout)
    assert parsed["running"] and parsed["routes"] == [
        {"deployment": "pxweb", "domains": ["px.test"]}
    ]
    unknown = _cli(["proxy", "status", "no-such-box"], cfg)
    assert unknown.returncode == 2 and "no server named no-such-box" in unknown.stderr


def test_servers_add_pins_the_host_key_only_with_its_checked_fingerprint(
    tmp_path: Path, running_server: RunningServer, lab_host: LabHost
) -> None:
    cfg = tmp_path / "cli.json"
    login = ["login", "--url", running_server.url, "--username", "admin", "--password"]
    assert _cli([*login, running_server.admin_password], cfg).returncode == 0
    base = [
        "servers",
        "add",
        "added-by-cli",
        "--host",
        lab_host.address,
        "--port",
        str(lab_host.ssh_port),
        "--user",
        "root",
        "--key-file",
        str(lab_host.client_key),
    ]
    # Not told which key to trust (and no terminal to ask on): refused, naming what is offered.
    unasked = _cli(base, cfg)
    assert unasked.returncode == 2, unasked.stdout + unasked.stderr
    assert lab_host.host_key_fingerprint in unasked.stderr and "--fingerprint" in unasked.stderr
    wrong = _cli([*base, "--fingerprint", "SHA256:" + "A" * 43], cfg)
    assert wrong.returncode == 2 and "does not match" in wrong.stderr
    added = _cli([*base, "--fingerprint", lab_host.host_key_fingerprint], cfg)
    assert added.returncode == 0, added.stdout + added.stderr
    assert "key pinned; connection tested" in added.stdout
    listed = json.loads(_cli(["servers", "list", "--json"], cfg).stdout)
    server = next(s for s in listed if s["name"] == "added-by-cli")
    assert server["host_key"] and server["last_check_ok"] is True
    assert lab_host.client_key.read_text().strip()[40:80] not in json.dumps(listed)
