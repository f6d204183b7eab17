"""Smoke checks after a switch: HTTP requests through the proxy, or commands in the container.

The HTTP checks go to the proxy's unpublished check listener with the deployment's host name,
so they take the very route users take (the same Caddy routes), whatever the TLS mode.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from deploymate.runtime import docker
from deploymate.runtime.errors import RuntimeFailure
from deploymate.runtime.executor import Executor

MAX_BODY = 65_536


@dataclass(frozen=True)
class SmokeResult:
    check: str
    ok: bool
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(check: dict[str, Any]) -> str:
    if check.get("http"):
        return f"{check.get('method', 'GET')} {check['http']}"
    return "command " + " ".join(check.get("command") or [])[:120]


async def _http(
    executor: Executor, address: str, port: int, host: str, check: dict[str, Any]
) -> str:
    """'' when the check passes, else why not."""
    method, path = check.get("method", "GET"), check["http"]
    reader, writer = await executor.open_connection(address, port)
    try:
        writer.write(
            f"{method} {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: deploymate-smoke\r\n"
            "Connection: close\r\n\r\n".encode("ascii")
        )
        raw = bytearray()
        while len(raw) < MAX_BODY and (chunk := await reader.read(8192)):
            raw += chunk
    finally:
        writer.close()
    head, _, body = bytes(raw).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return f"not an HTTP answer: {status_line[:80]!r}"
    expected = int(check.get("expect", 200))
    if int(parts[1]) != expected:
        return f"HTTP {parts[1]}, expected {expected}"
    wanted = check.get("contains")
    if wanted and wanted not in body.decode("utf-8", errors="replace"):
        return f"HTTP {parts[1]} but the answer does not contain {wanted!r}"
    return ""


async def _command(executor: Executor, container: str, check: dict[str, Any]) -> str:
    timeout = float(check.get("timeout", 10))
    result = await executor.run(docker.exec_in(container, check["command"], timeout))
    if result.ok:
        return ""
    last = (result.stdout.strip().splitlines() or ["no output"])[-1]
    return f"exited with status {result.exit_status}: {last[:200]}"


async def run_one(
    executor: Executor,
    check: dict[str, Any],
    *,
    proxy_address: str | None,
    port: int,
    host: str | None,
    container: str,
) -> SmokeResult:
    name = describe(check)
    timeout = float(check.get("timeout", 10))
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            if check.get("http"):
                if proxy_address is None or host is None:
                    problem = "no proxy route to check through (the deployment has no domain)"
                else:
                    problem = await _http(executor, proxy_address, port, host, check)
            else:
                problem = await _command(executor, container, check)
    except TimeoutError:
        problem = f"no answer within {timeout:g}s"
    except (OSError, EOFError):
        problem = "the proxy did not accept the connection"
    except RuntimeFailure as exc:
        problem = exc.detail
    took = time.monotonic() - started
    return SmokeResult(name, not problem, problem or "passed", round(took, 3))


async def run_all(
    executor: Executor,
    checks: Sequence[dict[str, Any]],
    *,
    proxy_address: str | None,
    port: int,
    host: str | None,
    container: str,
) -> list[SmokeResult]:
    """Every check in order; all run, so a report names each failure."""
    return [
        await run_one(
            executor, c, proxy_address=proxy_address, port=port, host=host, container=container
        )
        for c in checks
    ]
