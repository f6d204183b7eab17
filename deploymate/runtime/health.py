"""Health checks from the target's side: a TCP stream to the container's own address.

Over SSH this is a direct-tcpip channel, so no port is exposed and the image needs no curl.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from deploymate.runtime.executor import Executor


@dataclass(frozen=True)
class HealthCheck:
    type: Literal["http", "tcp", "running"] = "http"  # running: a worker that listens nowhere
    path: str = "/"
    expected_status: int = 200
    interval: float = 1.0
    timeout: float = 2.0
    retries: int = 30
    start_period: float = 0.0


# A client error (404 Not Found, 401, 403, 405, ...) does not change while the app warms up:
# repeated this many times in a row it ends the wait. 408 and 429 are about timing, not the path.
SAME_ANSWER_STOPS = 3
TRANSIENT_4XX = (408, 425, 429)

Kind = Literal["ok", "refused", "timeout", "status", "garbage"]


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str
    kind: Kind = "ok"
    status: int | None = None


async def probe(executor: Executor, host: str, port: int, check: HealthCheck) -> Probe:
    """One attempt: connect (TCP), or send GET path and compare the status (HTTP)."""
    try:
        async with asyncio.timeout(check.timeout):
            reader, writer = await executor.open_connection(host, port)
            try:
                if check.type == "tcp":
                    return Probe(True, f"TCP {port} accepts connections")
                request = (
                    f"GET {check.path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
                    "User-Agent: deploymate-health\r\nConnection: close\r\n\r\n"
                )
                writer.write(request.encode("ascii"))
                line = bytes(await reader.readline()).decode("latin-1").strip()
            finally:
                writer.close()
    except TimeoutError:
        return Probe(False, f"no answer within {check.timeout:g}s", "timeout")
    except (OSError, EOFError):
        return Probe(False, f"nothing accepts connections on port {port}", "refused")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return Probe(False, f"not an HTTP answer on port {port}: {line[:80]!r}", "garbage")
    status = int(parts[1])
    if status != check.expected_status:
        detail = f"HTTP {status} on {check.path}, expected {check.expected_status}"
        return Probe(False, detail, "status", status)
    return Probe(True, f"HTTP {status} on {check.path}", "ok", status)


def _deterministic(probe: Probe) -> bool:
    return (
        probe.kind == "status"
        and probe.status is not None
        and 400 <= probe.status < 500
        and probe.status not in TRANSIENT_4XX
    )


def verdict(last: Probe, check: HealthCheck, port: int, attempts: int) -> str:
    """Why the release is not healthy, and what to change, in the operator's words."""
    if last.kind == "refused":
        return (
            f"the container answered on no port; is the app listening on port {port} inside "
            f"the container? Set the internal port to the one it listens on ({attempts} "
            "attempts)"
        )
    if _deterministic(last):
        return (
            f"HTTP {last.status} on {check.path} {attempts} times in a row (expected "
            f"{check.expected_status}); does the app serve {check.path}? Change the health "
            "check's path or expected status in the deployment's settings"
        )
    if last.kind == "timeout":
        return (
            f"no answer within {check.timeout:g}s, {attempts} times; if the app is slow to "
            "start, raise the health check's start period, retries or timeout"
        )
    return (
        f"unhealthy after {attempts} attempts: {last.detail}; check the app's last log lines in "
        "the job's log and the health check in the deployment's settings"
    )


async def wait_healthy(
    executor: Executor,
    host: str,
    port: int,
    check: HealthCheck,
    on_attempt: Callable[[int, Probe], Awaitable[None]] | None = None,
    exited: Callable[[], Awaitable[str | None]] | None = None,
) -> Probe:
    """Probe until healthy or out of retries. Stops early when the container has exited
    (`exited` says how) or the app gives the same client error SAME_ANSWER_STOPS times."""
    if check.start_period > 0:
        await asyncio.sleep(check.start_period)
    last = Probe(False, "not checked", "garbage")
    same = 0
    for attempt in range(1, check.retries + 1):
        started = time.monotonic()
        current = await probe(executor, host, port, check)
        same = same + 1 if _deterministic(current) and current == last else 1
        last = current
        if on_attempt is not None:
            await on_attempt(attempt, last)
        if last.ok:
            return last
        if exited is not None and (how := await exited()) is not None:
            detail = (
                f"the container {how} before it was healthy; see its last lines in the job's log"
            )
            return Probe(False, detail, "garbage")
        if same >= SAME_ANSWER_STOPS:
            return Probe(False, verdict(last, check, port, same), last.kind, last.status)
        await asyncio.sleep(max(0.0, check.interval - (time.monotonic() - started)))
    return Probe(False, verdict(last, check, port, check.retries), last.kind, last.status)
