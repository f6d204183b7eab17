"""A finding of an audit: what was checked, where, and what to do; never a secret's value."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warn"]


@dataclass(frozen=True)
class Finding:
    check: str
    message: str
    where: str = ""
    severity: Severity = "error"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        place = f"{self.where}: " if self.where else ""
        return f"{self.severity.upper()} {self.check}: {place}{self.message}"


def masked(value: str) -> str:
    """Enough of a secret to find it again, never enough to use it."""
    if len(value) <= 8:
        return f"{'*' * len(value)} ({len(value)} chars)"
    return f"{value[:4]}…{'*' * 4} ({len(value)} chars)"
