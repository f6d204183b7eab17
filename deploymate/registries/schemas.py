"""Registry requests and responses; the password is write-only."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

_HOST = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
    r"(?::\d{1,5})?"
)


def registry_host(value: str) -> str:
    """`ghcr.io`, `registry.example.com:5000` or `https://ghcr.io`: the host[:port] that image
    references name. A path, a query or credentials in the URL are refused (credentials go in
    their own fields, where they are sealed)."""
    text = value.strip()
    parts = urlsplit(text if "://" in text else f"https://{text}")
    if parts.scheme not in ("http", "https"):
        raise ValueError("give the registry as host[:port], like ghcr.io or registry.example.com")
    if parts.username or parts.password or "@" in text:
        raise ValueError("no credentials in the URL: give them as username and password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            "no path in the registry URL: give only host[:port]; the image name carries the path"
        )
    host = parts.netloc.lower()
    if not _HOST.fullmatch(host):
        raise ValueError(f"{host[:80]!r} is not a host name with an optional port")
    return host


RegistryHost = Annotated[str, StringConstraints(max_length=300), AfterValidator(registry_host)]
Name = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Username = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s:]+$")]


class RegistryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    url: RegistryHost
    username: Username
    password: Annotated[SecretStr, Field(min_length=1, max_length=4096)]
    shared: bool = False


class RegistryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    username: Username | None = None
    password: Annotated[SecretStr, Field(min_length=1, max_length=4096)] | None = None
    shared: bool | None = None


class RegistryOut(BaseModel):
    id: int
    name: str
    host: str
    username: str
    shared: bool
    created_at: datetime
