"""List endpoints and console pages with many rows: latency under load and SQL per request.

Run from the repository: `.venv/bin/python -m benchmarks.api_latency [--seconds S]` (part of
`make bench`). For SQLite and for PostgreSQL it:

1. creates 1,000 deployments (on 50 servers), 5,000 releases, 10,000 activity events and
   20,000 audit rows through the project's models;
2. counts the SQL statements one request of each endpoint runs (in-process, with a listener on
   the engine) — a number that must not grow with the rows;
3. starts a real `deploymate serve` and sends each endpoint an evenly spaced load of 50 and of
   200 requests per second (an open loop: a request leaves on time whether or not the previous
   one answered), then prints p50, p95 and p99 latency. The goal: p99 at most 50 ms at 200/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import event, insert

from deploymate.app import create_app
from deploymate.audit.models import AuditEvent
from deploymate.auth.models import User
from deploymate.bootstrap import prepare_database
from deploymate.core import db
from deploymate.core.config import Settings
from deploymate.core.crypto import cipher_from_settings
from deploymate.core.db import utcnow
from deploymate.deployments.models import Deployment, DeploymentEvent, Release
from deploymate.servers.models import Server
from tests.support import postgres
from tests.support.server import free_port

ADMIN_PASSWORD = "bench-Admin-password-42"
DEPLOYMENTS, RELEASES, EVENTS, AUDIT, SERVERS = 1_000, 5_000, 10_000, 20_000, 50
RATES = (50, 200)
ENDPOINTS = (
    "/api/deployments",
    "/api/servers",
    "/api/admin/users",
    "/api/admin/audit",
    "/api/ops/overview",
    "/api/notifications",
    "/api/deployments/1/releases",
    "/api/deployments/1/activity",
    "/app",
    "/app/server-review",
    "/app/audit",
    "/app/users",
)


async def _seed(settings: Settings) -> None:
    """The rows, inserted in bulk through the models' tables."""
    await prepare_database(settings)
    engine = db.make_engine(settings.resolved_database_url)
    sealed = cipher_from_settings(settings).encrypt('{"password": "bench-server-password"}')
    now = utcnow()
    async with engine.begin() as conn:
        admin_id = (await conn.execute(User.__table__.select().limit(1))).first()[0]  # type: ignore[index]
        await conn.execute(
            insert(Server),
            [
                {
                    "name": f"srv-{i}",
                    "host": f"srv{i}.example.test",
                    "port": 22,
                    "username": "deploy",
                    "auth_type": "password",
                    "credentials": sealed,
                    "purpose": "production",
                    "criticality": "medium",
                    "labels": {},
                    "notes": "",
                    "owner_id": admin_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(SERVERS)
            ],
        )
        await conn.execute(
            insert(Deployment),
            [
                {
                    "name": f"app-{i:04d}",
                    "server_id": 1 + i % SERVERS,
                    "owner_id": admin_id,
                    "image": f"registry.example.com/app:{i}",
                    "internal_port": 80,
                    "external_port": 8000 + i % 1000,
                    "env": {"MODE": "bench"},
                    "health_check": {"type": "http", "path": "/up"},
                    "labels": {},
                    "status": ("running", "failed", "stopped", "deploying")[i % 4],
                    "current_release_id": 1 + i * (RELEASES // DEPLOYMENTS),
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(DEPLOYMENTS)
            ],
        )
        per = RELEASES // DEPLOYMENTS
        await conn.execute(
            insert(Release),
            [
                {
                    "deployment_id": 1 + i // per,
                    "number": 1 + i % per,
                    "reason": "redeploy",
                    "image": f"registry.example.com/app:{i}",
                    "image_id": "sha256:" + f"{i:064x}",
                    "config": {"image": "x", "internal_port": 80, "external_port": 8000},
                    "status": "succeeded",
                    "container_name": f"dm-app-r{i}",
                    "created_by": "admin",
                    "created_at": now,
                    "log": {"lines": ["started", "healthy"]},
                }
                for i in range(RELEASES)
            ],
        )
        await conn.execute(
            insert(DeploymentEvent),
            [
                {
                    "deployment_id": 1 + i % DEPLOYMENTS,
                    "created_at": now - timedelta(seconds=i),
                    "actor": "admin",
                    "action": "deploy",
                    "message": f"release {i} started",
                }
                for i in range(EVENTS)
            ],
        )
        await conn.execute(
            insert(AuditEvent),
            [
                {
                    "created_at": now - timedelta(seconds=i),
                    "actor_id": admin_id,
                    "actor_name": "admin",
                    "client_address": "192.0.2.1",  # not the benchmark's own address
                    "action": ("auth.login", "deployment.deploy", "server.test")[i % 3],
                    "target_type": "deployment",
                    "target_id": str(1 + i % DEPLOYMENTS),
                    "outcome": "success" if i % 7 else "failure",
                    "details": {"n": i},
                }
                for i in range(AUDIT)
            ],
        )
    await engine.dispose()


def _token(client: TestClient | httpx.Client) -> str:
    res = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    res.raise_for_status()
    csrf = {"X-CSRF-Token": res.json()["csrf_token"]}
    made = client.post("/api/auth/tokens", json={"name": "bench"}, headers=csrf)
    made.raise_for_status()
    return str(made.json()["token"])


# The app's own background tasks are named (jobs/worker.py, wiring.py, notifications/outbox.py).
BACKGROUND = ("worker-", "job-", "heartbeat-", "event-bus", "ssh-reaper", "webhook-")


def _in_request() -> bool:
    """A statement of the request being measured, not of the worker's or the event bus's polls."""
    task = asyncio.current_task()
    return task is not None and not task.get_name().startswith(BACKGROUND)


def statements_per_request(settings: Settings) -> dict[str, int]:
    """SQL statements one request of each endpoint runs, counted on the app's engine."""
    counts: dict[str, int] = {}
    with TestClient(create_app(settings, prepared=True)) as client:
        headers = {"Authorization": f"Bearer {_token(client)}"}
        engine = client.app.state.context.engine.sync_engine  # type: ignore[attr-defined]
        seen = [0]

        def count(*_: Any) -> None:
            if _in_request():
                seen[0] += 1

        event.listen(engine, "before_cursor_execute", count)
        for path in ENDPOINTS:
            assert client.get(path, headers=headers).status_code == 200, path  # warm
            seen[0] = 0
            assert client.get(path, headers=headers).status_code == 200, path
            counts[path] = seen[0]
        event.remove(engine, "before_cursor_execute", count)
    return counts


@contextmanager
def served(settings: Settings, data_dir: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DEPLOYMATE_DATA_DIR": str(data_dir),
        "DEPLOYMATE_DATABASE_URL": settings.resolved_database_url,
        "DEPLOYMATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    log = (data_dir / "serve.log").open("wb")
    argv = [sys.executable, "-m", "deploymate.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((data_dir / "serve.log").read_text())
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()


async def _load(
    url: str, path: str, rate: int, seconds: float, token: str
) -> tuple[list[float], int]:
    """An open loop: request k leaves at start + k/rate, whatever the previous ones do.

    Returns the latencies of the answered requests and the count of the failed ones."""
    latencies: list[float] = []
    failed = [0]
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one() -> None:
            started = time.perf_counter()
            try:
                res = await client.get(path, headers=headers)
                res.raise_for_status()
            except httpx.HTTPError:
                failed[0] += 1
                return
            latencies.append(time.perf_counter() - started)

        await one()  # warm the connection and the caches
        latencies.clear()
        failed[0] = 0
        tasks = []
        start = time.perf_counter()
        for k in range(int(rate * seconds)):
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return latencies, failed[0]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run_backend(name: str, url: str, seconds: float) -> list[tuple[str, str, int, str]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="dm-bench-api-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(
            data_dir=data_dir,
            database_url=url,
            admin_password=ADMIN_PASSWORD,
            login_max_failures_per_address=1000,
        )
        asyncio.run(_seed(settings))
        counts = statements_per_request(settings)
        with served(settings, data_dir) as base:
            with httpx.Client(base_url=base) as http:
                token = _token(http)
            for path in ENDPOINTS:
                for rate in RATES:
                    lat, failed = asyncio.run(_load(base, path, rate, seconds, token))
                    figures = (
                        f"p50 {_pct(lat, 0.50):6.1f}  p95 {_pct(lat, 0.95):6.1f}  "
                        f"p99 {_pct(lat, 0.99):6.1f} ms"
                        + (f"  ({failed} failed)" if failed else "")
                    )
                    rows.append((name, path, rate, f"{figures}  sql/request {counts[path]}"))
                    print(f"{name:10} {path:30} {rate:4}/s  {rows[-1][3]}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="load per endpoint and rate")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    print(
        f"{DEPLOYMENTS} deployments, {RELEASES} releases, {EVENTS} events, {AUDIT} audit rows; "
        f"{args.seconds:g} s of load per endpoint and rate"
    )
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="dm-bench-db-") as tmp:
            run_backend("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db", args.seconds)
    if args.backend in ("postgresql", "both"):
        pg = postgres.start()
        try:
            run_backend("postgresql", pg.url(pg.create_database()), args.seconds)
        finally:
            pg.stop()
    print("p99 goal: at most 50 ms at 200 requests/s; sql/request must not grow with the rows")


if __name__ == "__main__":
    main()
