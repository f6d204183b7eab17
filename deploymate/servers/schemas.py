"""Request and response shapes for servers; every field that reaches SSH is validated here."""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_USERNAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"
_LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class Purpose(StrEnum):
    production = "production"
    staging = "staging"
    infra = "infra"
    legacy = "legacy"
    audit = "audit"


class Criticality(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


def validate_host(value: str) -> str:
    """A DNS name or an IP literal: nothing an ssh command line could read as an option."""
    value = value.strip()
    if "%" not in value:  # an IPv6 scope id ("fe80::1%eth0") could carry anything: refused
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            pass
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253 or not all(_HOST_LABEL.fullmatch(p) for p in name.split(".")):
        raise ValueError("must be a hostname or an IP address (letters, digits, dots and hyphens)")
    return value.lower()


Host = Annotated[str, StringConstraints(min_length=1, max_length=253)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
SSHUser = Annotated[str, StringConstraints(pattern=_USERNAME)]
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
PrivateKey = Annotated[str, StringConstraints(min_length=1, max_length=16_384)]
ShortSecret = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
PublicKeyLine = Annotated[str, StringConstraints(min_length=1, max_length=8192)]
Notes = Annotated[str, StringConstraints(max_length=4000, pattern=r"^[^\x00]*$")]


def _check_labels(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 32:
        raise ValueError("at most 32 labels")
    for key, val in value.items():
        if not _LABEL_KEY.fullmatch(key) or len(val) > 200 or "\x00" in val:
            raise ValueError(
                f"label {key[:40]!r}: keys are short names, values at most 200 characters"
            )
    return value


class HostPort(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: Host
    port: Port = 22

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return validate_host(v)


class ServerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    host: Host
    port: Port = 22
    username: SSHUser
    auth_type: Literal["key", "password"]
    private_key: PrivateKey | None = None
    passphrase: ShortSecret | None = None
    password: ShortSecret | None = None
    host_key: PublicKeyLine | None = None
    purpose: Purpose = Purpose.production
    criticality: Criticality = Criticality.medium
    labels: dict[str, str] = Field(default_factory=dict)
    notes: Notes = ""

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return validate_host(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v)

    @model_validator(mode="after")
    def _credentials_match_auth_type(self) -> ServerCreate:
        if self.auth_type == "key" and not self.private_key:
            raise ValueError("private_key: required when auth_type is key")
        if self.auth_type == "password" and not self.password:
            raise ValueError("password: required when auth_type is password")
        return self


class ServerUpdate(BaseModel):
    """Partial update; credentials are replaced only when sent (they are never shown back)."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    host: Host | None = None
    port: Port | None = None
    username: SSHUser | None = None
    auth_type: Literal["key", "password"] | None = None
    private_key: PrivateKey | None = None
    passphrase: ShortSecret | None = None
    password: ShortSecret | None = None
    purpose: Purpose | None = None
    criticality: Criticality | None = None
    labels: dict[str, str] | None = None
    notes: Notes | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> ServerUpdate:
        nulls = [k for k in self.model_fields_set if getattr(self, k) is None]
        if nulls:
            raise ValueError(f"{nulls[0]}: must not be null (leave it out to keep the value)")
        return self

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        return None if v is None else validate_host(v)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return None if v is None else _check_labels(v)


class PinHostKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    public_key: PublicKeyLine


class ScannedKeyOut(BaseModel):
    type: str
    fingerprint_sha256: str
    public_key: str


class ScanResult(BaseModel):
    host: str
    port: int
    keys: list[ScannedKeyOut]


class ServerOut(BaseModel):
    id: int
    name: str
    host: str
    port: int
    username: str
    auth_type: str
    has_private_key: bool
    has_passphrase: bool
    has_password: bool
    host_key: str | None
    host_key_fingerprint: str | None
    purpose: str
    criticality: str
    labels: dict[str, Any]
    notes: str
    owner_id: int | None
    owner: str | None
    created_at: datetime
    updated_at: datetime
    last_check_at: datetime | None
    last_check_ok: bool | None
    last_check_message: str | None
    deployments: int = 0


class CheckStep(BaseModel):
    step: str
    ok: bool
    detail: str


class TestResult(BaseModel):
    ok: bool
    failed_step: str | None
    steps: list[CheckStep]
    docker_version: str | None = None


class SuggestedPorts(BaseModel):
    ports: list[int]
    listening: list[int]
