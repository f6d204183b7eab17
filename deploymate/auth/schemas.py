"""Request and response shapes of the auth and users API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from deploymate.auth.models import Role
from deploymate.core.passwords import MAX_LENGTH
from deploymate.core.scopes import SCOPES, Scope

Username = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
# Login accepts any text up to the limits; the policy applies when a password is set.
LoginText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LENGTH)]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]*$")
    ]
    password: LoginText


class ChangePasswordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: LoginText
    new_password: LoginText


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    role: Role
    is_active: bool
    must_change_password: bool
    can_deploy_local: bool = False
    server_limit: int = 3
    created_at: datetime
    last_login_at: datetime | None


class LoginResponse(BaseModel):
    user: UserOut
    csrf_token: str | None


# A name shown in lists: any printable text, never a control character.
PrintableName = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=100, strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PrintableName
    scopes: list[Scope] = Field(
        default_factory=list,
        max_length=len(SCOPES),
        description="What the token may change; none: your full rights. "
        "read, deploy:preview, deploy:staging, deploy:production, ship.",
    )
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="Days until the token stops working; none: never."
    )


class TokenCreated(BaseModel):
    id: int
    name: str
    token: str
    scopes: list[str]
    expires_at: datetime | None


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    scopes: list[str] = Field(validation_alias="scope_list", description="empty: full rights")
    expires_at: datetime | None

    @field_validator("scopes", mode="before")
    @classmethod
    def _full_rights(cls, value: object) -> object:
        return [] if value is None else value


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    role: Role = Role.member
    password: LoginText | None = Field(
        default=None, description="Temporary password; generated and returned once when omitted."
    )


class UserCreated(BaseModel):
    user: UserOut
    temporary_password: str | None = None
