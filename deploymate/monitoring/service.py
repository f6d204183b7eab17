"""Continuous monitoring's record and rules: a check's state now against the one stored, and
what a change announces (a line in the monitoring log and an event for notifications and
webhooks), once per change.

Like the audit log, the record sits below the domains it is about and imports none of them, so
their pages can show it; the rounds that look at servers and deployments are ops/monitor.py.
The decision is pure (`change`): the first observation of a healthy state is stored silently,
the first of a problem is announced, and after that only a different state is a change. Writing
it is a compare-and-set on the stored state, so two processes watching the same subject never
announce one change twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.core import events
from deploymate.core.db import utcnow
from deploymate.monitoring.models import MonitorChange, MonitorState

OK = "ok"
SERVER = "server"
DEPLOYMENT = "deployment"
ACTOR = "monitor"

# The checks of each kind, in the order a page lists them.
SERVER_CHECKS = ("reachability", "docker", "disk", "proxy")
DEPLOYMENT_CHECKS = ("container",)

# (kind, check, state) -> the event a change into that state announces.
PROBLEM_EVENTS: dict[tuple[str, str, str], str] = {
    (SERVER, "reachability", "unreachable"): "server.unreachable",
    (SERVER, "docker", "down"): "server.docker_down",
    (SERVER, "disk", "full"): "server.disk_full",
    (SERVER, "proxy", "down"): "server.proxy_down",
    (DEPLOYMENT, "container", "exited"): "deployment.exited",
    (DEPLOYMENT, "container", "restarting"): "deployment.restarting",
    (DEPLOYMENT, "container", "unhealthy"): "deployment.unhealthy",
}
RECOVERED = {SERVER: "server.recovered", DEPLOYMENT: "deployment.recovered"}
EVENT_NAMES = (*dict.fromkeys(PROBLEM_EVENTS.values()), *RECOVERED.values())

# How a problem reads in a sentence ("unreachable since 08:41 UTC").
WORDS = {
    ("reachability", "unreachable"): "unreachable",
    ("docker", "down"): "Docker not answering",
    ("disk", "full"): "disk almost full",
    ("proxy", "down"): "proxy not running",
    ("container", "exited"): "not running",
    ("container", "restarting"): "restarting in a loop",
    ("container", "unhealthy"): "unhealthy",
}


@dataclass(frozen=True)
class Seen:
    """One check's result now; `facts` are kept for the next check to compare with."""

    check: str
    state: str
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state == OK


@dataclass(frozen=True)
class Known:
    """One check's stored state."""

    state: str
    since: datetime
    detail: str = ""
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    kind: str
    check: str
    previous: str | None  # None: the first observation (a problem)
    state: str
    detail: str
    was_since: datetime | None = None  # since when the previous state held

    @property
    def ok(self) -> bool:
        return self.state == OK

    @property
    def event(self) -> str:
        if self.state == OK:
            return RECOVERED[self.kind]
        return PROBLEM_EVENTS.get((self.kind, self.check, self.state), f"{self.kind}.{self.state}")


@dataclass(frozen=True)
class Subject:
    """What a change is about, as people name it."""

    kind: str
    id: int
    name: str  # "web-1", or "api on web-1"
    owner_id: int | None = None

    @property
    def link(self) -> str:
        return "/app/server-review" if self.kind == SERVER else f"/deployments/{self.id}"


def change(kind: str, known: Known | None, seen: Seen) -> Change | None:
    """The change `seen` makes to what is known, or None (the same state, or a first healthy
    look). A different detail in the same state (disk 91% then 93%) is not a change."""
    if known is None:
        if seen.ok:
            return None
        return Change(kind, seen.check, None, seen.state, seen.detail)
    if known.state == seen.state:
        return None
    return Change(kind, seen.check, known.state, seen.state, seen.detail, known.since)


def words(check: str, state: str) -> str:
    return "ok" if state == OK else WORDS.get((check, state), state)


