"""`deploymate app validate` and `app schema`: no server, no instance, exit codes a CI can use."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import run
from tests.unit.test_app_spec import BASE


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
