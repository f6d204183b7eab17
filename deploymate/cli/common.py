"""Pieces shared by the CLI's command modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deploymate.core.caller import Caller
from deploymate.core.config import Settings, load_settings
from deploymate.core.errors import ConfigurationError

CLI_CALLER = Caller.system("cli", "local")

EnvFile = Annotated[
    Path | None, typer.Option("--env-file", help="Read DEPLOYMATE_* settings from this file.")
]


def check_data_dir(settings: Settings) -> None:
    """Fail with one line before anything starts when the data directory cannot be written."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"invalid configuration: DEPLOYMATE_DATA_DIR {settings.data_dir} "
            f"is not writable ({exc.strerror})"
        ) from None


def load_checked_settings(env_file: Path | None) -> Settings:
    settings = load_settings(env_file)
    check_data_dir(settings)
    return settings