def duration(seconds: float) -> str:
    """12 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def stamp(at: datetime, now: datetime) -> str:
    """`08:41 UTC`; with the date when it was not today."""
    return at.strftime("%H:%M UTC" if at.date() == now.date() else "%Y-%m-%d %H:%M UTC")


def since_text(since: datetime, now: datetime) -> str:
    """`08:41 UTC (12 min)`."""
    return f"{stamp(since, now)} ({duration((now - since).total_seconds())})"


def message(subject: Subject, item: Change, now: datetime) -> str:
    """The sentence of a notification, a webhook and an activity entry."""
    who = f"Server {subject.name}" if subject.kind == SERVER else subject.name
    if item.state != OK:
        what = words(item.check, item.state)
        return f"{who}: {what}: {item.detail}" if item.detail else f"{who}: {what}"
    was = f" (was {words(item.check, item.previous or '')}"
    if item.was_since is not None:
        lasted = duration((now - item.was_since).total_seconds())
        was += f" since {stamp(item.was_since, now)}, for {lasted}"
    was += ")"
    back = {
        "reachability": "reachable again",
        "docker": "Docker answers again",
        "disk": "disk below the limit again",
        "proxy": "proxy running again",
        "container": "healthy again",
    }.get(item.check, "ok again")
    text = f"{who}: {back}{was}"
    return f"{text}: {item.detail}" if item.detail else text


# --- recording ----------------------------------------------------------------------------------


async def known_of(db: AsyncSession, kind: str, subject_id: int) -> dict[str, MonitorState]:
    rows = await db.execute(
        select(MonitorState).where(
            MonitorState.subject_kind == kind, MonitorState.subject_id == subject_id
        )
    )
    return {row.check_name: row for row in rows.scalars()}


def _known(row: MonitorState | None) -> Known | None:
    if row is None:
        return None
    return Known(row.state, row.since, row.detail, dict(row.facts or {}))


async def known_all(db: AsyncSession, kind: str) -> dict[int, dict[str, Known]]:
    """Every stored state of a kind, by subject and check (what the next checks compare with),
    in one query."""
    out: dict[int, dict[str, Known]] = {}
    rows = await db.execute(select(MonitorState).where(MonitorState.subject_kind == kind))
    for row in rows.scalars():
        known = _known(row)
        assert known is not None
        out.setdefault(row.subject_id, {})[row.check_name] = known
    return out


async def record(
    db: AsyncSession,
    subject: Subject,
    seen: Sequence[Seen],
    *,
    now: datetime | None = None,
    announced: Collection[str] = (),
) -> list[Change]:
    """Store what was seen and announce each change, in the caller's transaction (the caller
    commits). A state another process changed in between is left to it: no double alarm.
    `announced`: checks whose new problem was already announced by someone else (a person's
    server test): logged, not announced again."""
    now = now or utcnow()
    rows = await known_of(db, subject.kind, subject.id)
    changes: list[Change] = []
    for item in seen:
        row = rows.get(item.check)
        found = change(subject.kind, _known(row), item)
        if row is None:
            try:
                async with db.begin_nested():
                    db.add(
                        MonitorState(
                            subject_kind=subject.kind,
                            subject_id=subject.id,
                            check_name=item.check,
                            state=item.state,
                            since=now,
                            last_checked_at=now,
                            detail=item.detail,
                            facts=dict(item.facts),
                        )
                    )
            except IntegrityError:
                continue  # another monitor stored it first; it announces
        elif found is None:
            row.last_checked_at, row.detail, row.facts = now, item.detail, dict(item.facts)
            continue
        else:
            swapped = await db.execute(
                update(MonitorState)
                .where(MonitorState.id == row.id, MonitorState.state == row.state)
                .values(
                    state=item.state,
                    since=now,
                    last_checked_at=now,
                    detail=item.detail,
                    facts=dict(item.facts),
                )
                .execution_options(synchronize_session=False)
            )
            if not swapped.rowcount:  # type: ignore[attr-defined]
                continue
        if found is not None:
            announce(db, subject, found, now, emit=found.ok or found.check not in announced)
            changes.append(found)
    return changes


def announce(
    db: AsyncSession, subject: Subject, item: Change, now: datetime, *, emit: bool = True
) -> None:
    """The change in the monitoring log, and as an event for notifications and webhooks."""
    text = message(subject, item, now)
    db.add(
        MonitorChange(
            at=now,
            subject_kind=subject.kind,
            subject_id=subject.id,
            subject_name=subject.name[:64],
            check_name=item.check,
            previous=item.previous,
            state=item.state,
            event=item.event,
            detail=item.detail,
        )
    )
    if not emit:
        return
    events.emit(
        db,
        item.event,
        {
            "text": text,
            "link": subject.link,
            "user_ids": [subject.owner_id] if subject.owner_id else [],
            f"{subject.kind}_id": subject.id,
            "check": item.check,
            "state": item.state,
        },
    )


async def drop(db: AsyncSession, kind: str, subject_id: int, checks: Iterable[str]) -> None:
    """Forget some checks of one subject (the proxy of a server that no longer needs one)."""
    await db.execute(
        delete(MonitorState).where(
            MonitorState.subject_kind == kind,
            MonitorState.subject_id == subject_id,
            MonitorState.check_name.in_(list(checks)),
        )
    )


async def forget(db: AsyncSession, kind: str, keep: Iterable[int]) -> None:
    """Drop the states of subjects no longer watched (a stopped or deleted deployment, a
    deleted server): when one is watched again, its first healthy look is silent again."""
    stmt = delete(MonitorState).where(MonitorState.subject_kind == kind)
    kept = list(keep)
    if kept:
        stmt = stmt.where(MonitorState.subject_id.not_in(kept))
    await db.execute(stmt)


# --- reading, for the pages and the ops overview ------------------------------------------------


@dataclass
class CheckView:
    check: str
    state: str
    words: str
    detail: str
    since: datetime
    since_text: str
    last_checked_at: datetime

    @property
    def ok(self) -> bool:
        return self.state == OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "state": self.state,
            "detail": self.detail,
            "since": self.since,
            "last_checked_at": self.last_checked_at,
        }


@dataclass
class SubjectView:
    """A subject's checks as a page shows them: the worst first, since when, the summary."""

    kind: str
    id: int
    checks: list[CheckView]

    @property
    def problems(self) -> list[CheckView]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def headline(self) -> CheckView:
        """The check that says the most: the oldest problem, else the longest-held ok."""
        if self.problems:
            return min(self.problems, key=lambda c: c.since)
        return min(self.checks, key=lambda c: c.since)

    @property
    def summary(self) -> str:
        """`unreachable since 08:41 UTC (12 min)`, or `ok since ...`."""
        head = self.headline
        return f"{head.words} since {head.since_text}"

    @property
    def last_checked_at(self) -> datetime:
        return max(c.last_checked_at for c in self.checks)


