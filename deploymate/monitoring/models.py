"""What continuous monitoring knows: the current state of each check, and every change.

A subject is a server or a deployment, named by kind and id (no foreign key: a state outlives
nothing, the monitor drops the states of subjects it no longer watches).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from deploymate.core.db import Base, UTCDateTime, utcnow


class MonitorState(Base):
    """One check of one subject as last seen: its state and since when it holds."""

    __tablename__ = "monitor_states"
    __table_args__ = (UniqueConstraint("subject_kind", "subject_id", "check_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))  # server | deployment
    subject_id: Mapped[int]
    check_name: Mapped[str] = mapped_column(String(32))  # reachability | docker | disk | ...
    state: Mapped[str] = mapped_column(String(16))  # ok | unreachable | exited | ...
    since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")
    # What the next check compares with (a container's name and restart count).
    facts: Mapped[dict[str, Any]] = mapped_column(default=dict)


class MonitorChange(Base):
    """A change of state, as announced: the monitoring log of servers and deployments."""

    __tablename__ = "monitor_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(index=True)
    subject_name: Mapped[str] = mapped_column(String(64))
    check_name: Mapped[str] = mapped_column(String(32))
    previous: Mapped[str | None] = mapped_column(String(16), default=None)
    state: Mapped[str] = mapped_column(String(16))
    event: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text, default="")
