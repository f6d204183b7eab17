"""`deploymate proxy status|install|upgrade SERVER`: the proxy in front of a target's domains."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer

from deploymate.cli.output import JsonOption, print_json, say

proxy_app = typer.Typer(
    help="The proxy (Caddy) in front of the deployments with domains on a target.",
    no_args_is_help=True,
)
TargetArg = Annotated[
    str,
    typer.Argument(help="A server name or id, or `local` for the control host.", metavar="SERVER"),
]


def _call(method: str, target: str, action: str = "") -> dict[str, Any]:
    from deploymate.cli import api_client, config_file

    path = f"/api/proxy/{quote(target, safe='')}" + (f"/{action}" if action else "")
    result: dict[str, Any] = api_client.request(config_file.load(), method, path)
    return result


def _show(state: dict[str, Any]) -> None:
    for line in state.get("log", []):
        say(f"  {line}")
    if not state["installed"]:
        say(f"proxy on {state['target']}: not installed (`deploymate proxy install`)")
    else:
        say(
            f"proxy on {state['target']}: {state['detail']}"
            + (f", Caddy {state['version']}" if state.get("version") else "")
            + f", image {state.get('image') or '?'}"
        )
    routes = state.get("routes", [])
    say(f"{len(routes)} route(s)" + (":" if routes else ""))
    for r in routes:
        say(f"  {', '.join(r['domains'])} -> {r['deployment']}")


@proxy_app.command("status")
def status(target: TargetArg, as_json: JsonOption = False) -> None:
    """The proxy's state and version, and the routes DeployMate's records give it."""
    state = _call("GET", target)
    print_json(state) if as_json else _show(state)


@proxy_app.command("install")
def install(target: TargetArg, as_json: JsonOption = False) -> None:
    """Install the proxy if it is missing, and load its routes from the records."""
    state = _call("POST", target, "install")
    print_json(state) if as_json else _show(state)


@proxy_app.command("upgrade")
def upgrade(target: TargetArg, as_json: JsonOption = False) -> None:
    """Replace the proxy with DEPLOYMATE_PROXY_IMAGE; its routes come back from the records."""
    state = _call("POST", target, "upgrade")
    print_json(state) if as_json else _show(state)
