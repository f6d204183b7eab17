"""Resetting a running test app between tests, and light password hashing for the test process.

A module's tests share one app; before each test its rows are deleted (ids start at 1 again on
both backends) and the first admin is put back, so a test sees what a fresh instance holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from deploymate import models  # noqa: F401  (every table registered: the whole schema)
from deploymate.auth import service as auth_service
from deploymate.core import passwords
from deploymate.core.db import Base
from deploymate.jobs.models import Job
from deploymate.notifications import outbox

LIGHT_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@contextlib.contextmanager
def cheap_hashing() -> Iterator[None]:
    previous = passwords.use_hasher(LIGHT_HASHER)
    try:
        yield
    finally:
        passwords.use_hasher(previous)


async def _wait_for_jobs(client: TestClient, timeout: float = 60) -> None:
    """A test that left a job running must not see it finish into the next test's rows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
            busy = (
                await db.execute(select(Job.id).where(Job.status.in_(("queued", "running"))))
            ).first()
        if busy is None:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("a job of the previous test is still running")


async def _reset(client: TestClient) -> None:
    await _wait_for_jobs(client)
    await outbox.drain(5)
    engine = client.app.state.context.engine  # type: ignore[attr-defined]
    tables = list(reversed(Base.metadata.sorted_tables))
    async with engine.begin() as conn:
        for table in tables:  # DELETE: on a few rows much faster than PostgreSQL's TRUNCATE
            await conn.execute(table.delete())
        if engine.dialect.name == "postgresql":  # ids start at 1 again, as on SQLite
            restarts = ", ".join(  # setval of NULL (no sequence) is NULL: harmless
                f"setval(pg_get_serial_sequence('\"{t.name}\"', 'id'), 1, false)"
                for t in tables
                if "id" in t.c
            )
            await conn.execute(text(f"SELECT {restarts}"))
    async with client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
        await auth_service.bootstrap_admin(db, settings=client.app.state.context.settings)  # type: ignore[attr-defined]


def _restore_settings(client: TestClient) -> None:
    """Tests may flip a setting on the shared app; the next test starts from the original."""
    settings = client.app.state.context.settings  # type: ignore[attr-defined]
    state = client.app.state  # type: ignore[attr-defined]
    if not hasattr(state, "original_settings"):
        state.original_settings = dict(settings.__dict__)
    for key in set(settings.__dict__) - set(state.original_settings):
        del settings.__dict__[key]  # a value cached from a changed setting
    for key, value in state.original_settings.items():
        if settings.__dict__.get(key) is not value:
            settings.__dict__[key] = value


def reset_app(client: TestClient) -> None:
    """Empty the app's database and bootstrap it again (the first admin from the settings, as at
    start-up); forget cookies and extra headers."""
    assert client.portal is not None, "the module's client must be entered (`with TestClient`)"
    _restore_settings(client)
    client.portal.call(_reset, client)
    client.cookies.clear()
    for header in ("X-CSRF-Token", "Authorization", "Origin"):
        client.headers.pop(header, None)
