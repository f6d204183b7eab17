"""Deployment requests and responses; every field that reaches Docker is validated here."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from deploymate.core.ids import Id

# Docker's reference grammar: [registry[:port]/]path[:tag][@sha256:digest], lower-case path.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::\d{{1,5}})?/)?"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
_DIGEST = r"(?:@sha256:[a-f0-9]{64})?"
IMAGE_RE = re.compile(rf"{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LABEL_KEY_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
HEALTH_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")

NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def validate_name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            "use lower-case letters, digits and inner hyphens, like web-1 (it names containers)"
        )
    return value


Name = Annotated[str, StringConstraints(min_length=1, max_length=40), AfterValidator(validate_name)]
Image = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]


def validate_image(value: str) -> str:
    if not IMAGE_RE.fullmatch(value):
        raise ValueError(
            "must be an image reference like registry.example.com/team/app:1.2 "
            "(lower-case name, optional tag and digest; no spaces or options)"
        )
    return value


def validate_command(value: list[str] | None) -> list[str] | None:
    if value is not None and any("\x00" in part for part in value):
        raise ValueError("must not contain NUL bytes")
    return value


def validate_labels(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 64:
        raise ValueError("at most 64 labels")
    for key, val in value.items():
        if not LABEL_KEY_RE.fullmatch(key) or key.startswith("deploymate") or len(val) > 256:
            raise ValueError(f"invalid label {key[:40]!r} (lower-case key, not deploymate.*)")
        if any(c in val for c in "\n\r\x00"):
            raise ValueError(f"value of label {key} must not contain a newline or NUL byte")
    return value


def validate_env(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 200:
        raise ValueError("at most 200 variables")
    for name, val in value.items():
        if not ENV_NAME_RE.fullmatch(name) or len(name) > 128:
            raise ValueError(
                f"invalid variable name {name[:40]!r}: letters, digits and _, "
                "not starting with a digit"
            )
        if any(c in val for c in "\n\r\x00"):
            raise ValueError(f"value of {name} must not contain a newline or NUL byte")
        if len(val) > 32_768:
            raise ValueError(f"value of {name} is longer than 32768 characters")
    return value


class HealthCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["http", "tcp", "running"] = "http"  # running: it keeps running (a worker)
    path: Annotated[str, StringConstraints(max_length=512)] = "/"
    expected_status: Annotated[int, Field(ge=100, le=599)] = 200
    interval: Annotated[float, Field(ge=0.2, le=60)] = 1.0
    timeout: Annotated[float, Field(ge=0.2, le=60)] = 2.0
    retries: Annotated[int, Field(ge=1, le=300)] = 30
    start_period: Annotated[float, Field(ge=0, le=600)] = 0.0

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not HEALTH_PATH_RE.fullmatch(value):
            raise ValueError(
                "must start with / and contain no spaces, quotes or control characters"
            )
        return value


# The deployable values, each validated by its type wherever it appears (create, change,
# template), so a change can never accept what a creation refuses.
ImageRef = Annotated[Image, AfterValidator(validate_image)]
EnvMap = Annotated[dict[str, str], AfterValidator(validate_env)]
Labels = Annotated[dict[str, str], AfterValidator(validate_labels)]
CommandLine = Annotated[
    list[Annotated[str, StringConstraints(max_length=4096)]],
    Field(max_length=64),
    AfterValidator(validate_command),
]
RestartPolicy = Literal["no", "always", "unless-stopped", "on-failure"]
MemoryLimit = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,5}[kmg]$")]
CpuLimit = Annotated[float, Field(ge=0.01, le=64)]
EnvName = Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_IPV4 = re.compile(r"\d+(\.\d+){3}")


def validate_domain(value: str) -> str:
    """A host name Caddy routes by: lower-case labels; no wildcard, port, path or address."""
    host = value.strip().lower().rstrip(".")
    if not host or any(c in host for c in "*:/@ \t\\?#"):
        raise ValueError(
            f"{value[:80]!r} is not a host name: give a name like shop.example.com, without a "
            "scheme, port, path or wildcard"
        )
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(p) for p in host.split(".")):
        raise ValueError(
            f"{value[:80]!r} is not a valid host name (letters, digits and inner hyphens, "
            "labels of at most 63 characters joined by dots)"
        )
    if _IPV4.fullmatch(host):
        raise ValueError(
            f"{host} is an address, not a host name; leave the domains empty and use a port"
        )
    return host


Domain = Annotated[str, StringConstraints(max_length=253), AfterValidator(validate_domain)]
Tls = Literal["auto", "internal", "off"]
UNSAFE_IN_PATH = (",", ":", "\x00", "\n", "\r", "=")


def validate_container_path(value: str) -> str:
    if not value.startswith("/") or value.rstrip("/") == "":
        raise ValueError(f"{value[:80]!r}: give an absolute path other than /, like /data")
    if any(c in value for c in UNSAFE_IN_PATH) or "/../" in f"{value}/":
        raise ValueError(f"{value[:80]!r}: no commas, colons, equals signs or .. in a path")
    return value.rstrip("/") or value


ContainerPath = Annotated[
    str, StringConstraints(min_length=1, max_length=1024), AfterValidator(validate_container_path)
]
VolumeName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class Volume(BaseModel):
    """A named volume (`name`) that outlives releases, or a bind mount of a host path
    (`source`, admins only, under the allowed roots)."""

    model_config = ConfigDict(extra="forbid")
    name: VolumeName | None = None
    source: ContainerPath | None = None
    path: ContainerPath
    read_only: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Volume:
        if (self.name is None) == (self.source is None):
            raise ValueError("give either a volume name or a host path (source), not both")
        return self


class SmokeCheck(BaseModel):
    """After the switch: an HTTP request through the proxy, or a command in the container."""

    model_config = ConfigDict(extra="forbid")
    http: Annotated[str, StringConstraints(max_length=512)] | None = None
    method: Literal["GET", "HEAD"] = "GET"
    expect: Annotated[int, Field(ge=100, le=599)] = 200
    contains: Annotated[str, StringConstraints(max_length=256)] | None = None
    command: CommandLine | None = None
    timeout: Annotated[float, Field(ge=0.2, le=300)] = 10.0

    @model_validator(mode="after")
    def _one_kind(self) -> SmokeCheck:
        if (self.http is None) == (self.command is None):
            raise ValueError("a smoke check is either `http` (a path) or `command`, not both")
        if self.http is not None and not HEALTH_PATH_RE.fullmatch(self.http):
            raise ValueError("the smoke path must start with / and contain no spaces or quotes")
        if self.command is not None and not self.command:
            raise ValueError("a smoke command needs at least the program")
        if self.contains is not None and any(c in self.contains for c in "\r\n\x00"):
            raise ValueError("the expected text must be one line")
        return self


class Settings(BaseModel):
    """The deployable settings shared by create, update and templates."""

    model_config = ConfigDict(extra="forbid")
    image: ImageRef
    internal_port: Port
    external_port: Port | None = None
    env: EnvMap = Field(default_factory=dict)
    secret_env: EnvMap = Field(default_factory=dict)
    command: CommandLine | None = None
    restart_policy: RestartPolicy = "unless-stopped"
    health_check: HealthCheckIn = Field(default_factory=HealthCheckIn)
    memory_limit: MemoryLimit | None = None
    cpu_limit: CpuLimit | None = None
    labels: Labels = Field(default_factory=dict)
    domains: Annotated[list[Domain], Field(max_length=20)] = Field(default_factory=list)
    tls: Tls = "auto"
    volumes: Annotated[list[Volume], Field(max_length=20)] = Field(default_factory=list)
    required_env: Annotated[list[EnvName], Field(max_length=100)] = Field(default_factory=list)
    smoke: Annotated[list[SmokeCheck], Field(max_length=20)] = Field(default_factory=list)
    drain_seconds: Annotated[float, Field(ge=0, le=3600)] = 10.0

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        self.domains = list(dict.fromkeys(self.domains))
        self.required_env = list(dict.fromkeys(self.required_env))
        if self.domains and self.external_port is not None:
            raise ValueError(
                "a deployment with domains is reached through the proxy on ports 80 and 443; "
                "leave the external port empty"
            )
        paths = [v.path for v in self.volumes]
        if len(set(paths)) != len(paths):
            raise ValueError("two volumes are mounted at the same path")
        names = [v.name for v in self.volumes if v.name]
        if len(set(names)) != len(names):
            raise ValueError("a volume name appears twice")
        return self


class DeploymentCreate(Settings):
    name: Name
    server_id: Id | None = None
    template_id: Id | None = None
    image: ImageRef | None = None  # type: ignore[assignment]
    internal_port: Port | None = None  # type: ignore[assignment]


class DeploymentUpdate(BaseModel):
    """Changing any of these makes a new release and deploys it; every value is validated as
    at creation (and the merged settings once more by the use case)."""

    model_config = ConfigDict(extra="forbid")
    image: ImageRef | None = None
    internal_port: Port | None = None
    external_port: Port | None = None
    env: EnvMap | None = None
    secret_env: EnvMap | None = None  # merged: keys given replace, others stay
    secret_env_remove: list[EnvName] = Field(default_factory=list, max_length=200)
    command: CommandLine | None = None
    restart_policy: RestartPolicy | None = None
    health_check: HealthCheckIn | None = None
    memory_limit: MemoryLimit | None = None
    cpu_limit: CpuLimit | None = None
    labels: Labels | None = None
    domains: list[Domain] | None = None
    tls: Tls | None = None
    volumes: list[Volume] | None = None
    required_env: list[EnvName] | None = None
    smoke: list[SmokeCheck] | None = None
    drain_seconds: Annotated[float, Field(ge=0, le=3600)] | None = None


class ExecRequest(BaseModel):
    """A one-off command in the serving container, as an argument list (never a shell line)."""

    model_config = ConfigDict(extra="forbid")
    command: Annotated[CommandLine, Field(min_length=1)]
    timeout: float = Field(default=600, gt=0, le=3600, description="seconds")


class RedeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: ImageRef | None = None


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    release_id: Id | None = None


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[
        str,
        StringConstraints(
            min_length=1, max_length=64, strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f]+$"
        ),
    ]


class TemplateUpdate(BaseModel):
    """A new name, and/or settings to change (the ones given replace; validated on the merge)."""

    model_config = ConfigDict(extra="forbid")
    name: (
        Annotated[
            str,
            StringConstraints(
                min_length=1, max_length=64, strip_whitespace=True, pattern=r"^[^\x00-\x1f\x7f]+$"
            ),
        ]
        | None
    ) = None
    settings: dict[str, Any] | None = None


class TemplateOut(BaseModel):
    id: int
    name: str
    settings: dict[str, Any]


class ReleaseBrief(BaseModel):
    id: int
    number: int
    image: str
    image_id: str | None
    status: str


class ReleaseOut(ReleaseBrief):
    reason: str
    repo_digest: str | None
    config: dict[str, Any]
    container_name: str | None
    created_by: str | None
    created_at: datetime
    finished_at: datetime | None
    rollback_of: int | None
    log: list[str]


class DeploymentOut(BaseModel):
    id: int
    name: str
    server_id: int | None
    server_name: str | None
    target: str
    owner_id: int | None
    image: str
    internal_port: int
    external_port: int | None
    domains: list[str]
    tls: str
    volumes: list[dict[str, Any]]
    required_env: list[str]
    smoke: list[dict[str, Any]]
    drain_seconds: float
    smoke_result: dict[str, Any] | None
    env: dict[str, Any]
    secret_env_keys: list[str]
    command: list[str] | None
    restart_policy: str
    health_check: dict[str, Any]
    memory_limit: str | None
    cpu_limit: float | None
    labels: dict[str, Any]
    status: str
    status_message: str | None
    current_release: ReleaseBrief | None
    active_job_id: int | None
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class JobAccepted(BaseModel):
    job_id: int


class DeploymentCreated(DeploymentOut):
    job_id: int


class ActivityOut(BaseModel):
    id: int
    created_at: datetime
    actor: str | None
    action: str
    message: str
    job_id: int | None


class JobOut(BaseModel):
    id: int
    kind: str
    status: str
    deployment_id: int | None
    release_id: int | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    log: list[dict[str, Any]]
