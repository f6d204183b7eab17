"""The `deploymate` command: run the service, manage the database and accounts, use the API.

Exit codes: 0 done; 1 failed (a job failed, something could not be reached); 2 usage or
refused (bad arguments or configuration, not logged in, not allowed, not found, a conflict).
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from deploymate import __version__
from deploymate.cli import api_client, config_file, control
from deploymate.cli import apps as apps_cli
from deploymate.cli import audits as audits_cli
from deploymate.cli import backup as backup_cli
from deploymate.cli import deployments as deployments_cli
from deploymate.cli import proxy as proxy_cli
from deploymate.cli import servers as servers_cli
from deploymate.cli import tokens as tokens_cli
from deploymate.cli.output import (
    FAILED,
    REFUSED,
    JsonOption,
    hide_python_types,
    print_json,
    say,
    warn,
)
from deploymate.core.errors import ConfigurationError, DeployMateError

hide_python_types()

app = typer.Typer(
    help="DeployMate: deploy, health-check, roll back and audit container services.\n\n"
    "Exit codes: 0 done, 1 failed, 2 usage or refused.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        say(f"deploymate {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version and exit.",
            callback=_print_version,
            is_eager=True,
            show_default=False,
        ),
    ] = False,
) -> None:
    """Options every command shares (the help text above is the app's)."""


# On the control host: the service, its database, accounts and server records.
app.command("serve")(control.serve)
app.command("worker")(control.worker)
app.add_typer(control.db_app, name="db")
app.add_typer(control.admin_app, name="admin")
app.add_typer(servers_cli.credentials_app, name="credentials")
app.add_typer(servers_cli.known_hosts_app, name="known-hosts")
app.command("inventory")(servers_cli.inventory)
app.add_typer(backup_cli.backup_app, name="backup")
app.command("restore")(backup_cli.restore)
app.add_typer(audits_cli.audit_app, name="audit")
# From anywhere, through the API with the token `login` stored.
app.add_typer(servers_cli.servers_app, name="servers")
app.add_typer(deployments_cli.deployments_app, name="deployments")
app.add_typer(proxy_cli.proxy_app, name="proxy")
app.add_typer(apps_cli.app_app, name="app")
app.add_typer(apps_cli.secrets_app, name="secrets")
app.add_typer(apps_cli.approvals_app, name="approvals")
app.add_typer(tokens_cli.tokens_app, name="tokens")
app.command("deploy")(deployments_cli.deploy)
app.command("rollback")(deployments_cli.rollback)
app.command("status")(deployments_cli.status)
app.command("logs")(deployments_cli.logs)
app.command("stop")(deployments_cli.stop)
app.command("start")(deployments_cli.start)
app.command("restart")(deployments_cli.restart)
app.command("delete")(deployments_cli.delete)
app.command("exec")(deployments_cli.exec_command)
app.command("smoke")(deployments_cli.smoke)


@app.command()
def version(as_json: JsonOption = False) -> None:
    """Print the DeployMate version."""
    if as_json:
        print_json({"version": __version__})
    else:
        say(f"deploymate {__version__}")


@app.command()
def login(
    url: Annotated[str, typer.Option(help="Base URL of the DeployMate instance.", metavar="URL")],
    username: Annotated[str, typer.Option(prompt=True, help="Your username.", metavar="USER")],
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, help="Your password.", metavar="PASSWORD"),
    ],
    token_name: Annotated[
        str, typer.Option(help="Name for the API token.", metavar="NAME")
    ] = "cli",  # noqa: S107
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
        raise ConfigurationError(api_client.unreachable(url, exc)) from None
    path = config_file.save(config_file.CliConfig(url=url.rstrip("/"), token=token))
    say(f"logged in as {username}; token stored in {path}")


@app.command()
def whoami(as_json: JsonOption = False) -> None:
    """Show the account the stored API token belongs to."""
    config = config_file.load()
    me = api_client.request(config, "GET", "/api/auth/me")
    user = me["user"]
    if as_json:
        print_json({"url": config.url, **user})
    else:
        say(f"{user['username']} ({user['role']}) on {config.url}")


def main() -> None:
    """Entry point: domain errors become one line on stderr and an exit code, never a traceback."""
    try:
        app()
    except DeployMateError as exc:
        warn(f"error: {exc.detail}")
        refused = isinstance(exc, ConfigurationError) or exc.status < 500
        sys.exit(REFUSED if refused else FAILED)
    except ValueError as exc:  # pydantic validation of arguments
        warn(f"error: {exc}")
        sys.exit(REFUSED)
