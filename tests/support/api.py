"""Small helpers for driving the HTTP API in tests."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient


def login(client: TestClient, username: str, password: str) -> str:
    """Sign in with the client's cookie jar; returns the CSRF token."""
    res = client.post("/api/auth/login", json={"username": username, "password": password})
    assert res.status_code == 200, res.text
    token: str = res.json()["csrf_token"]
    return token


def create_user(
    client: TestClient, csrf: str, username: str, role: str = "member", password: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"username": username, "role": role}
    if password is not None:
        body["password"] = password
    res = client.post("/api/admin/users", json=body, headers={"X-CSRF-Token": csrf})
    assert res.status_code == 201, res.text
    data: dict[str, Any] = res.json()
    return data


def audit_rows(client: TestClient) -> list[dict[str, Any]]:
    """Every audit row, read straight from the database the app uses."""
    from sqlalchemy import select

    from deploymate.audit.models import AuditEvent

    async def fetch() -> list[dict[str, Any]]:
        async with client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
            rows = (await db.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars()
            return [
                {
                    "action": r.action,
                    "outcome": r.outcome,
                    "actor": r.actor_name,
                    "address": r.client_address,
                    "target": r.target_id,
                    "details": r.details,
                }
                for r in rows
            ]

    assert client.portal is not None
    return client.portal.call(fetch)


def run_in_app(client: TestClient, fn: Any, *args: Any) -> Any:
    """Run an async function on the app's event loop with a database session."""

    async def call() -> Any:
        async with client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
            return await fn(db, *args)

    assert client.portal is not None
    return client.portal.call(call)


def member_headers(client: TestClient, name: str) -> dict[str, str]:
    """A new member who changed the temporary password and holds an API token: bearer headers.

    `client` must be signed in as an admin with its CSRF token in `client.headers`."""
    first, second = f"{name}-first-pass-123", f"{name}-second-pass-456"
    create_user(client, client.headers["X-CSRF-Token"], name, password=first)
    member = second_client(client)
    csrf = login(member, name, first)
    res = member.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": first, "new_password": second},
    )
    token = member.post(
        "/api/auth/tokens",
        json={"name": "t"},
        headers={"X-CSRF-Token": res.json()["csrf_token"]},
    ).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def second_client(client: TestClient, address: str = "testclient") -> TestClient:
    """Another browser on the same running app: its own cookie jar, the app's event loop,
    and the peer address given."""
    other = TestClient(client.app, base_url=str(client.base_url), client=(address, 50000))
    other.portal = client.portal
    return other


def settle(client: TestClient, timeout: float = 15) -> None:
    """Wait until every committed event has been dispatched and its webhooks sent."""
    from sqlalchemy import func, select

    from deploymate.core.events import EventRecord
    from deploymate.notifications import outbox

    async def pending() -> int:
        async with client.app.state.context.sessions() as db:  # type: ignore[attr-defined]
            stmt = select(func.count()).where(EventRecord.dispatched_at.is_(None))
            return int((await db.execute(stmt)).scalar_one())

    async def drained() -> None:
        await outbox.drain(timeout)

    assert client.portal is not None
    deadline = time.monotonic() + timeout
    while client.portal.call(pending):
        assert time.monotonic() < deadline, "events were not dispatched in time"
        time.sleep(0.05)
    client.portal.call(drained)
