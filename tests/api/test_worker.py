"""The job worker runs as many jobs at once as its setting allows, and a finished job makes
room for the next at once (finding 11). Real database, handlers of the test's own."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deploymate.core import db
from deploymate.jobs.models import Job
from deploymate.jobs.worker import JobContext, Worker


def _run(scenario: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:  # its own event loop, whatever else the session runs
        return pool.submit(asyncio.run, scenario).result(timeout=120)


async def _with_jobs(url: str, count: int) -> Any:
    engine = db.make_engine(url)
    await db.upgrade(engine)
    sessions = db.session_factory(engine)
    async with sessions() as session:
        session.add_all(Job(kind="probe") for _ in range(count))
        await session.commit()
    return engine, sessions


def test_the_worker_runs_as_many_jobs_at_once_as_configured(database_url: str) -> None:
    async def scenario() -> int:
        engine, sessions = await _with_jobs(database_url, 12)
        running, peak, everyone = 0, 0, asyncio.Event()

        async def probe(ctx: JobContext) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            if running == 12:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 10)  # all twelve must be in at once
            running -= 1

        worker = Worker(sessions, None, {"probe": probe}, concurrency=12, poll_seconds=0.05)
        await worker.start()
        try:
            await asyncio.wait_for(everyone.wait(), 20)
        finally:
            await worker.stop()
            await engine.dispose()
        return peak

    assert _run(scenario()) == 12


def test_a_finished_job_starts_the_next_without_waiting_for_a_poll(database_url: str) -> None:
    async def scenario() -> float:
        engine, sessions = await _with_jobs(database_url, 2)
        finished: list[float] = []

        async def quick(ctx: JobContext) -> None:
            finished.append(time.monotonic())

        # One job at a time and a 60 s poll: only the wake-up on finish can start job 2 soon.
        worker = Worker(sessions, None, {"probe": quick}, concurrency=1, poll_seconds=60)
        started = time.monotonic()
        await worker.start()
        try:
            while len(finished) < 2 and time.monotonic() - started < 20:
                await asyncio.sleep(0.05)
        finally:
            await worker.stop()
            await engine.dispose()
        assert len(finished) == 2, finished
        return finished[1] - started

    assert _run(scenario()) < 5


def test_the_embedded_worker_takes_its_width_from_the_settings(
    tmp_path: Any, database_url: str
) -> None:
    from fastapi.testclient import TestClient

    from deploymate.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, database_url, worker_concurrency=7)
    with TestClient(create_app(settings)) as client:
        assert client.app.state.worker.concurrency == 7  # type: ignore[attr-defined]
