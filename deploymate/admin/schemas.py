"""Shapes for users admin, upgrade requests and saved views."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from deploymate.auth.models import Role
from deploymate.core.ids import Id

Text100 = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00]*$")]


class UserFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: Text100 | None = None
    role: Role | None = None
    status: Literal["active", "disabled"] | None = None


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role | None = None
    is_active: bool | None = None
    can_deploy_local: bool | None = None
    server_limit: Annotated[int, Field(ge=0, le=1000)] | None = None


class BulkUsers(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["disable", "enable", "set_role"]
    ids: Annotated[list[Id], Field(min_length=1, max_length=500)]
    role: Role | None = None


class BulkResult(BaseModel):
    id: int
    ok: bool
    detail: str


class UpgradeRequestCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["local_deployments", "more_servers", "admin_role"]
    reason: Annotated[
        str,
        StringConstraints(
            min_length=3, max_length=2000, strip_whitespace=True, pattern=r"^[^\x00]*$"
        ),
    ]


class UpgradeRequestOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    user_id: int
    username: str | None = None
    kind: str
    reason: str
    status: str
    note: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime


class UpgradeFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["pending", "approved", "rejected"] | None = None
    kind: Literal["local_deployments", "more_servers", "admin_role"] | None = None
    q: Text100 | None = None


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    note: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")] = ""


class BulkDecision(Decision):
    ids: Annotated[list[Id], Field(min_length=1, max_length=500)]


class SavedViewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: Literal["users", "audit", "upgrade-requests"]
    name: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=64, strip_whitespace=True, pattern=r"^[^\x00-\x1f]*$"
        ),
    ]
    query: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00-\x1f]*$")]


class SavedViewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    page: str
    name: str
    query: str
