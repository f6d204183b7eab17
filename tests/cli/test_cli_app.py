"""`deploymate app validate` and `app schema`: no server, no instance, exit codes a CI can use."""

from __future__ import annotations

import json
from pathlib import Path

import asyncssh
import httpx

from tests.cli.test_cli import run
from tests.support.server import RunningServer
from tests.unit.test_app_spec import BASE

SECRET = "postgres://shop:cli-s3cret-77@db/shop"


def test_validate_says_valid_with_exit_0_and_every_problem_with_exit_1(tmp_path: Path) -> None:
    good = tmp_path / "deploymate.yaml"
    good.write_text(BASE)
    ok = run(["app", "validate", str(good)], {})
    assert ok.returncode == 0, ok.stderr
    assert "app shop is valid" in ok.stdout and "production (production)" in ok.stdout
    bad = tmp_path / "broken.yaml"
    bad.write_text(BASE.replace("port: 8000", 'port: "80a"').replace("rollout:", "rollot:"))
    refused = run(["app", "validate", str(bad)], {})
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f'{bad}:5:11: services.web.port: expected an integer 1-65535, got "80a"',
        f"{bad}:19:5: environments.production.rollot: unknown key; did you mean rollout?",
    ]
    as_json = json.loads(run(["app", "validate", str(bad), "--json"], {}).stdout)
    assert not as_json["valid"] and as_json["problems"][0]["line"] == 5
    # From standard input, and the default file in the working directory.
    piped = run(["app", "validate", "-"], {}, input_text=BASE)
    assert piped.returncode == 0 and "<stdin>: app shop is valid" in piped.stdout
    missing = run(["app", "validate", str(tmp_path / "nope.yaml")], {})
    assert missing.returncode == 1 and "cannot read it" in missing.stderr


def test_the_schema_is_printed_as_json() -> None:
    printed = run(["app", "schema"], {})
    assert printed.returncode == 0
    schema = json.loads(printed.stdout)
    assert schema["title"].startswith("DeployMate app spec") and "services" in schema["properties"]


def test_a_secret_is_read_from_stdin_never_from_an_argument(
    tmp_path: Path, running_server: RunningServer
) -> None:
    env = {"DEPLOYMATE_CLI_CONFIG": str(tmp_path / "cli.json")}
    login = ["login", "--url", running_server.url, "--username", "admin"]
    assert run([*login, "--password", running_server.admin_password], env).returncode == 0
    key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        ).json()["csrf_token"]
        headers = {"X-CSRF-Token": csrf}
        for name in ("staging-1", "prod-1", "prod-2"):
            body = {
                "name": name,
                "host": f"{name}.example.test",
                "port": 22,
                "username": "deploy",
                "auth_type": "key",
                "private_key": key,
            }
            res = http.post("/api/servers?test=false", json=body, headers=headers)
            assert res.status_code == 201, res.text
        assert http.post("/api/apps", json={"spec": BASE}, headers=headers).status_code == 201
        stored = run(
            ["secrets", "set", "shop", "production", "DATABASE_URL"], env, input_text=f"{SECRET}\n"
        )
        assert stored.returncode == 0, stored.stderr
        assert "stored for shop production" in stored.stdout
        assert SECRET not in stored.stdout + stored.stderr
        names = http.get("/api/apps/shop/secrets").json()
        assert names["production"] == ["DATABASE_URL"]
    # Previews: none yet, and a branch without one says so.
    none = run(["app", "previews", "list", "--app", "shop"], env)
    assert none.returncode == 0 and "shop has no preview" in none.stdout, none.stderr
    missing = run(["app", "previews", "destroy", "feature/x", "--app", "shop"], env)
    assert missing.returncode != 0 and "no preview of the branch feature/x" in missing.stderr
    # A name the spec does not list is refused with what to do; there is no --value option.
    other = run(["secrets", "set", "shop", "production", "API_KEY"], env, input_text="x\n")
    assert other.returncode == 2 and "add it under secrets:" in other.stderr
    assert "--value" not in run(["secrets", "set", "--help"], env).stdout


def test_a_ci_token_made_by_the_cli_deploys_to_staging_only(
    tmp_path: Path, running_server: RunningServer
) -> None:
    env = {"DEPLOYMATE_CLI_CONFIG": str(tmp_path / "cli.json")}
    login = ["login", "--url", running_server.url, "--username", "admin"]
    assert run([*login, "--password", running_server.admin_password], env).returncode == 0
    made = run(
        ["tokens", "create", "ci", "--scope", "deploy:staging", "--expires-in-days", "7"], env
    )
    assert made.returncode == 0, made.stderr
    assert "(deploy:staging, until " in made.stdout
    token = made.stdout.strip().splitlines()[-1]
    assert "ci " in run(["tokens", "list"], env).stdout
    # CI gives the URL and the token in the environment; no config file is needed.
    ci = {
        "DEPLOYMATE_CLI_CONFIG": str(tmp_path / "absent.json"),
        "DEPLOYMATE_API_URL": running_server.url,
        "DEPLOYMATE_API_TOKEN": token,
    }
    assert run(["whoami"], ci).returncode == 0
    ship = run(["app", "ship", "production", "--app", "shop", "--confirm", "shop"], ci)
    assert ship.returncode != 0 and "this API token may not ship" in ship.stderr
    assert "deploy:staging" in ship.stderr
    wider = run(["tokens", "create", "wider"], ci)
    assert wider.returncode != 0 and "may not POST /api/auth/tokens" in wider.stderr
    bad = run(["tokens", "create", "x", "--scope", "deploy:qa"], env)
    assert bad.returncode != 0 and "deploy:staging" in bad.stderr
