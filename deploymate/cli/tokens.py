"""`deploymate tokens`: API tokens for scripts and CI, with scopes and an expiry."""

from __future__ import annotations

from typing import Annotated

import typer

from deploymate.cli.output import JsonOption, print_json, say
from deploymate.core.scopes import SCOPES

tokens_app = typer.Typer(help="API tokens for scripts and CI.", no_args_is_help=True)


@tokens_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the token is for.", metavar="NAME")],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help=f"What it may change (repeat; none: your full rights): {', '.join(SCOPES)}.",
            metavar="SCOPE",
        ),
    ] = None,
    expires_in_days: Annotated[
        int | None,
        typer.Option("--expires-in-days", help="Days until it stops working.", metavar="DAYS"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a token and print it once (use it as DEPLOYMATE_API_TOKEN in CI)."""
    from deploymate.cli import api_client, config_file

    body = {"name": name, "scopes": scope or [], "expires_in_days": expires_in_days}
    made = api_client.request(config_file.load(), "POST", "/api/auth/tokens", json=body)
    if as_json:
        print_json(made)
        return
    rights = ", ".join(made["scopes"]) or "full rights"
    until = f"until {made['expires_at'][:10]}" if made["expires_at"] else "with no expiry"
    say(f"token {made['name']} ({rights}, {until}); shown this once:")
    say(made["token"])


@tokens_app.command("list")
def list_tokens(as_json: JsonOption = False) -> None:
    """Your tokens: name, first characters, scopes, expiry, last use."""
    from deploymate.cli import api_client, config_file

    rows = api_client.request(config_file.load(), "GET", "/api/auth/tokens")
    if as_json:
        print_json(rows)
        return
    for t in rows:
        state = f"revoked {t['revoked_at'][:10]}" if t["revoked_at"] else "active"
        expiry = f"expires {t['expires_at'][:10]}" if t["expires_at"] else "no expiry"
        say(
            f"#{t['id']} {t['name']} {t['prefix']}… {', '.join(t['scopes']) or 'full rights'}; "
            f"{expiry}; {state}"
        )
    if not rows:
        say("no token yet")


@tokens_app.command("revoke")
def revoke(token_id: Annotated[int, typer.Argument(help="The token's id.", metavar="ID")]) -> None:
    """Revoke a token at once."""
    from deploymate.cli import api_client, config_file

    api_client.request(config_file.load(), "DELETE", f"/api/auth/tokens/{token_id}")
    say(f"token #{token_id} revoked")
