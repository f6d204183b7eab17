"""Record ids at the edges: every id is a positive 32-bit integer, whatever the input form."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_ID = 2**31 - 1  # INTEGER primary keys on PostgreSQL; SQLite accepts the same range
Id = Annotated[int, Field(ge=1, le=MAX_ID, strict=False)]


def parse_id(text: str | None) -> int | None:
    """An id from free text (a form field, a header), or None: ASCII digits in range only."""
    if not text or not (text.isascii() and text.isdigit()) or len(text) > 10:
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None
