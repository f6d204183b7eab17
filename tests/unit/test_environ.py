"""The required-env guard reads the running process, and says when it could only read less."""

from __future__ import annotations

import asyncio
from typing import Any

from deploymate.runtime import environ
from deploymate.runtime.docker import ContainerState
from deploymate.runtime.executor import ByteSource, Command, LineHandler, Result, finish


class Answers:
    """A target whose commands answer from a table keyed by the program and first argument."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, ...]] = []

    async def run(
        self, command: Command, on_line: LineHandler | None = None, source: ByteSource | None = None
    ) -> Result:
        self.asked.append(command.argv)
        status, out = self.answers.get((command.argv[0], command.argv[1]), (1, ""))
        return finish(command, status, out, "" if status == 0 else "no")

    async def open_connection(self, host: str, port: int) -> tuple[Any, Any]:
        raise ConnectionRefusedError

    async def open_unix_connection(self, path: str) -> tuple[Any, Any]:
        raise ConnectionRefusedError


def _state(pid: int = 4242) -> ContainerState:
    return ContainerState(
        id="c1",
        name="dm-web-r2",
        image_id="sha256:1",
        status="running",
        running=True,
        exit_code=0,
        oom_killed=False,
        restart_count=0,
        started_at="",
        pid=pid,
        ip_address="172.18.0.3",
        labels={},
        config_env=["DATABASE_URL=pg://x", "PATH=/bin"],
        ports={},
        health_log=[],
    )


def test_the_host_proc_of_the_main_process_comes_first() -> None:
    target = Answers({("cat", "/proc/4242/environ"): (0, "PATH=/bin\x00HOME=/root\x00")})
    seen = asyncio.run(environ.read(target, _state()))
    assert seen.strong and seen.names == {"PATH", "HOME"} and "host /proc" in seen.source
    # DATABASE_URL was given to Docker but the process does not have it: the guard sees that.
    assert "DATABASE_URL" not in seen.names


def test_inside_the_container_when_the_host_refuses() -> None:
    target = Answers({("docker", "exec"): (0, "A=1\x00B=2\x00")})
    seen = asyncio.run(environ.read(target, _state()))
    assert seen.strong and seen.names == {"A", "B"} and "inside" in seen.source


def test_the_weaker_check_is_said_when_nothing_shows_the_process() -> None:
    seen = asyncio.run(environ.read(Answers({}), _state()))
    assert not seen.strong and seen.names == {"DATABASE_URL", "PATH"}
    assert "weaker" in seen.source and "entrypoint" in seen.source
