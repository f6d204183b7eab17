"""`deploymate audit env|secrets|runtime`: operator audits. Each prints its findings (never a
secret's value) and exits 1 when there is one, 2 when it cannot run; `--json` for scripts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from deploymate.cli.common import EnvFile, load_checked_settings
from deploymate.cli.output import FAILED, REFUSED, JsonOption, print_json, say, warn

if TYPE_CHECKING:
    from deploymate.audits.findings import Finding

audit_app = typer.Typer(
    help="Operator audits: exit 0 clean, 1 on a finding, 2 when the audit cannot run.",
    no_args_is_help=True,
)


def _report(findings: list[Finding], what: str, as_json: bool) -> None:
    if as_json:
        print_json(
            {"audit": what, "clean": not findings, "findings": [f.as_dict() for f in findings]}
        )
    else:
        for finding in findings:
            say(finding.render())
        say(f"{what}: " + (f"{len(findings)} finding(s)" if findings else "clean"))
    if findings:
        raise typer.Exit(FAILED)


@audit_app.command("env")
def env(
    file: Annotated[Path, typer.Argument(help="The production env file.", metavar="FILE")],
    behind_proxy: Annotated[
        bool,
        typer.Option("--behind-proxy", help="The instance runs behind a reverse proxy."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """A production env file: the credentials key, secure cookies, no default or weak
    password, strict host keys, trusted proxies when behind one."""
    from deploymate.audits import env_file

    try:
        findings = env_file.audit(file, behind_proxy=behind_proxy)
    except env_file.EnvFileUnreadable as exc:
        warn(f"error: {exc}")
        raise typer.Exit(REFUSED) from None
    _report(findings, f"env file {file}", as_json)


@audit_app.command("secrets")
def secrets(
    path: Annotated[Path, typer.Argument(help="A file or a directory tree.", metavar="PATH")],
    allow: Annotated[
        Path | None,
        typer.Option(
            "--allow", help="A file of accepted findings (their sha256:… marks).", metavar="FILE"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Private keys, tokens of well-known formats and random-looking values given to
    secret-sounding names; symlinks are not followed; a finding shows a masked prefix only."""
    from deploymate.audits import secret_scan

    if not path.exists() and not path.is_symlink():
        warn(f"error: {path} does not exist")
        raise typer.Exit(REFUSED)
    try:
        allowed = secret_scan.load_allowed(allow)
    except (OSError, UnicodeDecodeError) as exc:
        warn(f"error: cannot read the allow-list {allow}: {exc}")
        raise typer.Exit(REFUSED) from None
    _report(secret_scan.scan(path, allowed), f"secrets in {path}", as_json)


@audit_app.command("runtime")
def runtime(env_file: EnvFile = None, as_json: JsonOption = False) -> None:
    """On the control host: the local-Docker flag, Docker itself, a running proxy on every
    server with domains, every credential encrypted with a key this instance holds."""
    import asyncio

    from deploymate import context as app_context
    from deploymate.audits import runtime as runtime_audit
    from deploymate.bootstrap import prepare_database

    settings = load_checked_settings(env_file)

    async def go() -> list[Finding]:
        await prepare_database(settings, bootstrap=False)
        built = app_context.build(settings)
        try:
            return await runtime_audit.audit(built)
        finally:
            await built.pool.close_all()
            await built.engine.dispose()

    _report(asyncio.run(go()), "runtime", as_json)
