"""Control-host commands about servers: credentials, known_hosts and the inventory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from deploymate.cli.common import CLI_CALLER, EnvFile, load_checked_settings, with_session
from deploymate.core.errors import ValidationFailed

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from deploymate.servers.credentials import CredentialState
    from deploymate.servers.models import Server

credentials_app = typer.Typer(help="Server credential encryption.", no_args_is_help=True)
known_hosts_app = typer.Typer(help="Prepare known_hosts entries for servers.", no_args_is_help=True)

out = Console(soft_wrap=True)


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


def inventory(env_file: EnvFile = None) -> None:
    """Print every server of this instance (on the control host): name, purpose, address, user,
    deployments and last check."""
    from deploymate.servers import service

    settings = load_checked_settings(env_file)

    async def listing(session: AsyncSession) -> list[tuple[Server, int]]:
        return await service.inventory(session)

    rows = with_session(settings, listing)
    table = Table("name", "purpose", "host", "user", "deployments", "last check", box=None)
    for server, deployments in rows:
        if server.last_check_at is None:
            check = "never"
        else:
            state = "ok" if server.last_check_ok else "FAILED"
            check = f"{state} {server.last_check_at:%Y-%m-%d %H:%M}Z"
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
