"""What an API token may do: scopes for CI tokens, checked at the edge and in the app use cases.

A token with no scopes (every token made before scopes existed, and a new one made without
any) acts with its owner's full rights. A scoped token reads everything its owner may read,
and changes only what its scopes name:

- `read`: nothing more than reading.
- `deploy:<kind>` (preview, staging, production): app deploys, rollbacks, one-off commands
  and secrets in environments of that kind, and saving the app spec. Production is never
  deployed, only shipped: `deploy:production` covers its rollbacks, commands and secrets.
- `ship`: promoting staging to production (`app ship`) and deciding ship requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal, get_args

from deploymate.core.errors import PermissionDenied

Scope = Literal["read", "deploy:preview", "deploy:staging", "deploy:production", "ship"]
SCOPES: tuple[str, ...] = get_args(Scope)

# The API writes a scoped token may reach at all; the use cases then check the scope itself.
_SCOPED_WRITES = re.compile(
    r"^/api/(apps(/[^/]+/(deploy|ship|rollback|run|secrets/[^/]+/[^/]+|sources/[0-9a-f]+|previews))?"
    r"|approvals/\d+/(approve|reject)|auth/logout)$"
)


def normalise(values: Iterable[str]) -> tuple[str, ...]:
    """Known scopes once each, in a stable order (validated at the edge; empty: full rights)."""
    asked = set(values)
    return tuple(s for s in SCOPES if s in asked)


def describe(scopes: tuple[str, ...] | None) -> str:
    return ", ".join(scopes) if scopes else "full rights"


def _refuse(scopes: tuple[str, ...], needed: str, what: str) -> PermissionDenied:
    return PermissionDenied(
        f"this API token may not {what}: it has {describe(scopes)} and this needs {needed}; "
        "create a token with that scope on the API tokens page",
        code="token_scope",
    )


def check_request(scopes: tuple[str, ...] | None, method: str, path: str) -> None:
    """Edge gate: a scoped token reads anything and writes only the app operations."""
    if scopes is None or method in ("GET", "HEAD", "OPTIONS"):
        return
    if not _SCOPED_WRITES.match(path) or scopes == ("read",):
        raise _refuse(scopes, "a token with full rights", f"{method} {path}")


def require(scopes: tuple[str, ...] | None, needed: str, what: str) -> None:
    """Use-case gate: raise unless the token (if any) holds `needed`."""
    if scopes is not None and needed not in scopes:
        raise _refuse(scopes, needed, what)


def require_any_deploy(scopes: tuple[str, ...] | None, what: str) -> None:
    """For what serves every environment kind (an app's spec, a commit's source)."""
    if scopes is not None and not any(s.startswith("deploy:") for s in scopes):
        raise _refuse(scopes, "deploy:<kind>", what)


def for_environment(kind: str) -> str:
    return f"deploy:{kind}"
