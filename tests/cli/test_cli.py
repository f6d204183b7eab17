"""The CLI against a real database and a real running server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.server import RunningServer

CLI = [sys.executable, "-m", "deploymate.cli"]


def run(
    args: list[str], env: dict[str, str], input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **env},
        input=input_text,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_all(
    calls: list[tuple[list[str], dict[str, str]]],
) -> list[subprocess.CompletedProcess[str]]:
    """Independent invocations side by side (each is its own process)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda call: run(*call), calls))


def test_help_everywhere_names_values_not_python_types() -> None:
    commands = (
        [],
        ["db"],
        ["admin"],
        ["serve"],
        ["login"],
        ["admin", "create"],
        ["deploy"],
        ["exec"],
        ["logs"],
        ["servers", "list"],
        ["delete"],
    )
    env = {"COLUMNS": "160"}
    answers = run_all([([*a, "--help"], env) for a in commands])
    for args, res in zip(commands, answers, strict=True):
        assert res.returncode == 0 and "Usage" in res.stdout, args
        for tag in ("<str>", "<int>", "<bool>", "<float>", "list[", "<path>", "{"):
            assert tag not in res.stdout, (args, tag, res.stdout)
    assert "Exit codes: 0 done, 1 failed, 2 usage or refused" in answers[0].stdout
    assert "--health-retries" in answers[6].stdout and "SECONDS" in answers[6].stdout


def test_version() -> None:
    from deploymate import __version__

    assert run(["version"], {}).stdout.strip() == f"deploymate {__version__}"
    assert run(["--version"], {}).stdout.strip() == f"deploymate {__version__}"


def test_usage_errors_exit_2_on_stderr_and_commands_need_a_login(tmp_path: Path) -> None:
    env = {"DEPLOYMATE_CLI_CONFIG": str(tmp_path / "none.json")}
    calls = [
        (["deploy"], env),  # NAME missing
        (["deploy", "web", "--port", "many"], env),
        (["no-such-command"], env),
        (["status", "web"], env),  # not logged in
        (["servers", "list", "--json"], env),
    ]
    missing, bad_port, unknown, status, servers = run_all(calls)
    for res in (missing, bad_port, unknown):
        assert res.returncode == 2 and res.stdout == "" and res.stderr, res
    assert "Invalid value for '--port'" in bad_port.stderr
    for res in (status, servers):
        assert res.returncode == 2 and res.stdout == "", res
        assert "run `deploymate login --url URL` first" in res.stderr


def test_an_unreachable_instance_is_said_in_words_and_exits_1(tmp_path: Path) -> None:
    from tests.support.server import free_port

    cfg = tmp_path / "cli.json"
    url = f"http://127.0.0.1:{free_port()}"
    cfg.write_text(json.dumps({"url": url, "token": "dm_x"}))
    res = run(["status", "web"], {"DEPLOYMATE_CLI_CONFIG": str(cfg)})
    assert res.returncode == 1 and res.stdout == ""
    assert f"nothing answers at {url}" in res.stderr and "Errno" not in res.stderr


def test_db_commands_and_admin_create(tmp_path: Path) -> None:
    env = {"DEPLOYMATE_DATA_DIR": str(tmp_path)}
    assert "none" in run(["db", "current"], env).stdout
    assert "(head)" in run(["db", "upgrade"], env).stdout
    assert "up to date" in run(["db", "current"], env).stdout
    res = run(["admin", "create", "ops", "--role", "member", "--generate"], env)
    assert res.returncode == 0 and "temporary password" in res.stdout
    dup = run(["admin", "create", "ops", "--generate"], env)
    assert dup.returncode == 2 and dup.stderr.startswith("error: username already taken")
    bad = run(["admin", "create", "bad;name", "--generate"], env)
    assert bad.returncode == 2 and "username" in bad.stderr and "Traceback" not in bad.stderr
    weak = run(["admin", "create", "weakling"], env, input_text="password1234\npassword1234\n")
    assert weak.returncode == 2 and "too common" in weak.stderr


def test_bad_configuration_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        ({"DEPLOYMATE_DATA_DIR": str(blocker / "sub")}, "DEPLOYMATE_DATA_DIR"),
        (
            {"DEPLOYMATE_DATA_DIR": str(tmp_path), "DEPLOYMATE_DATABASE_URL": "oracle://x"},
            "DEPLOYMATE_DATABASE_URL",
        ),
        (
            {
                "DEPLOYMATE_DATA_DIR": str(tmp_path),
                "DEPLOYMATE_DATABASE_URL": "postgresql+psycopg://u@127.0.0.1:1/x",
            },
            "database unavailable",
        ),
        ({"DEPLOYMATE_ENV": "production"}, "DEPLOYMATE_SERVER_CREDENTIALS_KEY"),
    ]
    results = run_all([(["serve", "--port", "1"], env) for env, _ in cases])
    for (_, named), res in zip(cases, results, strict=True):
        assert res.returncode == 2, res
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "Traceback" not in res.stderr


def test_login_stores_a_private_token_and_whoami_uses_it(
    tmp_path: Path, running_server: RunningServer
) -> None:
    cfg = tmp_path / "cli.json"
    env = {"DEPLOYMATE_CLI_CONFIG": str(cfg)}
    res = run(
        [
            "login",
            "--url",
            running_server.url,
            "--username",
            "admin",
            "--password",
            running_server.admin_password,
        ],
        env,
    )
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert running_server.admin_password not in cfg.read_text()
    who = run(["whoami"], env)
    assert who.returncode == 0 and who.stdout.startswith("admin (admin)")
    wrong = run(
        [
            "login",
            "--url",
            running_server.url,
            "--username",
            "admin",
            "--password",
            "nope-nope-nope",
        ],
        {"DEPLOYMATE_CLI_CONFIG": str(tmp_path / "other.json")},
    )
    assert wrong.returncode == 2 and "invalid username or password" in wrong.stderr
    assert not (tmp_path / "other.json").exists()
    nobody = run(["whoami"], {"DEPLOYMATE_CLI_CONFIG": str(tmp_path / "none.json")})
    assert nobody.returncode == 2 and "deploymate login" in nobody.stderr


def test_worker_command_refuses_sqlite(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "deploymate.cli", "worker"],
        capture_output=True,
        text=True,
        env={**os.environ, "DEPLOYMATE_DATA_DIR": str(tmp_path)},
        timeout=60,
    )
    assert res.returncode == 2 and "needs PostgreSQL" in res.stderr
