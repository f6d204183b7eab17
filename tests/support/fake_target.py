"""A recording fake of one target for unit tests of the engine: no host, no Docker.

It keeps a small model of the target's containers, answers the Docker commands the engine
builds (run, inspect, rm, stop, start, logs) from that model, records every argument list, and
answers health probes at a container's address with the HTTP status its image is set to give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from deploymate.runtime.errors import CommandFailed
from deploymate.runtime.executor import ByteSource, Command, LineHandler, Result, finish

REFUSED = -1  # a health status meaning: nothing listens


@dataclass
class FakeContainer:
    name: str
    image: str
    labels: dict[str, str]
    ip: str | None
    running: bool = True
    published: str | None = None


@dataclass
class FakeTarget:
    """`health[image]`: the HTTP status its containers answer (None: they exit at once;
    REFUSED: they run but listen on no port)."""

    health: dict[str, int | None] = field(default_factory=dict)
    fail_run: set[str] = field(default_factory=set)  # container names whose `docker run` fails
    commands: list[tuple[str, ...]] = field(default_factory=list)
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    probes: int = 0  # health probes answered (or refused)
    _next_ip: int = 2

    def add(self, name: str, image: str, *, running: bool = True) -> FakeContainer:
        container = FakeContainer(name, image, {}, self._ip(), running)
        self.containers[name] = container
        return container

    def _ip(self) -> str:
        self._next_ip += 1
        return f"172.18.0.{self._next_ip}"

    def verbs(self) -> list[str]:
        """The commands as `verb name` (e.g. `run dm-web-r2`), for readable assertions."""
        out = []
        for argv in self.commands:
            verb = argv[2] if argv[1] == "container" else argv[1]
            if verb == "run":
                out.append(f"run {argv[argv.index('--name') + 1]}")
            elif verb in ("inspect", "rm", "stop", "start", "logs"):
                out.append(f"{verb} {argv[-1]}")
        return out

    # -- Executor

    async def run(
        self, command: Command, on_line: LineHandler | None = None, source: ByteSource | None = None
    ) -> Result:
        argv = command.argv
        self.commands.append(argv)
        assert argv[0] == "docker", argv
        verb = argv[2] if argv[1] == "container" else argv[1]
        handler = getattr(self, f"_{verb}")
        status, stdout, stderr = handler(argv, command)
        return finish(command, status, stdout, stderr)

    async def open_connection(self, host: str, port: int) -> tuple[Any, Any]:
        self.probes += 1
        found = next((c for c in self.containers.values() if c.ip == host), None)
        if found is None or not found.running:
            raise ConnectionRefusedError(f"{host}:{port}")
        status = self.health.get(found.image, 200)
        if status == REFUSED:
            raise ConnectionRefusedError(f"{host}:{port}")
        return _Reader(f"HTTP/1.0 {status} X\r\n".encode()), _Writer()

    # -- docker verbs

    def _run(self, argv: tuple[str, ...], command: Command) -> tuple[int, str, str]:
        name = argv[argv.index("--name") + 1]
        if name in self.fail_run:
            raise CommandFailed("docker", 125, "port is already allocated")
        if name in self.containers:
            return 125, "", f"Conflict. The container name {name} is already in use"
        labels = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--label")
        published = argv[argv.index("--publish") + 1] if "--publish" in argv else None
        image = self._image_of(argv)
        exits = self.health.get(image, 200) is None
        self.containers[name] = FakeContainer(
            name, image, labels, None if exits else self._ip(), not exits, published
        )
        assert command.stdin is not None  # the environment travels on stdin, never in argv
        return 0, "c0ffee\n", ""

    @staticmethod
    def _image_of(argv: tuple[str, ...]) -> str:
        """The first argument after the options (each option here takes one value)."""
        i = 2
        while argv[i].startswith("--"):
            i += 1 if argv[i] == "--detach" else 2
        return argv[i]

    def _inspect(self, argv: tuple[str, ...], command: Command) -> tuple[int, str, str]:
        found = self.containers.get(argv[-1])
        if found is None:
            return 1, "[]", f"Error: No such container: {argv[-1]}"
        data = {
            "Id": f"id-{found.name}",
            "Name": f"/{found.name}",
            "Image": f"sha256:{found.image}",
            "State": {
                "Status": "running" if found.running else "exited",
                "Running": found.running,
                "ExitCode": 0 if found.running else 3,
            },
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": found.ip or ""}}},
            "Config": {"Labels": found.labels},
        }
        return 0, json.dumps(data) + "\n", ""

    def _rm(self, argv: tuple[str, ...], command: Command) -> tuple[int, str, str]:
        return (0, "", "") if self.containers.pop(argv[-1], None) else (1, "", "No such container")

    def _stop(self, argv: tuple[str, ...], command: Command) -> tuple[int, str, str]:
        self.containers[argv[-1]].running = False
        return 0, "", ""

    def _start(self, argv: tuple[str, ...], command: Command) -> tuple[int, str, str]:
        self.containers[argv[-1]].running = True
        return 0, "", ""

    def _logs(self, argv: tuple[str, ...], command: Command) -> tuple[int, str, str]:
        return 0, f"{argv[-1]} says hello\n", ""


class _Reader:
    def __init__(self, line: bytes) -> None:
        self.line = line

    async def readline(self) -> bytes:
        return self.line


class _Writer:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass
