"""One interface for running commands on a target: locally (subprocess) or over SSH."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from deploymate.runtime.errors import CommandFailed, CommandTimeout

LineHandler = Callable[[str], Awaitable[None]]
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Command:
    """A command as data: an argument list, never a string with user input pasted in."""

    argv: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT
    stdin: bytes | None = None
    check: bool = True
    merge_stderr: bool = False  # stream stderr lines to the line handler too (docker logs)

    def __post_init__(self) -> None:
        if not self.argv or any(not isinstance(a, str) or "\x00" in a for a in self.argv):
            raise ValueError("a command is a non-empty list of strings without NUL bytes")

    @classmethod
    def of(
        cls,
        *argv: str,
        timeout: float = DEFAULT_TIMEOUT,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> Command:
        return cls(tuple(argv), timeout=timeout, stdin=stdin, check=check)

    def shell_line(self) -> str:
        """The command quoted for a POSIX shell (what SSH hands to the remote shell)."""
        return shlex.join(self.argv)

    def display(self) -> str:
        return self.shell_line()


@dataclass
class Result:
    command: Command
    exit_status: int
    stdout: str
    stderr: str
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


ByteSource = AsyncIterator[bytes]


class Executor(Protocol):
    """Runs commands on one target; implementations differ only in transport."""

    async def run(
        self, command: Command, on_line: LineHandler | None = None, source: ByteSource | None = None
    ) -> Result:
        """Run to completion; stdin is `command.stdin` or else streamed from `source`."""
        ...

    async def open_connection(self, host: str, port: int) -> tuple[Any, Any]:
        """A TCP stream to host:port as seen from the target (e.g. a container's address)."""
        ...

    async def open_unix_connection(self, path: str) -> tuple[Any, Any]:
        """A stream to a Unix socket on the target (the proxy's admin API)."""
        ...


def finish(command: Command, status: int, stdout: str, stderr: str) -> Result:
    result = Result(command=command, exit_status=status, stdout=stdout, stderr=stderr)
    if command.check and status != 0:
        raise CommandFailed(command.argv[0], status, stderr.strip() or stdout.strip())
    return result


async def pump_lines(
    stream: asyncio.StreamReader, on_line: LineHandler | None, sink: list[str]
) -> None:
    """Read a stream line by line, forwarding each line as it arrives."""
    while True:
        raw = await stream.readline()
        if not raw:
            return
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        sink.append(line)
        if on_line is not None:
            await on_line(line)


class LocalExecutor:
    """The control host's own commands (only when DEPLOYMATE_LOCAL_DOCKER_ENABLED)."""

    async def run(
        self, command: Command, on_line: LineHandler | None = None, source: ByteSource | None = None
    ) -> Result:
        wants_stdin = command.stdin is not None or source is not None
        proc = await asyncio.create_subprocess_exec(
            *command.argv,
            stdin=asyncio.subprocess.PIPE if wants_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out_lines: list[str] = []
        err_lines: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None

        async def feed() -> None:
            if proc.stdin is None:
                return
            try:
                if command.stdin is not None:
                    proc.stdin.write(command.stdin)
                    await proc.stdin.drain()
                elif source is not None:
                    async for chunk in source:
                        proc.stdin.write(chunk)
                        await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the process ended early; its exit status tells why
            finally:
                proc.stdin.close()

        err_handler = on_line if command.merge_stderr else None
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    feed(),
                    pump_lines(proc.stdout, on_line, out_lines),
                    pump_lines(proc.stderr, err_handler, err_lines),
                    proc.wait(),
                ),
                timeout=command.timeout,
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CommandTimeout(command.argv[0], command.timeout) from None
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return finish(command, proc.returncode, "\n".join(out_lines), "\n".join(err_lines))

    async def open_connection(self, host: str, port: int) -> tuple[Any, Any]:
        return await asyncio.open_connection(host, port)

    async def open_unix_connection(self, path: str) -> tuple[Any, Any]:
        return await asyncio.open_unix_connection(path)
