"""The CLI's own config file: the instance URL and an API token, readable by the user only."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from deploymate.core.errors import NotAuthenticated


def config_path() -> Path:
    override = os.environ.get("DEPLOYMATE_CLI_CONFIG")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "deploymate" / "cli.json"


@dataclass(frozen=True)
class CliConfig:
    url: str
    token: str


def save(config: CliConfig) -> Path:
    """Write atomically with mode 0600 from the first byte, so the token is never world-readable."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"url": config.url, "token": config.token}, fh)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def load() -> CliConfig:
    """The instance and token: DEPLOYMATE_API_URL and DEPLOYMATE_API_TOKEN when both are set
    (a CI job with a scoped token), else the file `deploymate login` wrote."""
    url, token = os.environ.get("DEPLOYMATE_API_URL"), os.environ.get("DEPLOYMATE_API_TOKEN")
    if url and token:
        return CliConfig(url=url.rstrip("/"), token=token)
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return CliConfig(url=str(data["url"]), token=str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise NotAuthenticated("not logged in; run `deploymate login --url URL` first") from None
