"""`deploymate backup create|dry-run` through the API with the stored token, and
`deploymate restore FILE` on the control host itself (the database, not the API)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deploymate.cli import api_client, config_file
from deploymate.cli.common import CLI_CALLER, EnvFile, load_checked_settings, with_session
from deploymate.core.errors import Conflict, Unavailable, ValidationFailed

if TYPE_CHECKING:
    import httpx
    from sqlalchemy.ext.asyncio import AsyncSession

backup_app = typer.Typer(
    help="Backup bundles: create one, or check one with a dry-run.", no_args_is_help=True
)
out = Console(soft_wrap=True, highlight=False)

TIMEOUT = 300.0  # large bundles: building and analysing them takes a while
STYLES = {"ok": "green", "warn": "yellow", "error": "bold red"}


def _call(config: config_file.CliConfig, method: str, path: str, **kwargs: Any) -> httpx.Response:
    import httpx

    try:
        with api_client.client(config.url, config.token, timeout=TIMEOUT) as http:
            response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach {config.url}: {exc}") from None
    api_client.raise_for_error(response)
    return response


def write_private(path: Path, data: bytes, *, force: bool) -> None:
    """Write with mode 0600 from the first byte, atomically (a temporary file, then rename)."""
    if path.exists() and not force:
        raise Conflict(f"{path} exists; pass --force to replace it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@backup_app.command("create")
def create(
    file: Annotated[Path, typer.Argument(help="Where to write the bundle (mode 0600).")],
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
    include_password_hashes: Annotated[
        bool,
        typer.Option(
            "--include-password-hashes",
            help="Keep the users' password hashes (the bundle is marked sensitive); without "
            "them, restored users get a temporary password.",
        ),
    ] = False,
) -> None:
    """Download a backup bundle (admins only) and write it to FILE."""
    config = config_file.load()
    if file.exists() and not force:
        raise Conflict(f"{file} exists; pass --force to replace it")
    params = {"include_password_hashes": "true"} if include_password_hashes else {}
    response = _call(config, "GET", "/api/admin/backup-bundle", params=params)
    write_private(file, response.content, force=force)
    try:
        counts = response.json()["manifest"]["counts"]
        summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    except (ValueError, KeyError, TypeError):
        summary = "unknown contents"
    out.print(f"wrote {file} ({len(response.content)} bytes: {summary})", markup=False)
    if include_password_hashes:
        out.print(f"{file} holds password hashes: keep it as private as the database")


def print_report(report: dict[str, Any]) -> None:
    table = Table("section", "records", "status", "reasons", box=None, pad_edge=False)
    for row in report.get("sections", []):
        reasons = "\n".join(
            f"[{r['severity']}] {r['code']}: {r['message']}" for r in row.get("reasons", [])
        )
        records = row.get("records")
        status = str(row["status"])
        table.add_row(
            escape(str(row["section"])),
            "-" if records is None else str(records),
            f"[{STYLES.get(status, 'default')}]{escape(status)}[/]",
            escape(reasons) or "-",
        )
    out.print(table)
    out.print(report.get("summary", ""), markup=False)


@backup_app.command("dry-run")
def dry_run(
    file: Annotated[
        Path,
        typer.Argument(help="The bundle to check.", exists=True, dir_okay=False, readable=True),
    ],
) -> None:
    """Check a bundle against the instance; applies nothing. Exits 1 if any section is error."""
    config = config_file.load()
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {file}: {exc.strerror}") from None
    response = _call(
        config,
        "POST",
        "/api/admin/restore/dry-run",
        content=data,
        headers={"Content-Type": "application/json"},
    )
    report: dict[str, Any] = response.json()
    print_report(report)
    if report.get("status") == "error":
        raise typer.Exit(1)


def restore(
    file: Annotated[
        Path,
        typer.Argument(help="The bundle to apply.", exists=True, dir_okay=False, readable=True),
    ],
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Into an instance that is not empty: keep what exists here by name, add the "
            "rest (docs/backup.md).",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Apply without asking to type 'restore'.")
    ] = False,
    env_file: EnvFile = None,
) -> None:
    """Apply a backup bundle to this control host's database, after its dry-run passes.

    All or nothing (one transaction). Users restored without a password hash get a temporary
    password, printed once here, to change at first sign-in."""
    from deploymate.backup import restore as restoring
    from deploymate.core.crypto import cipher_from_settings

    settings = load_checked_settings(env_file)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ValidationFailed(f"cannot read {file}: {exc.strerror}") from None
    if not yes:
        from sqlalchemy.engine import make_url

        where = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        typed = typer.prompt(f"This writes to {where}. Type restore to go on")
        restoring.check_confirmation(typed)
    cipher = cipher_from_settings(settings)

    async def work(db: AsyncSession) -> restoring.RestoreResult:
        return await restoring.restore(
            db, settings=settings, cipher=cipher, caller=CLI_CALLER, data=data, merge=merge
        )

    try:
        result = with_session(settings, work)
    except restoring.BundleRefused as exc:
        print_report(exc.report.to_dict())
        raise
    out.print(result.summary, markup=False)
    for name, kept in result.kept.items():
        out.print(f"kept as they are here ({name}): {', '.join(kept)}", markup=False)
    if result.passwords:
        out.print("temporary passwords (shown once; each must be changed at first sign-in):")
        for username, password in result.passwords.items():
            out.print(f"  {username}: {password}", markup=False)
