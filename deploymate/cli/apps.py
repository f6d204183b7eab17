"""`deploymate app ...`: applications described by deploymate.yaml."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from deploymate.cli.output import JsonOption, print_json, say

app_app = typer.Typer(help="Applications described by deploymate.yaml.", no_args_is_help=True)
SPEC_FILE = "deploymate.yaml"


@app_app.command("validate")
def validate(
    file: Annotated[
        Path | None,
        typer.Argument(help=f"The spec (default: ./{SPEC_FILE}); - reads stdin.", metavar="FILE"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a spec against the schema and the rules, with no server and no instance; every
    problem with its line and column. Exit 0 when valid, 1 when not."""
    from deploymate.apps import spec as app_spec

    path = file or Path(SPEC_FILE)
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if name == "<stdin>" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{name}: cannot read it: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    try:
        found = app_spec.load(text, filename=name)
    except app_spec.SpecInvalid as exc:
        if as_json:
            print_json({"valid": False, "problems": [p.as_dict() for p in exc.problems]})
        else:
            for problem in exc.problems:
                print(problem.render(name), file=sys.stderr)
        raise typer.Exit(1) from None
    if as_json:
        print_json({"valid": True, "app": found.name})
    else:
        services = ", ".join(found.data["services"])
        environments = ", ".join(f"{e} ({found.kind_of(e)})" for e in found.data["environments"])
        say(f"{name}: app {found.name} is valid; services {services}; environments {environments}")


@app_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of deploymate.yaml (for editors and CI)."""
    from deploymate.apps.schema import APP_SPEC

    print(json.dumps(APP_SPEC, indent=2))


secrets_app = typer.Typer(help="Secrets of an app's environments.", no_args_is_help=True)


@secrets_app.command("set")
def secrets_set(
    app: Annotated[str, typer.Argument(help="The app.", metavar="APP")],
    environment: Annotated[str, typer.Argument(help="Its environment.", metavar="ENV")],
    name: Annotated[str, typer.Argument(help="A name under secrets: in the spec.", metavar="NAME")],
) -> None:
    """Store one secret's value, read from standard input (or a hidden prompt): never from an
    argument, where shell history and the process list would keep it."""
    from deploymate.cli import api_client, config_file
    from deploymate.core.errors import ValidationFailed

    if sys.stdin.isatty():
        value = typer.prompt(f"{name} for {app} {environment}", hide_input=True)
    else:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not value:
        raise ValidationFailed('no value: pipe it in (`printf %s "$VALUE" | ...`) or type it')
    path = f"/api/apps/{app}/secrets/{environment}/{name}"
    api_client.request(config_file.load(), "PUT", path, json={"value": value})
    say(f"{name} stored for {app} {environment} (sealed; it is never shown again)")
