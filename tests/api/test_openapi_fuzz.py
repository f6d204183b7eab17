"""The API against its own OpenAPI document: Schemathesis generates requests for every
operation of a running `deploymate serve` (an admin's API token) and checks that none answers
with a 5xx, a body that breaks the documented schema, or an undocumented status code.

Left out, each for a reason: the streams that only end when the client leaves (events, watch,
logs, exec, run), and the calls that end the token the run uses (logout, password changes
and resets, disabling a user, revoking a token)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.server import RunningServer

EXCLUDED = (
    r"(events|watch|/run|/exec|logs|change-password|logout|reset-password|disable"
    r"|tokens/\{token_id\})$"
)


def test_every_operation_answers_within_its_documented_schema(
    running_server: RunningServer, tmp_path: Path
) -> None:
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        ).json()["csrf_token"]
        token = http.post(
            "/api/auth/tokens", json={"name": "fuzz"}, headers={"X-CSRF-Token": csrf}
        ).json()["token"]
    st = Path(sys.executable).with_name("st")
    done = subprocess.run(
        [
            str(st),
            "run",
            f"{running_server.url}/api/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance",
            "--exclude-path-regex",
            EXCLUDED,
            "--max-examples",
            "8",
            "--workers",
            "2",
            "--seed",
            "20261202",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", report)
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(1)) > 1000, report
    tested = re.search(r"Tested: (\d+)", report)
    assert tested and int(tested.group(1)) >= 85, report
