"""One settings object for the whole application, read from DEPLOYMATE_* variables."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploymate.core import failpoints
from deploymate.core.errors import ConfigurationError, field_errors
from deploymate.core.passwords import password_problem

ENV_PREFIX = "DEPLOYMATE_"


def default_data_dir() -> Path:
    """Follow the XDG convention so a plain `deploymate serve` needs no set-up."""
    return Path.home() / ".local" / "share" / "deploymate"


class Settings(BaseSettings):
    """Configuration; every field maps to DEPLOYMATE_<FIELD> in the environment or the env file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False, validate_default=True
    )

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    server_credentials_key: SecretStr | None = None
    local_docker_enabled: bool | None = None
    ssh_host_key_checking: Literal["yes", "accept-new"] = "yes"
    ssh_known_hosts_file: Path | None = None
    admin_username: str = Field(default="admin", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    admin_password: SecretStr | None = None
    secure_cookies: bool = False
    session_idle_minutes: int = Field(default=120, ge=1, le=60 * 24 * 30)
    session_max_hours: int = Field(default=24, ge=1, le=24 * 90)
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_failure_window_minutes: int = Field(default=15, ge=1)
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    # Backup bundles uploaded for a restore dry-run may be larger than ordinary requests.
    max_upload_bytes: int = Field(default=20 * 1_048_576, ge=1024)
    # The source archive of a commit an app deploy builds from (`git archive`, gzip).
    max_source_bytes: int = Field(default=200 * 1_048_576, ge=1024)
    notification_webhook: str | None = None
    # Outgoing webhooks to loopback or private addresses are refused unless this is on;
    # link-local and cloud-metadata addresses (169.254.0.0/16) are refused always.
    webhook_allow_private: bool = False
    # Members may scan, test and register SSH servers at loopback or private addresses only
    # when this is on (admins always may); link-local and metadata addresses never.
    ssh_allow_private: bool = False
    # Reverse proxies (CIDRs, comma-separated) whose X-Forwarded-For names the real client.
    trusted_proxies: str = ""
    # Jobs (deploys, stops, ...) one process runs at once; they mostly wait on SSH and Docker.
    worker_concurrency: int = Field(default=16, ge=1, le=512)
    # How built and local images reach servers: through the control host's registry (only the
    # layers a server lacks; needs docker-registry), or whole (docker save | docker load).
    image_shipping: Literal["registry", "stream"] = "registry"
    # How often the worker looks for previews past their expiry (seconds).
    preview_reap_seconds: float = Field(default=60.0, ge=0.1, le=3600)
    # Continuous monitoring (seconds between rounds; 0 turns that half off): every server
    # (reachability, Docker, disk, proxy) and every running deployment (container, restarts,
    # health), with at most `monitor_concurrency` servers checked at once.
    monitor_server_seconds: float = Field(default=60.0, ge=0, le=86400)
    monitor_deployment_seconds: float = Field(default=30.0, ge=0, le=86400)
    monitor_concurrency: int = Field(default=4, ge=1, le=64)
    # The proxy in front of deployments with domains; any image with a `caddy` binary works.
    proxy_image: str = Field(default="caddy:2", min_length=1, max_length=512)
    # Fault-injection tests only (core/failpoints.py): steps of a release where the process
    # holds, `release.switch` or `release.health=3`; refused in production.
    failpoints: str = ""
    # Host directories (comma-separated absolute paths) under which admins may bind-mount;
    # empty: no bind mounts at all, only named volumes.
    bind_mount_roots: str = ""

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+psycopg://")
        return value

    @field_validator("monitor_server_seconds", "monitor_deployment_seconds")
    @classmethod
    def _interval(cls, value: float) -> float:
        if 0 < value < 0.1:
            raise ValueError("0 (off) or at least 0.1 seconds")
        return value

    @field_validator("failpoints")
    @classmethod
    def _failpoints(cls, value: str) -> str:
        failpoints.parse(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: str) -> str:
        for part in (p.strip() for p in value.split(",")):
            if part:
                try:
                    ipaddress.ip_network(part, strict=False)
                except ValueError:
                    raise ValueError(f"{part!r} is not an address or CIDR range") from None
        return value

    @model_validator(mode="after")
    def _production_guards(self) -> Settings:
        if self.env != "production":
            return self
        if self.failpoints:
            raise ValueError("DEPLOYMATE_FAILPOINTS is for fault-injection tests, never production")
        if self.server_credentials_key is None:
            raise ValueError(
                "DEPLOYMATE_SERVER_CREDENTIALS_KEY is required in production"
                " (a Fernet key: 32 url-safe base64-encoded bytes)"
            )
        if not self.secure_cookies:
            raise ValueError(
                "DEPLOYMATE_SECURE_COOKIES must be true in production (serve over HTTPS)"
            )
        if self.admin_password is not None:
            problem = password_problem(self.admin_password.get_secret_value(), self.admin_username)
            if problem:
                raise ValueError(f"DEPLOYMATE_ADMIN_PASSWORD is too weak: {problem}")
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'deploymate.db'}"

    @property
    def bind_roots(self) -> list[str]:
        return [p.strip().rstrip("/") or "/" for p in self.bind_mount_roots.split(",") if p.strip()]

    @property
    def local_docker(self) -> bool:
        """Deploying to the control host itself is on in development, off in production."""
        if self.local_docker_enabled is None:
            return self.env == "development"
        return self.local_docker_enabled

    @cached_property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        parts = (p.strip() for p in self.trusted_proxies.split(","))
        return tuple(ipaddress.ip_network(p, strict=False) for p in parts if p)

    @property
    def session_cookie_name(self) -> str:
        # The __Host- prefix makes browsers refuse the cookie unless Secure, Path=/ and no Domain.
        return "__Host-deploymate_session" if self.secure_cookies else "deploymate_session"


def load_settings(env_file: Path | None = None) -> Settings:
    """Build the settings, turning a validation failure into one line naming the variable."""
    if env_file is not None and not env_file.is_file():
        raise ConfigurationError(f"env file not found: {env_file}")
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        first = field_errors(exc)[0]
        field = first.field.split(".")[0]
        name = f"{ENV_PREFIX}{field.upper()}: " if field and field != "__root__" else ""
        raise ConfigurationError(f"invalid configuration: {name}{first.message}") from None
