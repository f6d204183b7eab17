"""Commands about servers: the list through the API (from any machine); credentials,
known_hosts and the inventory on the control host itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from deploymate.cli.common import CLI_CALLER, EnvFile, load_checked_settings, with_session
from deploymate.cli.output import JsonOption, print_json
from deploymate.core.errors import ValidationFailed

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from deploymate.servers.credentials import CredentialState
    from deploymate.servers.models import Server

servers_app = typer.Typer(help="Servers you can deploy to.", no_args_is_help=True)
credentials_app = typer.Typer(help="Server credential encryption.", no_args_is_help=True)
known_hosts_app = typer.Typer(help="Prepare known_hosts entries for servers.", no_args_is_help=True)

out = Console(soft_wrap=True)


@servers_app.command("list")
def list_servers(as_json: JsonOption = False) -> None:
    """Every server you can see through the instance you logged in to: address, user, host
    key, deployments and the last check."""
    from deploymate.cli import api_client, config_file

    config = config_file.load()
    rows: list[dict[str, Any]] = []
    while True:  # every page
        page = api_client.request(
            config, "GET", "/api/servers", params={"limit": 500, "offset": len(rows)}
        )
        rows.extend(page)
        if len(page) < 500:
            break
    if as_json:
        print_json(rows)
        return
    table = Table("name", "address", "user", "host key", "deployments", "last check", box=None)
    for s in rows:
        table.add_row(
            s["name"],
            f"{s['host']}:{s['port']}",
            s["username"],
            "pinned" if s["host_key"] else "NOT PINNED",
            str(s["deployments"]),
            _last_check(s["last_check_at"], s["last_check_ok"]),
        )
    out.print(table)
    out.print(f"{len(rows)} server(s)")


@servers_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A name for the server.", metavar="NAME")],
    host: Annotated[str, typer.Option("--host", help="Its address or DNS name.", metavar="HOST")],
    user: Annotated[str, typer.Option("--user", help="The SSH user.", metavar="USER")],
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="A private key file (OpenSSH format).", metavar="FILE"),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Password authentication, the password on stdin."),
    ] = False,
    port: Annotated[int, typer.Option("--port", help="The SSH port.", metavar="PORT")] = 22,
    fingerprint: Annotated[
        str | None,
        typer.Option(
            "--fingerprint",
            help="The host key's SHA256 fingerprint you checked on the server "
            "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub); pinned when it matches.",
            metavar="SHA256:…",
        ),
    ] = None,
    purpose: Annotated[
        str,
        typer.Option("--purpose", help="production, staging, infra, legacy or audit.", metavar="P"),
    ] = "production",
    as_json: JsonOption = False,
) -> None:
    """Register a server: its host key is read, shown and pinned only once you confirm its
    fingerprint; the credentials are sent to the instance, stored encrypted, and tested."""
    import sys

    from deploymate.cli import api_client, config_file

    if (key_file is None) == (not password_stdin):
        raise ValidationFailed("give either --key-file FILE or --password-stdin", field="key_file")
    config = config_file.load()
    body: dict[str, Any] = {
        "name": name,
        "host": host,
        "port": port,
        "username": user,
        "purpose": purpose,
    }
    if key_file is not None:
        try:
            body |= {"auth_type": "key", "private_key": key_file.read_text()}
        except (OSError, UnicodeDecodeError) as exc:
            raise ValidationFailed(f"cannot read {key_file}: {exc}", field="key_file") from None
    else:
        secret = sys.stdin.readline().rstrip("\n")
        body |= {"auth_type": "password", "password": secret}
    scanned = api_client.request(
        config, "POST", "/api/servers/scan-host-key", json={"host": host, "port": port}
    )
    keys = scanned["keys"]
    offered = "; ".join(f"{k['type']} {k['fingerprint_sha256']}" for k in keys)
    chosen = next((k for k in keys if k["fingerprint_sha256"] == fingerprint), None)
    if chosen is None and fingerprint is None and sys.stdin.isatty() and keys:
        out.print(f"{host}:{port} offers: {offered}")
        check = "compare with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server"
        if typer.confirm(f"Pin {keys[0]['type']} {keys[0]['fingerprint_sha256']}? ({check})"):
            chosen = keys[0]
    if chosen is None:
        raise ValidationFailed(
            f"{host}:{port} offers {offered or 'no key'}; check the fingerprint on the server "
            "and pass it with --fingerprint SHA256:…"
            + (" (it does not match)" if fingerprint else ""),
            field="fingerprint",
        )
    body["host_key"] = chosen["public_key"]
    made = api_client.request(config, "POST", "/api/servers", json=body)
    if as_json:
        print_json(made)
        return
    state = (
        "connection tested"
        if made["last_check_ok"]
        else f"test failed: {made['last_check_message']}"
    )
    out.print(f"server {made['name']} added ({made['host']}:{made['port']}, key pinned; {state})")
    if not made["last_check_ok"]:
        raise typer.Exit(1)


def _last_check(at: Any, ok: bool | None) -> str:
    if at is None:
        return "never"
    return f"{'ok' if ok else 'FAILED'} {str(at)[:16].replace('T', ' ')}Z"


@credentials_app.command("generate-key")
def credentials_generate_key() -> None:
    """Print a new Fernet key for DEPLOYMATE_SERVER_CREDENTIALS_KEY."""
    from deploymate.core.crypto import generate_key

    print(generate_key())


@credentials_app.command("rotate")
def credentials_rotate(env_file: EnvFile = None) -> None:
    """Re-encrypt every server credential with the first key of DEPLOYMATE_SERVER_CREDENTIALS_KEY.

    Put the new key first and keep the old ones after it until this has run.
    """
    from deploymate.core.crypto import cipher_from_settings
    from deploymate.servers import credentials

    settings = load_checked_settings(env_file)

    async def rotate(session: AsyncSession) -> tuple[int, list[str]]:
        cipher = cipher_from_settings(settings)
        return await credentials.rotate(session, cipher=cipher, caller=CLI_CALLER)

    rotated, failed = with_session(settings, rotate)
    out.print(f"re-encrypted {rotated} server credential record(s) with the first key")
    if failed:
        raise ValidationFailed(
            f"no configured key decrypts the credentials of: {', '.join(failed)}"
        )


@credentials_app.command("audit")
def credentials_audit(env_file: EnvFile = None) -> None:
    """List server records whose credentials are plaintext or not decryptable (exit 1 if any)."""
    from deploymate.core.crypto import cipher_from_settings
    from deploymate.servers import credentials

    settings = load_checked_settings(env_file)

    async def audit(session: AsyncSession) -> list[CredentialState]:
        return await credentials.states(session, cipher=cipher_from_settings(settings))

    states = with_session(settings, audit)
    bad = [s for s in states if s.state != "encrypted"]
    for state in bad:
        out.print(f"{state.server.name}: {state.state}", markup=False)
    out.print(f"{len(states)} server record(s), {len(bad)} with a problem")
    if bad:
        raise typer.Exit(1)


@known_hosts_app.command("prepare")
def known_hosts_prepare(
    host: Annotated[str, typer.Option(help="Server address.")],
    output: Annotated[
        Path, typer.Option(help="known_hosts file to write (HOST's entries replaced).")
    ],
    port: Annotated[int, typer.Option(help="SSH port.")] = 22,
) -> None:
    """Scan a host's keys, print their SHA256 fingerprints and write them to a known_hosts file.

    Compare the fingerprints with the server's own (`ssh-keygen -lf /etc/ssh/ssh_host_*.pub`)
    before you trust the file.
    """
    from deploymate.runtime.ssh import scan_host_keys
    from deploymate.servers import known_hosts
    from deploymate.servers.schemas import HostPort

    target = HostPort(host=host, port=port)
    keys = asyncio.run(scan_host_keys(target.host, target.port))
    for key in keys:
        out.print(f"{key.type} {key.fingerprint_sha256}", markup=False)
    known_hosts.write_entry(output, target.host, target.port, [k.public_key for k in keys])
    pattern = known_hosts.host_pattern(target.host, target.port)
    out.print(f"wrote {len(keys)} key(s) for {pattern} to {output}")


def inventory(env_file: EnvFile = None, as_json: JsonOption = False) -> None:
    """Every server in this control host's database, read directly (run it on the control host;
    from elsewhere use `deploymate servers list`)."""
    from deploymate.servers import service

    settings = load_checked_settings(env_file)

    async def listing(session: AsyncSession) -> list[tuple[Server, int]]:
        return await service.inventory(session)

    rows = with_session(settings, listing)
    if as_json:
        print_json(
            [
                {
                    "name": server.name,
                    "purpose": server.purpose,
                    "host": server.host,
                    "port": server.port,
                    "username": server.username,
                    "deployments": deployments,
                    "last_check_at": server.last_check_at,
                    "last_check_ok": server.last_check_ok,
                }
                for server, deployments in rows
            ]
        )
        return
    table = Table("name", "purpose", "host", "user", "deployments", "last check", box=None)
    for server, deployments in rows:
        check = _last_check(server.last_check_at, server.last_check_ok)
        table.add_row(
            server.name,
            server.purpose,
            f"{server.host}:{server.port}",
            server.username,
            str(deployments),
            check,
        )
    out.print(table)
    out.print(f"{len(rows)} server(s)")
