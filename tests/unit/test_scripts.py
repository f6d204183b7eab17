"""The README's set-up scripts: the `make run` path must work, not only the `make test` one."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fake_venv(tmp_path: Path, stamp: str) -> Path:
    """A venv whose install stamp is newer than pyproject.toml, so no pip run is needed."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    (venv / stamp).touch()
    later = time.time() + 60
    os.utime(venv / stamp, (later, later))
    return venv


def test_ensure_venv_runtime_and_dev_paths(tmp_path: Path) -> None:
    for args, stamp in (([], ".installed"), (["dev"], ".installed-dev")):
        venv = _fake_venv(tmp_path / (args[0] if args else "runtime"), stamp)
        res = subprocess.run(
            ["bash", str(ROOT / "scripts" / "ensure-venv.sh"), *args],
            env={**os.environ, "VENV": str(venv)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, (args, res.stderr)


def test_ci_calls_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme.split("```")[1] and "make test" in readme.split("```")[1]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
