"""Shared fixtures: settings per test, an app client on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deploymate.app import create_app
from deploymate.config import Settings
from tests.support import postgres, server

pytest_plugins = ["tests.support.fixtures"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ADMIN_PASSWORD = "correct-Horse-battery-42"


def require(condition: bool, part: str) -> None:
    """A missing part fails loudly, naming it; it is never a silent skip."""
    if not condition:
        pytest.fail(f"required test part missing: {part}", pytrace=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    try:
        server = postgres.start()
    except postgres.PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'deploymate.db'}"
        return
    server: postgres.PostgresServer = request.getfixturevalue("pg_server")
    name = server.create_database()
    yield server.url(name)
    server.drop_database(name)


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "development",
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "admin_username": "admin",
        "admin_password": ADMIN_PASSWORD,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture(scope="module")
def running_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.RunningServer]:
    """A real `deploymate serve` process, shared by a module's tests."""
    instance = server.start(tmp_path_factory.mktemp("served"), ADMIN_PASSWORD)
    yield instance
    instance.stop()
