"""The `deploymate` command: run the service, manage the database and accounts, use the API."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import httpx
import typer
from rich.console import Console

from deploymate import __version__
from deploymate.auth import service as auth_service
from deploymate.auth.models import Role
from deploymate.cli import api_client, config_file
from deploymate.cli import backup as backup_cli
from deploymate.cli import deployments as deployments_cli
from deploymate.cli import servers as servers_cli
from deploymate.cli.common import CLI_CALLER, EnvFile, load_checked_settings
from deploymate.core import db
from deploymate.core.errors import ConfigurationError, DeployMateError

app = typer.Typer(
    help="DeployMate: deploy, health-check, roll back and audit container services.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Manage accounts directly in the database (on the control host).", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
app.add_typer(servers_cli.credentials_app, name="credentials")
app.add_typer(servers_cli.known_hosts_app, name="known-hosts")
app.command("inventory")(servers_cli.inventory)
app.add_typer(deployments_cli.deployments_app, name="deployments")
app.add_typer(backup_cli.backup_app, name="backup")
app.command("deploy")(deployments_cli.deploy)
app.command("rollback")(deployments_cli.rollback)
app.command("logs")(deployments_cli.logs)
app.command("status")(deployments_cli.status)

out = Console()
err = Console(stderr=True, soft_wrap=True)


@app.command()
def version() -> None:
    """Print the DeployMate version."""
    out.print(f"deploymate {__version__}")


@app.command()
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
        proxy_headers=False,
    )


@app.command()
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
    role: Annotated[Role, typer.Option(help="admin or member.")] = Role.admin,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate a temporary password.")
    ] = False,
    env_file: EnvFile = None,
) -> None:
    """Create an account (asks for a password, or generates one to change at first login)."""
    from deploymate.auth.schemas import UserCreate
    from deploymate.bootstrap import prepare_database

    settings = load_checked_settings(env_file)
    UserCreate(username=username, role=role)  # same validation as the API
    password = None if generate else _prompt_password()

    async def run() -> str | None:
        await prepare_database(settings, bootstrap=False)
        engine = db.make_engine(settings.resolved_database_url)
        try:
            async with db.session_factory(engine)() as session:
                _, generated = await auth_service.create_user(
                    session,
                    caller=CLI_CALLER,
                    username=username,
                    role=role,
                    password=password,
                    must_change_password=generate,
                )
                return generated
        finally:
            await engine.dispose()

    generated = asyncio.run(run())
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
    settings = load_checked_settings(env_file)
    password = None if generate else _prompt_password()

    async def run() -> str | None:
        engine = db.make_engine(settings.resolved_database_url)
        try:
            await db.upgrade(engine)
            async with db.session_factory(engine)() as session:
                return await auth_service.reset_password(
                    session, caller=CLI_CALLER, username=username, new_password=password
                )
        finally:
            await engine.dispose()

    generated = asyncio.run(run())
    out.print(f"password of {username} reset; they must change it at next sign-in")
    if generated:
        out.print(f"temporary password (shown once): {generated}")


@app.command()
def login(
    url: Annotated[str, typer.Option(help="Base URL of the DeployMate instance.")],
    username: Annotated[str, typer.Option(prompt=True, help="Your username.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Your password.")],
    token_name: Annotated[str, typer.Option(help="Name for the API token.")] = "cli",  # noqa: S107
) -> None:
    """Sign in and store a personal API token in the CLI config file (mode 0600)."""
    try:
        with api_client.client(url) as http:
            res = http.post("/api/auth/login", json={"username": username, "password": password})
            api_client.raise_for_error(res)
            csrf = {"X-CSRF-Token": res.json()["csrf_token"]}
            res = http.post("/api/auth/tokens", json={"name": token_name}, headers=csrf)
            api_client.raise_for_error(res)
            token = res.json()["token"]
            http.post("/api/auth/logout", headers=csrf)
    except httpx.HTTPError as exc:
        raise ConfigurationError(f"cannot reach {url}: {exc}") from None
    path = config_file.save(config_file.CliConfig(url=url.rstrip("/"), token=token))
    out.print(f"logged in as {username}; token stored in {path}")


@app.command()
def whoami() -> None:
    """Show the account the stored API token belongs to."""
    config = config_file.load()
    me = api_client.request(config, "GET", "/api/auth/me")
    user = me["user"]
    out.print(f"{user['username']} ({user['role']}) on {config.url}")


def main() -> None:
    """Entry point: domain errors become one line on stderr, never a traceback."""
    try:
        app()
    except ConfigurationError as exc:
        err.print(f"error: {exc.detail}", markup=False, highlight=False)
        sys.exit(2)
    except DeployMateError as exc:
        err.print(f"error: {exc.detail}", markup=False, highlight=False)
        sys.exit(1)
    except ValueError as exc:  # pydantic validation of arguments
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)
