"""Shapes for reading the audit log: filters, rows and pages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

Text100 = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00]*$")]


class AuditFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Text100 | None = None
    action: Text100 | None = None
    target_type: Text100 | None = None
    outcome: Literal["success", "failure"] | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: Text100 | None = None


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    created_at: datetime
    actor_id: int | None
    actor_name: str | None
    client_address: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    details: dict[str, object]


class AuditPage(BaseModel):
    items: list[AuditEventOut]
    total: int
    page: int
    per_page: int
