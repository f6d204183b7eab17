"""Server-Sent Events framing, shared by job progress, log following and one-off commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from deploymate.core.errors import DeployMateError

HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def event(name: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, default=str)}\n\n"


def response(stream: Any) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream", headers=HEADERS)


Lines = Callable[[str], Awaitable[None]]


def command_output(
    run: Callable[[Lines], Awaitable[int | None]], keep_alive: float = 15.0
) -> StreamingResponse:
    """A command's output as `out` events, then `end` with its exit code (or the error in
    words); the command stops when the client goes away."""
    queue: asyncio.Queue[str | dict[str, Any]] = asyncio.Queue(maxsize=1000)

    async def on_line(line: str) -> None:
        await queue.put(line)

    async def produce() -> None:
        try:
            await queue.put({"exit_code": await run(on_line)})
        except DeployMateError as exc:
            await queue.put({"exit_code": None, "error": exc.detail})

    async def stream() -> AsyncIterator[str]:
        task = asyncio.create_task(produce())
        try:
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), keep_alive)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if isinstance(item, dict):
                    yield event("end", item)
                    return
                yield event("out", {"line": item})
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return response(stream())
