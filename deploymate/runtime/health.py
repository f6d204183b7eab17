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
    type: Literal["http", "tcp"] = "http"
    path: str = "/"
    expected_status: int = 200
    interval: float = 1.0
    timeout: float = 2.0
    retries: int = 30
    start_period: float = 0.0


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str


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
        return Probe(False, f"no answer within {check.timeout:g}s")
    except (OSError, EOFError) as exc:
        return Probe(False, f"connection failed: {exc}")
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return Probe(False, f"not an HTTP answer: {line[:80]!r}")
    status = int(parts[1])
    if status != check.expected_status:
        return Probe(False, f"HTTP {status} on {check.path}, expected {check.expected_status}")
    return Probe(True, f"HTTP {status} on {check.path}")


async def wait_healthy(
    executor: Executor,
    host: str,
    port: int,
    check: HealthCheck,
    on_attempt: Callable[[int, Probe], Awaitable[None]] | None = None,
    still_running: Callable[[], Awaitable[bool]] | None = None,
) -> Probe:
    """Probe until healthy or out of retries; stops early when the container has exited."""
    if check.start_period > 0:
        await asyncio.sleep(check.start_period)
    last = Probe(False, "not checked")
    for attempt in range(1, check.retries + 1):
        started = time.monotonic()
        last = await probe(executor, host, port, check)
        if on_attempt is not None:
            await on_attempt(attempt, last)
        if last.ok:
            return last
        if still_running is not None and not await still_running():
            return Probe(False, f"container exited ({last.detail})")
        await asyncio.sleep(max(0.0, check.interval - (time.monotonic() - started)))
    return Probe(False, f"unhealthy after {check.retries} attempts: {last.detail}")
