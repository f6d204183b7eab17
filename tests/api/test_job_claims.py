"""Several workers on PostgreSQL: SKIP LOCKED claims hand every queued job to exactly one."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from deploymate.core import db
from deploymate.jobs import service as jobs
from deploymate.jobs.models import Job
from tests.support.postgres import PostgresServer


def test_concurrent_claimers_never_share_a_job(pg_server: PostgresServer) -> None:
    name = pg_server.create_database()
    url = pg_server.url(name)

    async def scenario() -> list[list[int]]:
        engine = db.make_engine(url)
        await db.upgrade(engine)
        sessions = db.session_factory(engine)
        async with sessions() as session:
            for _ in range(30):
                session.add(Job(kind="noop"))
            await session.commit()

        async def claimer(worker: str) -> list[int]:
            mine = []
            while True:
                async with sessions() as session:
                    job = await jobs.claim_next(session, worker)
                if job is None:
                    return mine
                mine.append(job.id)

        claimed = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
        await engine.dispose()
        return list(claimed)

    with ThreadPoolExecutor(1) as pool:  # its own event loop, whatever else the session runs
        claimed = pool.submit(asyncio.run, scenario()).result(timeout=120)
    everything = [job_id for batch in claimed for job_id in batch]
    assert sorted(everything) == list(range(1, 31))  # each job once, none lost
    pg_server.drop_database(name)
