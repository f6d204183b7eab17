"""Commands for the control host itself: run the service and the worker, migrate, accounts."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from deploymate import __version__
from deploymate.cli.common import CLI_CALLER, EnvFile, load_checked_settings, with_session
from deploymate.core.errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Manage accounts directly in the database (on the control host).", no_args_is_help=True
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


class RoleChoice(StrEnum):
    admin = "admin"
    member = "member"


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    env_file: EnvFile = None,
) -> None:
    """Run the web console and the API (migrates the database first)."""
    import uvicorn

    from deploymate.app import create_app
    from deploymate.bootstrap import prepare_database

    settings = load_checked_settings(env_file)
    asyncio.run(prepare_database(settings))
    err.print(
        f"DeployMate {__version__} ({settings.env}) on http://{host}:{port}  "
        f"data: {settings.data_dir}"
    )
    uvicorn.run(
        create_app(settings, prepared=True),
        host=host,
        port=port,
        log_level="info",
        proxy_headers=False,  # X-Forwarded-For counts only from DEPLOYMATE_TRUSTED_PROXIES
    )


def worker(env_file: EnvFile = None) -> None:
    """Run one more job worker (PostgreSQL only): claims queued deploys next to `serve`."""
    import signal

    from deploymate import context, wiring
    from deploymate.bootstrap import prepare_database

    settings = load_checked_settings(env_file)
    if not settings.resolved_database_url.startswith("postgresql"):
        raise ConfigurationError(
            "invalid configuration: `deploymate worker` needs PostgreSQL "
            "(DEPLOYMATE_DATABASE_URL); with SQLite, `deploymate serve` runs the only worker"
        )

    async def run() -> None:
        await prepare_database(settings, bootstrap=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with wiring.running(context.build(settings), embedded=False):
            err.print("DeployMate worker running; Ctrl-C to stop")
            await stop.wait()

    asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade(env_file: EnvFile = None) -> None:
    """Apply every pending migration."""
    from deploymate.core import db

    settings = load_checked_settings(env_file)

    async def run() -> str | None:
        engine = db.make_engine(settings.resolved_database_url)
        try:
            await db.upgrade(engine)
            return await db.current_revision(engine)
        finally:
            await engine.dispose()

    out.print(f"database at revision {asyncio.run(run())} (head)")


@db_app.command("current")
def db_current(env_file: EnvFile = None) -> None:
    """Show the database's revision and whether it is the newest."""
    from deploymate.core import db

    settings = load_checked_settings(env_file)

    async def run() -> str | None:
        engine = db.make_engine(settings.resolved_database_url)
        try:
            return await db.current_revision(engine)
        finally:
            await engine.dispose()

    current, head = asyncio.run(run()), db.head_revision()
    state = "up to date" if current == head else f"behind head {head}; run `deploymate db upgrade`"
    out.print(f"current revision: {current or 'none'} ({state})")


def _prompt_password(confirm: bool = True) -> str:
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return value


@admin_app.command("create")
def admin_create(
    username: Annotated[str, typer.Argument(help="Login name of the new account.")],
    role: Annotated[RoleChoice, typer.Option(help="admin or member.")] = RoleChoice.admin,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a temporary password.")
    ] = False,
    env_file: EnvFile = None,
) -> None:
    """Create an account (asks for a password, or generates one to change at first login)."""
    from deploymate.auth import service as auth_service
    from deploymate.auth.models import Role
    from deploymate.auth.schemas import UserCreate

    settings = load_checked_settings(env_file)
    UserCreate(username=username, role=Role(role.value))  # same validation as the API
    password = None if generate else _prompt_password()

    async def create(session: AsyncSession) -> str | None:
        _, generated = await auth_service.create_user(
            session,
            caller=CLI_CALLER,
            username=username,
            role=Role(role.value),
            password=password,
            must_change_password=generate,
        )
        return generated

    generated = with_session(settings, create)
    out.print(f"created {role.value} {username}")
    if generated:
        out.print(f"temporary password (shown once): {generated}")


@admin_app.command("reset-password")
def admin_reset_password(
    username: Annotated[str, typer.Argument(help="Account to reset.")],
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a temporary password.")
    ] = False,
    env_file: EnvFile = None,
) -> None:
    """Set a new password, sign the user out everywhere and revoke their API tokens."""
    from deploymate.auth import service as auth_service

    settings = load_checked_settings(env_file)
    password = None if generate else _prompt_password()

    async def reset(session: AsyncSession) -> str | None:
        return await auth_service.reset_password(
            session,
            caller=CLI_CALLER,
            username=username,
            new_password=password,
        )

    generated = with_session(settings, reset)
    out.print(f"password of {username} reset; they must change it at next sign-in")
    if generated:
        out.print(f"temporary password (shown once): {generated}")
