"""Domain exceptions: raised by services, mapped once to HTTP (web/http.py) and once to the CLI."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError


class DeployMateError(Exception):
    """Base class; `code` is the stable machine-readable name, `status` the HTTP status."""

    code = "error"
    status = 400

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class ConfigurationError(DeployMateError):
    """A setting or the environment is wrong; the service cannot start or continue."""

    code = "configuration_error"
    status = 500


class ValidationFailed(DeployMateError):
    """Input refused; `field` names the input (a form shows the message next to it)."""

    code = "validation_error"
    status = 422

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        problems: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{label(field)}: {message}" if field else message, code=code)
        self.field = field
        self.message = message
        self.problems = problems  # each with its place in a submitted file (line, column)


class NotAuthenticated(DeployMateError):
    """No valid session or token."""

    code = "not_authenticated"
    status = 401


class PermissionDenied(DeployMateError):
    """The caller is known but may not do this."""

    code = "forbidden"
    status = 403


class NotFound(DeployMateError):
    """No such record, or none the caller may see."""

    code = "not_found"
    status = 404


class Conflict(DeployMateError):
    """The request clashes with the current state (a name taken, a lock held)."""

    code = "conflict"
    status = 409


class RateLimited(DeployMateError):
    """Too many attempts; `retry_after` seconds until the next one is considered."""

    code = "rate_limited"
    status = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PayloadTooLarge(DeployMateError):
    """A request body over the configured limit."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(DeployMateError):
    """A request body in a content type the route does not take."""

    code = "unsupported_media_type"
    status = 415


class Unavailable(DeployMateError):
    """A part DeployMate depends on (the database, the API) does not answer."""

    code = "unavailable"
    status = 503


@dataclass(frozen=True)
class FieldError:
    field: str  # dotted path of the input, "" for the whole input
    message: str

    def __str__(self) -> str:
        return f"{label(self.field)}: {self.message}" if self.field else self.message


# What people call a field where its API name is not already plain words.
_LABELS = {
    "env": "environment",
    "secret_env": "secret environment",
    "secret_env_remove": "secret environment to remove",
    "cpu_limit": "CPU limit",
    "server_id": "server",
    "template_id": "template",
    "release_id": "release",
    "health_check": "health check",
    "required_env": "required environment",
    "tls": "TLS",
    "drain_seconds": "drain period",
    "smoke": "smoke checks",
}


def label(field: str) -> str:
    """A field's dotted API name in words: `health_check.path` is "health check path"."""
    parts = field.split(".")
    return " ".join(_LABELS.get(p, p.replace("_", " ")) for p in parts)


_LOCATIONS = ("body", "query", "path", "header", "form", "cookie")


def field_errors(exc: PydanticValidationError | Iterable[Any]) -> list[FieldError]:
    """The one translation of pydantic's errors into (field, message) for people."""
    raw = exc.errors() if isinstance(exc, PydanticValidationError) else exc
    out = []
    for err in raw:
        loc = list(err.get("loc", ()))
        if loc and loc[0] in _LOCATIONS:  # where FastAPI found it: body, query, path, ...
            loc = loc[1:]
        parts = [str(p) for p in loc]
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        # A model-level check may name its field itself ("private_key: required when ...").
        head, sep, rest = message.partition(": ")
        if not parts and sep and head.isidentifier():
            parts, message = [head], rest
        out.append(FieldError(".".join(parts), message))
    return out


def describe(errors: Iterable[FieldError]) -> str:
    return "; ".join(str(e) for e in errors) or "invalid input"
