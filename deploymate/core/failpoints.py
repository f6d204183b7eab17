"""Failpoints: named moments of a release where a fault-injection test holds the process, to
kill it there, stop the target's sshd, restart its dockerd or kill its proxy at a known step.

Armed only by `DEPLOYMATE_FAILPOINTS` (refused in production): `release.switch` holds until the
process dies; `release.health=3` holds 3 seconds and goes on. An unarmed failpoint costs one
dictionary lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# The steps of a release, in order, as the fault table of docs/recovery.md names them.
RELEASE_STEPS = (
    "release.image",
    "release.start",
    "release.health",
    "release.env_guard",
    "release.switch",
    "release.smoke",
    "release.drain",
    "release.cleanup",
)
_armed: dict[str, float | None] = {}


def parse(spec: str) -> dict[str, float | None]:
    """`name[=seconds],...` -> {name: seconds or None (hold for good)}."""
    armed: dict[str, float | None] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, seconds = part.partition("=")
        if name not in RELEASE_STEPS:
            raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(RELEASE_STEPS)}")
        armed[name] = float(seconds) if seconds else None
    return armed


def arm(spec: str) -> None:
    _armed.clear()
    _armed.update(parse(spec))


async def reach(name: str, log: Callable[[str], Awaitable[None]] | None = None) -> None:
    """Hold here if this failpoint is armed (saying so in the job's log first)."""
    if name not in _armed:
        return
    hold = _armed[name]
    if log is not None:
        await log(
            f"failpoint {name}: holding "
            + (f"{hold:g}s" if hold is not None else "until the process is stopped")
        )
    if hold is None:
        await asyncio.Event().wait()
    else:
        await asyncio.sleep(hold)
