"""Jobs: enqueue, claim with a lease, log events, finish; and the deploy lock leases.

Every time comparison uses the database's clock, so several processes agree on expiry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.core.errors import Conflict, NotFound
from deploymate.core.ids import parse_id
from deploymate.jobs.models import DeployLock, Job, JobEvent

ACTIVE = ("queued", "running")
LOCK_TTL = timedelta(seconds=45)
EXTRA_LOCKS = "also_locked"  # a job's payload key: deployments locked besides its own
JOB_LEASE = timedelta(seconds=30)


async def db_now(db: AsyncSession) -> datetime:
    """The database server's current UTC time."""
    if db.get_bind().dialect.name == "sqlite":
        raw = (await db.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))).scalar_one()
        return datetime.fromisoformat(str(raw)).replace(tzinfo=UTC)
    value = (await db.execute(text("SELECT now()"))).scalar_one()
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def lock_holder(job_id: int) -> str:
    return f"job:{job_id}"


async def busy(db: AsyncSession, deployment_id: int, name: str, holder: str | None) -> Conflict:
    """The 409 for a deployment whose lock is held: which job holds it and who started it."""
    job_id = parse_id(holder.removeprefix("job:")) if holder else None
    job = await db.get(Job, job_id) if job_id is not None else None
    if job is None:
        what = f"its lock is held by {holder or 'another job'}"
    else:
        who = f"started by {job.created_by}" if job.created_by else "started by DeployMate"
        since = job.started_at or job.created_at
        what = f"job #{job.id} ({job.kind}, {who} at {since:%H:%M:%S} UTC) is {job.status}"
    return Conflict(
        f"{name} is busy: {what}. Try again when it ends; if it is stuck, an admin can "
        "release the deployment's lock.",
        code="deployment_locked",
    )


async def acquire_lock(db: AsyncSession, deployment_id: int, holder: str) -> bool:
    """Take the lock, or take over one whose lease expired; False when someone holds it."""
    now = await db_now(db)
    try:
        async with db.begin_nested():
            db.add(
                DeployLock(
                    deployment_id=deployment_id,
                    holder=holder,
                    acquired_at=now,
                    expires_at=now + LOCK_TTL,
                )
            )
        return True
    except IntegrityError:
        pass
    result = await db.execute(
        update(DeployLock)
        .where(
            DeployLock.deployment_id == deployment_id,
            (DeployLock.expires_at < now) | (DeployLock.holder == holder),
        )
        .values(holder=holder, acquired_at=now, expires_at=now + LOCK_TTL)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def lock_of(db: AsyncSession, deployment_id: int) -> DeployLock | None:
    return await db.get(DeployLock, deployment_id)


async def renew_lock(db: AsyncSession, deployment_id: int, holder: str) -> bool:
    now = await db_now(db)
    result = await db.execute(
        update(DeployLock)
        .where(DeployLock.deployment_id == deployment_id, DeployLock.holder == holder)
        .values(expires_at=now + LOCK_TTL)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_lock(db: AsyncSession, deployment_id: int, holder: str | None = None) -> bool:
    stmt = delete(DeployLock).where(DeployLock.deployment_id == deployment_id)
    if holder is not None:
        stmt = stmt.where(DeployLock.holder == holder)
    return bool((await db.execute(stmt)).rowcount)  # type: ignore[attr-defined]


async def enqueue(
    db: AsyncSession,
    *,
    kind: str,
    deployment_id: int | None,
    release_id: int | None,
    created_by: str | None,
    payload: dict[str, object] | None = None,
    lock: bool = True,
    deployment_name: str | None = None,
    also_lock: dict[int, str] | None = None,
) -> Job:
    """Add a job in the caller's transaction; with `lock`, the deployment's lock is taken first,
    and the locks of `also_lock` (id -> name) with it: a job that moves several deployments at
    once (an app environment) holds all of their locks, renewed and released together."""
    extra = dict(also_lock or {})
    job = Job(
        kind=kind,
        deployment_id=deployment_id,
        release_id=release_id,
        created_by=created_by,
        payload={**(payload or {}), **({EXTRA_LOCKS: sorted(extra)} if extra else {})},
    )
    db.add(job)
    await db.flush()
    wanted = {} if deployment_id is None or not lock else {deployment_id: deployment_name}
    wanted.update(extra if lock else {})
    for dep_id, dep_name in wanted.items():
        if not await acquire_lock(db, dep_id, lock_holder(job.id)):
            current = await lock_of(db, dep_id)
            name = f"deployment {dep_id}" if dep_name is None else dep_name
            raise await busy(db, dep_id, name, current.holder if current else None)
    db.add(JobEvent(job_id=job.id, message=f"queued: {kind}"))
    return job


async def claim_next(db: AsyncSession, worker_id: str) -> Job | None:
    """Claim the oldest queued job (SKIP LOCKED on PostgreSQL, so workers never collide)."""
    stmt = select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(5)
    if db.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list((await db.execute(stmt)).scalars())
    now = await db_now(db)
    for job_id in ids:
        result = await db.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(
                status="running",
                worker_id=worker_id,
                started_at=now,
                lease_expires_at=now + JOB_LEASE,
            )
        )
        if result.rowcount:  # type: ignore[attr-defined]
            await db.commit()
            return await db.get(Job, job_id)
    await db.commit()
    return None


def locks_of(job: Job) -> list[int]:
    """The deployments whose locks a job holds."""
    held = [] if job.deployment_id is None else [job.deployment_id]
    return held + [int(i) for i in (job.payload or {}).get(EXTRA_LOCKS, [])]


async def heartbeat(db: AsyncSession, job: Job) -> None:
    now = await db_now(db)
    await db.execute(update(Job).where(Job.id == job.id).values(lease_expires_at=now + JOB_LEASE))
    for dep_id in locks_of(job):
        await renew_lock(db, dep_id, lock_holder(job.id))
    await db.commit()


async def log(db: AsyncSession, job_id: int, message: str, level: str = "info") -> None:
    db.add(JobEvent(job_id=job_id, message=message, level=level))
    await db.commit()


async def finish(db: AsyncSession, job_id: int, status: str, error: str | None = None) -> None:
    job = await db.get(Job, job_id)
    if job is None:
        return
    job.status = status
    job.error = error
    job.finished_at = await db_now(db)
    db.add(
        JobEvent(
            job_id=job_id,
            message=f"job {status}" + (f": {error}" if error else ""),
            level="info" if status == "succeeded" else "error",
        )
    )
    for dep_id in locks_of(job):
        await release_lock(db, dep_id, lock_holder(job.id))
    await db.commit()


async def get(db: AsyncSession, job_id: int) -> Job:
    job = await db.get(Job, job_id)
    if job is None:
        raise NotFound(f"no such job: {job_id}")
    return job


async def events(db: AsyncSession, job_id: int, after_id: int = 0) -> list[JobEvent]:
    rows = await db.execute(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > after_id)
        .order_by(JobEvent.id)
    )
    return list(rows.scalars())


async def orphans(db: AsyncSession, *, all_running: bool) -> list[Job]:
    """Running jobs whose worker is gone: lease expired (or every one, for a single process)."""
    stmt = select(Job).where(Job.status == "running")
    if not all_running:
        stmt = stmt.where(Job.lease_expires_at < await db_now(db))
    return list((await db.execute(stmt)).scalars())


async def active_for(db: AsyncSession, deployment_id: int) -> Job | None:
    rows = await db.execute(
        select(Job)
        .where(Job.deployment_id == deployment_id, Job.status.in_(ACTIVE))
        .order_by(Job.id)
        .limit(1)
    )
    return rows.scalar_one_or_none()
