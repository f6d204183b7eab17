"""Console forms: reading values, and the one way a refused form is answered.

A page that calls a use case with form input catches the refusal and hands it to `refused`:
the transaction is rolled back, the page is rendered again with the reason at the top and,
where the reason names a field, next to that field (`field_errors` in the template).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.core.errors import DeployMateError, ValidationFailed, describe, field_errors


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: ValidationError | DeployMateError) -> Refusal:
        if isinstance(exc, ValidationError):
            errors = field_errors(exc)
            return cls(422, describe(errors), {e.field: e.message for e in errors if e.field})
        if isinstance(exc, ValidationFailed) and exc.field:
            return cls(exc.status, exc.detail, {exc.field: exc.message})
        return cls(exc.status, exc.detail)


Page = Callable[..., Awaitable[Response]]


async def refused(
    db: AsyncSession, exc: ValidationError | DeployMateError, page: Page, **context: Any
) -> Response:
    """Undo what the refused use case started and show the page again with the reason."""
    await db.rollback()
    refusal = Refusal.of(exc)
    return await page(
        status=refusal.status, error=refusal.message, field_errors=refusal.fields, **context
    )


def number(value: str) -> int | str:
    """ASCII digits become a number for validation; anything else is passed on to be refused."""
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 10 else value


def pairs(text: str, field_name: str) -> dict[str, str]:
    """`KEY=VALUE` per line; blank lines and `#` comments are skipped, values kept exactly.

    The error names the line number only, never its content (secret values pass through here).
    """
    found: dict[str, str] = {}
    for line_no, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        key, sep, value = raw.partition("=")
        if not sep or not key.strip():
            raise ValidationFailed(f"line {line_no} is not KEY=VALUE", field=field_name)
        found[key.strip()] = value
    return found


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")