def view(kind: str, subject_id: int, rows: Sequence[Any], now: datetime) -> SubjectView:
    """`rows`: MonitorState rows, or result rows with the same column names."""
    order = SERVER_CHECKS if kind == SERVER else DEPLOYMENT_CHECKS
    rows = sorted(rows, key=lambda r: order.index(r.check_name) if r.check_name in order else 99)
    return SubjectView(
        kind,
        subject_id,
        [
            CheckView(
                check=r.check_name,
                state=r.state,
                words=words(r.check_name, r.state),
                detail=r.detail,
                since=r.since,
                since_text=since_text(r.since, now),
                last_checked_at=r.last_checked_at,
            )
            for r in rows
        ],
    )


async def views(
    db: AsyncSession, kind: str, subject_ids: Iterable[int] | None = None
) -> dict[int, SubjectView]:
    """The monitoring state of these subjects (all of the kind when None), in one query."""
    stmt = select(MonitorState).where(MonitorState.subject_kind == kind)
    if subject_ids is not None:
        ids = list(subject_ids)
        if not ids:
            return {}
        stmt = stmt.where(MonitorState.subject_id.in_(ids))
    by_subject: dict[int, list[MonitorState]] = {}
    for row in (await db.execute(stmt)).scalars():
        by_subject.setdefault(row.subject_id, []).append(row)
    now = utcnow()
    return {i: view(kind, i, rows, now) for i, rows in by_subject.items()}


async def view_of(db: AsyncSession, kind: str, subject_id: int) -> SubjectView | None:
    return (await views(db, kind, [subject_id])).get(subject_id)


async def recent_changes(
    db: AsyncSession, *, limit: int = 15, kind: str | None = None, subject_id: int | None = None
) -> list[MonitorChange]:
    stmt = select(MonitorChange)
    if kind is not None:
        stmt = stmt.where(MonitorChange.subject_kind == kind)
    if subject_id is not None:
        stmt = stmt.where(MonitorChange.subject_id == subject_id)
    stmt = stmt.order_by(MonitorChange.id.desc()).limit(limit)
    return list((await db.execute(stmt)).scalars())
