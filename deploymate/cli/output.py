"""How the CLI speaks: results on stdout (text, or JSON with --json), everything else — progress
notes aside, errors and failures — on stderr, and three exit codes.

Exit codes: 0 done; 1 failed (a job failed, the instance or a target could not be reached, a
command run in a container failed); 2 usage or refused (bad arguments, not logged in, not
allowed, not found, a conflict, input the instance refused).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

OK, FAILED, REFUSED = 0, 1, 2

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON, for scripts.", show_default=False)
]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(text: str, *, style: str | None = None) -> None:
    """A result line on stdout, printed as is (never read as rich markup)."""
    out.print(text, style=style, markup=False)


def warn(text: str, *, style: str | None = None) -> None:
    """A failure or a note for the person, on stderr."""
    err.print(text, style=style, markup=False)


def hide_python_types() -> None:
    """Typer prints each parameter's Python type (`<str>`, `<list[str]>`, `<bool>`) in --help;
    our options name their value instead (their metavar) and flags and arguments need none."""
    from typer import core

    def option_type(self: core.TyperOption, ctx: Any) -> str | None:
        return self.metavar

    def argument_type(self: Any, ctx: Any) -> str | None:
        return None

    def usage_name(self: core.TyperArgument) -> str:
        name = (self.metavar or self.name or "").upper()
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    core.TyperOption.display_type_rich = option_type  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = argument_type  # type: ignore[method-assign]
    core.TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]
    core.TyperArgument._rich_display_name = lambda self: (  # type: ignore[method-assign]
        (self.metavar or self.name or "").upper()
    )
