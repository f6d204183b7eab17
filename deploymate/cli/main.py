"""The `deploymate` command: run the service, manage the database and accounts, use the API.

Exit codes: 0 done, 1 failed (the error is one line on stderr), 2 bad usage or configuration.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from deploymate import __version__
from deploymate.cli import api_client, config_file, control
from deploymate.cli import backup as backup_cli
from deploymate.cli import deployments as deployments_cli
from deploymate.cli import servers as servers_cli
from deploymate.core.errors import ConfigurationError, DeployMateError

app = typer.Typer(
    help="DeployMate: deploy, health-check, roll back and audit container services.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("serve")(control.serve)
app.command("worker")(control.worker)
app.add_typer(control.db_app, name="db")
app.add_typer(control.admin_app, name="admin")
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
def login(
    url: Annotated[str, typer.Option(help="Base URL of the DeployMate instance.")],
    username: Annotated[str, typer.Option(prompt=True, help="Your username.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Your password.")],
    token_name: Annotated[str, typer.Option(help="Name for the API token.")] = "cli",  # noqa: S107
) -> None:
    """Sign in and store a personal API token in the CLI config file (mode 0600)."""
    import httpx

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
