"""One interface for running commands on a target: locally (subprocess) or over SSH."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

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


class Executor(Protocol):
    """Runs commands on one target; implementations differ only in transport."""

    async def run(self, command: Command, on_line: LineHandler | None = None) -> Result: ...

    async def close(self) -> None: ...


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

    async def run(self, command: Command, on_line: LineHandler | None = None) -> Result:
        proc = await asyncio.create_subprocess_exec(
            *command.argv,
            stdin=asyncio.subprocess.PIPE
            if command.stdin is not None
            else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out_lines: list[str] = []
        err_lines: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None

        async def feed() -> None:
            if command.stdin is not None and proc.stdin is not None:
                proc.stdin.write(command.stdin)
                await proc.stdin.drain()
                proc.stdin.close()

        try:
            await asyncio.wait_for(
                asyncio.gather(
                    feed(),
                    pump_lines(proc.stdout, on_line, out_lines),
                    pump_lines(proc.stderr, None, err_lines),
                    proc.wait(),
                ),
                timeout=command.timeout,
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise CommandTimeout(command.argv[0], command.timeout) from None
        assert proc.returncode is not None
        return finish(command, proc.returncode, "\n".join(out_lines), "\n".join(err_lines))

    async def close(self) -> None:
        return None
