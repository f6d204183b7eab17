"""Shared fixtures: one app per test module and backend, its database reset before each test.

`client` is the module's app (SQLite, then PostgreSQL: every API test runs on both) with its
rows deleted and the first admin restored before the test: no new app, database or migrations
per test. Tests that need other settings build their own app on `database_url`, a fresh
database of the module's backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deploymate.app import create_app
from deploymate.core.config import Settings
from tests.support import database, postgres, server

pytest_plugins = ["tests.support.fixtures"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ADMIN_PASSWORD = "correct-Horse-battery-42"
TESTS = Path(__file__).parent
# Every test module carries the marker of its folder, so `-m "not e2e"` and `-m unit` work.
FOLDER_MARKERS = ("unit", "api", "cli", "browser", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).relative_to(TESTS).parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))


def require(condition: bool, part: str) -> None:
    """A missing part fails loudly, naming it; it is never a silent skip."""
    if not condition:
        pytest.fail(f"required test part missing: {part}", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """Real argon2id with light parameters inside the test process (production parameters
    are checked in tests/unit/test_passwords.py; subprocess servers keep them)."""
    with database.cheap_hashing():
        yield


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PostgresServer]:
    try:
        pg = postgres.start()
    except postgres.PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    yield pg
    pg.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _database(backend: str, request: pytest.FixtureRequest, directory: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'deploymate.db'}"
        return
    pg: postgres.PostgresServer = request.getfixturevalue("pg_server")
    name = pg.create_database()
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of the module's backend, for a test that builds its own app."""
    yield from _database(backend, request, tmp_path)


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "development",
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "admin_username": "admin",
        "admin_password": ADMIN_PASSWORD,
        "proxy_image": "dm-test/caddy:2",  # built offline (tests/support/images.py)
        # Monitoring rounds would add notifications to tests that count them; the tests of
        # monitoring turn it on with their own intervals.
        "monitor_server_seconds": 0,
        "monitor_deployment_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def settings(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """The settings of the module's app."""
    directory = tmp_path_factory.mktemp(f"app-{backend}")
    for url in _database(backend, request, directory):
        yield make_settings(directory, url)


@pytest.fixture(scope="module")
def app_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def client(app_client: TestClient) -> TestClient:
    """The module's app with an empty database (but the first admin) and a fresh cookie jar."""
    database.reset_app(app_client)
    return app_client


@pytest.fixture(scope="module")
def running_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[server.RunningServer]:
    """A real `deploymate serve` process, shared by a module's tests."""
    instance = server.start(tmp_path_factory.mktemp("served"), ADMIN_PASSWORD)
    yield instance
    instance.stop()
