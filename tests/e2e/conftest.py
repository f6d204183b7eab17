"""End-to-end fixtures: the app on SQLite with a known credentials key, signed in as admin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from deploymate.app import create_app
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.support.api import login
from tests.support.lab import LabHost


@pytest.fixture
def credentials_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def e2e_client(tmp_path: Path, credentials_key: str) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'dm.db'}",
        server_credentials_key=credentials_key,
        ssh_known_hosts_file=tmp_path / "known_hosts",
        ssh_allow_private=True,  # lab hosts live in 198.18.0.0/15, a private range
    )
    with TestClient(create_app(settings)) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
        yield client


def key_server(host: LabHost, name: str = "web-1", **overrides: Any) -> dict[str, Any]:
    """The API body for a lab host with key authentication and its pinned host key."""
    body: dict[str, Any] = {
        "name": name,
        "host": host.address,
        "port": host.ssh_port,
        "username": "root",
        "auth_type": "key",
        "private_key": host.client_key.read_text(),
        "host_key": host.host_public_key,
        "purpose": "staging",
        "labels": {"team": "core"},
    }
    body.update(overrides)
    return body
