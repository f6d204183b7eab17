"""Domain events: written in the emitting domain's own transaction, handed to subscribers after.

A domain that needs another to react (a failed deploy, an unreachable server, a decided
upgrade request) calls `emit(db, name, payload)` beside its own change: the event row commits
or rolls back with it, so nothing is announced that did not happen and nothing that happened is
lost to a crash. Subscribers are registered in the composition root (wiring.py); the bus runs
them in the background, woken by the commit, and marks each event dispatched. Delivery is at
least once: a process that dies mid-dispatch leaves its claim to expire and the event to be
dispatched again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, String, Text, event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column

from deploymate.core.db import Base, UTCDateTime, utcnow

log = logging.getLogger("deploymate.events")

BUS_KEY = "deploymate.event_bus"
_PENDING_KEY = "deploymate.events_pending"
CLAIM = timedelta(seconds=60)
MAX_ATTEMPTS = 3


class EventRecord(Base):
    """One event as stored; `dispatched_at` is set once every subscriber has seen it."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    payload: dict[str, Any]


Subscriber = Callable[[Event], Awaitable[None]]


def emit(db: AsyncSession, name: str, payload: dict[str, Any]) -> None:
    """Record an event in the caller's transaction; subscribers see it after the commit."""
    db.add(EventRecord(name=name, payload=payload))
    db.info[_PENDING_KEY] = True


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop(_PENDING_KEY, False):
        bus = session.info.get(BUS_KEY)
        if isinstance(bus, EventBus):
            bus.wake()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


class EventBus:
    """Subscribers by event name, and the loop that dispatches committed events to them."""

    def __init__(self, *, batch: int = 50, poll_seconds: float = 5.0) -> None:
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.bus_id = f"bus-{uuid.uuid4().hex[:12]}"
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def subscribe(self, name: str, subscriber: Subscriber) -> None:
        self._subscribers.setdefault(name, []).append(subscriber)

    @property
    def session_info(self) -> dict[str, Any]:
        """Put into every session (db.session_factory's `info`): a commit wakes this bus."""
        return {BUS_KEY: self}

    def wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def run(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Dispatch until cancelled: at every wake-up, and every `poll_seconds` regardless."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                while await self.dispatch(sessions) == self.batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event dispatch failed; retrying")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                pass

    async def dispatch(self, sessions: async_sessionmaker[AsyncSession]) -> int:
        """Claim a batch of undispatched events, run their subscribers, mark them; returns
        how many were claimed."""
        now = utcnow()
        async with sessions() as db:
            free = (EventRecord.claimed_until.is_(None)) | (EventRecord.claimed_until < now)
            stmt = (
                select(EventRecord.id)
                .where(EventRecord.dispatched_at.is_(None), free)
                .order_by(EventRecord.id)
                .limit(self.batch)
            )
            if db.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            ids = list((await db.execute(stmt)).scalars())
            if not ids:
                await db.commit()
                return 0
            await db.execute(
                update(EventRecord)
                .where(EventRecord.id.in_(ids), free)
                .values(claimed_by=self.bus_id, claimed_until=now + CLAIM)
            )
            await db.commit()
            rows = (
                await db.execute(
                    select(EventRecord)
                    .where(EventRecord.id.in_(ids), EventRecord.claimed_by == self.bus_id)
                    .order_by(EventRecord.id)
                )
            ).scalars()
            claimed = [Event(r.id, r.name, dict(r.payload or {})) for r in rows]
        for item in claimed:
            error = await self._deliver(item)
            await self._settle(sessions, item, error)
        return len(ids)

    async def _deliver(self, item: Event) -> str | None:
        failures = []
        for subscriber in self._subscribers.get(item.name, []):
            try:
                await subscriber(item)
            except Exception as exc:
                log.exception("subscriber %s failed on event %s", subscriber, item.id)
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
        return "; ".join(failures) or None

    async def _settle(
        self, sessions: async_sessionmaker[AsyncSession], item: Event, error: str | None
    ) -> None:
        async with sessions() as db:
            row = await db.get(EventRecord, item.id)
            if row is None:
                return
            row.attempts += 1
            row.error = error
            if error is None or row.attempts >= MAX_ATTEMPTS:
                row.dispatched_at = utcnow()
            else:  # a failing subscriber gets the event again after a pause
                row.claimed_until = utcnow() + timedelta(seconds=2 * row.attempts)
            await db.commit()
