"""`deploymate audit env FILE`: a production env file read as DeployMate would read it, and
held to what production needs. Values are checked, never printed."""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.fernet import Fernet

from deploymate.audits.findings import Finding
from deploymate.core.config import ENV_PREFIX
from deploymate.core.passwords import password_problem

MAX_BYTES = 1_048_576
LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
DEFAULT_DB_PASSWORDS = {"postgres", "password", "deploymate", "changeme", "secret", "admin"}


class EnvFileUnreadable(Exception):
    """The file cannot be audited at all (missing, binary, too large)."""


def read(path: Path) -> dict[str, str]:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise EnvFileUnreadable(f"{path} is not a file")
        if size > MAX_BYTES:
            raise EnvFileUnreadable(
                f"{path} is {size} bytes; an env file is a few lines (over {MAX_BYTES} refused)"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EnvFileUnreadable(f"{path} does not exist") from None
    except OSError as exc:
        raise EnvFileUnreadable(f"{path} cannot be read: {exc.strerror}") from None
    if b"\x00" in raw:
        raise EnvFileUnreadable(f"{path} is binary, not an env file of KEY=VALUE lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvFileUnreadable(f"{path} is not UTF-8 text") from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = LINE.match(line)
        if found:
            value = found.group(2)
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[found.group(1).upper()] = value
    return values


def _key_problem(value: str) -> str | None:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        return "is empty"
    for index, key in enumerate(keys, 1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            return (
                f"key {index} of {len(keys)} is not a Fernet key (32 url-safe base64 bytes); "
                "make one with `deploymate credentials generate-key`"
            )
    return None


def audit(path: Path, *, behind_proxy: bool = False) -> list[Finding]:
    env = {k.removeprefix(ENV_PREFIX.upper()): v for k, v in read(path).items()}
    where = str(path)
    out: list[Finding] = []

    def finding(check: str, message: str, severity: str = "error") -> None:
        out.append(Finding(check, message, where, "warn" if severity == "warn" else "error"))

    name = ENV_PREFIX.upper()
    if env.get("ENV", "").lower() != "production":
        finding("env", f"{name}ENV is not production (development defaults stay on)")
    key = env.get("SERVER_CREDENTIALS_KEY")
    if key is None:
        finding(
            "credentials_key",
            f"{name}SERVER_CREDENTIALS_KEY is missing: server credentials would be sealed with "
            "a generated key nobody backed up",
        )
    elif (problem := _key_problem(key)) is not None:
        finding("credentials_key", f"{name}SERVER_CREDENTIALS_KEY {problem}")
    if env.get("SECURE_COOKIES", "").lower() not in ("1", "true", "yes", "on"):
        finding(
            "secure_cookies",
            f"{name}SECURE_COOKIES is not true: session cookies would travel over plain HTTP",
        )
    password = env.get("ADMIN_PASSWORD")
    if password is not None:
        problem = password_problem(password, env.get("ADMIN_USERNAME", "admin"))
        if problem:
            finding("admin_password", f"{name}ADMIN_PASSWORD is weak: {problem}")
        else:
            finding(
                "admin_password",
                f"{name}ADMIN_PASSWORD is set: once the first admin exists, remove it from "
                "the file",
                "warn",
            )
    database = env.get("DATABASE_URL", "")
    credentials = re.match(r"^[a-z+]+://([^:@/]*):([^@/]*)@", database)
    if credentials and credentials.group(2).lower() in DEFAULT_DB_PASSWORDS | {
        credentials.group(1).lower()
    }:
        finding("database_password", f"{name}DATABASE_URL uses a default or guessable password")
    if env.get("SSH_HOST_KEY_CHECKING", "yes") != "yes":
        finding(
            "host_key_checking",
            f"{name}SSH_HOST_KEY_CHECKING is not yes: a changed host key would be accepted",
        )
    if env.get("LOCAL_DOCKER_ENABLED", "").lower() in ("1", "true", "yes", "on"):
        finding(
            "local_docker",
            f"{name}LOCAL_DOCKER_ENABLED is on: deployments may run on the control host itself",
            "warn",
        )
    if behind_proxy and not env.get("TRUSTED_PROXIES"):
        finding(
            "trusted_proxies",
            f"{name}TRUSTED_PROXIES is empty although the instance is behind a proxy: every "
            "client would look like the proxy (rate limits, audit addresses)",
        )
    return out
