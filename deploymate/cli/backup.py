"""`deploymate backup create|dry-run`: backup bundles through the API with the stored token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from deploymate.cli import api_client, config_file
from deploymate.core.errors import Conflict, Unavailable, ValidationFailed

if TYPE_CHECKING:
    import httpx

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
) -> None:
    """Download a backup bundle (admins only) and write it to FILE."""
    config = config_file.load()
    if file.exists() and not force:
        raise Conflict(f"{file} exists; pass --force to replace it")
    response = _call(config, "GET", "/api/admin/backup-bundle")
    write_private(file, response.content, force=force)
    try:
        counts = response.json()["manifest"]["counts"]
        summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    except (ValueError, KeyError, TypeError):
        summary = "unknown contents"
    out.print(f"wrote {file} ({len(response.content)} bytes: {summary})")


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
