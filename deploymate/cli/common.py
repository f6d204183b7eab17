"""Pieces shared by the CLI's command modules.

The CLI starts fast: a command module imports only typer and rich at load time; what a command
needs (the database, SSH, HTTP) is imported in its body, so `--help` pays for none of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from deploymate.core.caller import Caller
from deploymate.core.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from deploymate.core.config import Settings

T = TypeVar("T")
CLI_CALLER = Caller.system("cli", "local")

EnvFile = Annotated[
    Path | None, typer.Option("--env-file", help="Read DEPLOYMATE_* settings from this file.")
]


def check_data_dir(settings: Settings) -> None:
    """Fail with one line before anything starts when the data directory cannot be written."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = settings.data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"invalid configuration: DEPLOYMATE_DATA_DIR {settings.data_dir} "
            f"is not writable ({exc.strerror})"
        ) from None


def load_checked_settings(env_file: Path | None) -> Settings:
    from deploymate.core.config import load_settings

    settings = load_settings(env_file)
    check_data_dir(settings)
    return settings


def with_session(
    settings: Settings,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    migrate: bool = True,
) -> T:
    """Run `work` with a database session on the control host (migrated first)."""
    from deploymate.bootstrap import prepare_database
    from deploymate.core import db

    async def run() -> T:
        if migrate:
            await prepare_database(settings, bootstrap=False)
        engine = db.make_engine(settings.resolved_database_url)
        try:
            async with db.session_factory(engine)() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())
