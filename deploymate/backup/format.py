"""The backup bundle format: what a bundle holds and how it is built (no I/O, no database).

A bundle is one JSON object:

    {"manifest": {"format": "deploymate-backup", "format_version": 3, "app_version": "...",
                  "created_at": "...", "counts": {section: n},
                  "key_fingerprint": "sha256:<16 hex>", "sensitive": false,
                  "checksum": "sha256:<hex>"},
     "sections": {"users": [...], "servers": [...], "deployments": [...],
                  "templates": [...], "releases": [...], "apps": [...],
                  "app_secrets": [...], "app_releases": [...], "webhooks": [...],
                  "settings": {...}}}

Version 2 added the three app sections, version 3 the webhooks (their URLs sealed, since a URL
may hold a token), the fingerprint of the key that sealed the bundle's secrets and `sensitive`
(true when the users carry their password hashes). Versions 1 and 2 are still read.

The checksum is the SHA-256 of the canonical JSON of the `sections` object:
`json.dumps(sections, sort_keys=True, separators=(",", ":"))` (ASCII, `\\uXXXX` escapes), UTF-8.
Each record section holds every column of its table but those in EXCLUDED.
See docs/backup.md for what each section holds.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from deploymate.apps.models import App, AppRelease, AppSecret
from deploymate.auth.models import User
from deploymate.core.db import Base
from deploymate.deployments.models import Deployment, DeploymentTemplate, Release
from deploymate.notifications.models import Webhook
from deploymate.servers.models import Server

FORMAT = "deploymate-backup"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)

# Section name -> the table its records come from.
MODELS: dict[str, type[Base]] = {
    "users": User,
    "servers": Server,
    "deployments": Deployment,
    "templates": DeploymentTemplate,
    "releases": Release,
    "apps": App,
    "app_secrets": AppSecret,
    "app_releases": AppRelease,
    "webhooks": Webhook,
}
# Sections a format version added: a bundle of an earlier version does not have them.
SINCE: dict[str, int] = {"apps": 2, "app_secrets": 2, "app_releases": 2, "webhooks": 3}
# Columns never part of a bundle: release logs (which may hold container output), and password
# hashes unless the bundle is made with them (then it is marked sensitive). Sessions, API
# tokens, jobs and the audit trail are whole tables left out. Credentials and secret env
# values are kept as the Fernet tokens they are stored as. A new column is in the bundle unless
# it is listed here.
EXCLUDED: dict[str, frozenset[str]] = {
    "users": frozenset({"password_hash"}),
    "servers": frozenset(),
    "deployments": frozenset(),
    "templates": frozenset(),
    "releases": frozenset({"log"}),
    "apps": frozenset(),
    "app_secrets": frozenset(),  # the value is kept as its Fernet token
    "app_releases": frozenset(),
    "webhooks": frozenset(),  # the URL is sealed in the bundle (it is plaintext in the table)
}
FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(c.key for c in model.__table__.columns if c.key not in EXCLUDED[name])
    for name, model in MODELS.items()
}
# Fields a record may carry beyond FIELDS.
OPTIONAL: dict[str, tuple[str, ...]] = {"users": ("password_hash",)}
# Fields without which a record could not be restored; the others have defaults.
REQUIRED: dict[str, tuple[str, ...]] = {
    "users": ("id", "username", "role"),
    "servers": ("id", "name", "host", "port", "username", "auth_type", "credentials"),
    "deployments": ("id", "name", "server_id", "image", "internal_port", "external_port"),
    "templates": ("id", "name", "settings"),
    "releases": ("id", "deployment_id", "number", "image", "config"),
    "apps": ("id", "name", "spec_text", "spec"),
    "app_secrets": ("id", "app_id", "environment", "name", "value"),
    "app_releases": ("id", "app_id", "environment", "number", "spec", "parts"),
    "webhooks": ("id", "name", "url", "events"),
}
# Non-secret settings only: never the credentials key, the admin password, the webhook URL or
# the database URL (which may hold a password). Informational: settings come from DEPLOYMATE_*.
SETTINGS_KEYS: tuple[str, ...] = (
    "env",
    "local_docker",
    "ssh_host_key_checking",
    "admin_username",
    "secure_cookies",
    "session_idle_minutes",
    "session_max_hours",
    "login_max_failures_per_user",
    "login_max_failures_per_address",
    "login_failure_window_minutes",
    "max_request_bytes",
    "max_upload_bytes",
    "webhook_allow_private",
    "ssh_allow_private",
    "trusted_proxies",
    "worker_concurrency",
)
RECORD_SECTIONS: tuple[str, ...] = tuple(FIELDS)
SECTIONS: tuple[str, ...] = (*RECORD_SECTIONS, "settings")
MANIFEST_FIELDS = (
    "format",
    "format_version",
    "app_version",
    "created_at",
    "counts",
    "key_fingerprint",
    "sensitive",
    "checksum",
)
CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")


# --- building ------------------------------------------------------------------------------


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def checksum(sections: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical(sections)).hexdigest()


def section_count(value: Any) -> int:
    return len(value) if isinstance(value, list | dict) else 0


def make_bundle(
    sections: dict[str, Any],
    *,
    app_version: str,
    created_at: str,
    key_fingerprint: str,
    sensitive: bool = False,
) -> dict[str, Any]:
    """Wrap the sections with their manifest (counts and checksum)."""
    return {
        "manifest": {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "app_version": app_version,
            "created_at": created_at,
            "counts": {name: section_count(sections.get(name)) for name in SECTIONS},
            "key_fingerprint": key_fingerprint,
            "sensitive": sensitive,
            "checksum": checksum(sections),
        },
        "sections": sections,
    }


def dumps(bundle: Mapping[str, Any]) -> bytes:
    """The file as written: indented for people; the checksum does not depend on the layout."""
    return (json.dumps(bundle, indent=2, sort_keys=False, allow_nan=False) + "\n").encode()
