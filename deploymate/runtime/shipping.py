"""Shipping images to targets through a registry on the control host, layer by layer.

The control host runs Debian's `docker-registry`, bound to loopback. To ship an image, the
control host's Docker pushes it there (only the layers the registry lacks), and the target
pulls it through a reverse tunnel of its own SSH connection, opened for the pull and closed
after it: its sshd listens on the target's loopback, which Docker trusts as a plain-HTTP
registry, and every byte comes back over the connection DeployMate already holds. The target
downloads only the layers it lacks; the bytes that crossed are counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from deploymate.runtime import docker
from deploymate.runtime.errors import RuntimeFailure
from deploymate.runtime.executor import Executor, LocalExecutor

Log = Callable[[str], Awaitable[None]]
REPOSITORY = "deploymate/ship"
PR_SET_PDEATHSIG = 1


@runtime_checkable
class ReverseTunnels(Protocol):
    """A target that can listen on its own loopback and send each connection back here."""

    def reverse_tunnel(
        self, local_host: str, local_port: int
    ) -> contextlib.AbstractAsyncContextManager[tuple[int, list[int]]]:
        """(the port on the target's loopback, [bytes sent to the target so far])."""
        ...


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_stale(pid_file: Path) -> None:
    """A registry a killed DeployMate left behind (same data directory): stopped."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"docker-registry" in cmdline and str(pid_file.parent).encode() in cmdline:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


class LocalRegistry:
    """`docker-registry serve` on 127.0.0.1 of the control host, started on first use and
    stopped with the process; its blobs live under the data directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()
        self._pushes: dict[str, asyncio.Lock] = {}

    def lock_for(self, image_id: str) -> asyncio.Lock:
        return self._pushes.setdefault(image_id, asyncio.Lock())

    @staticmethod
    def available() -> bool:
        return shutil.which("docker-registry") is not None

    @property
    def address(self) -> str:
        assert self.port is not None
        return f"127.0.0.1:{self.port}"

    async def ensure(self) -> str:
        async with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return self.address
            self._start()
            deadline = time.monotonic() + 15
            while not await asyncio.to_thread(self._answers):
                assert self._proc is not None
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    log = self.directory / "registry.log"
                    tail = log.read_text(errors="replace")[-300:]
                    self.stop()
                    raise RuntimeFailure(f"the control host's registry did not start: {tail}")
                await asyncio.sleep(0.05)
            return self.address

    def _answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port or 0), timeout=0.5),
        ):
            return True
        return False

    def _start(self) -> None:
        """Started from the event loop's thread, so the registry dies with this process even
        when it is killed (PR_SET_PDEATHSIG); one left by a process that died before this
        existed is stopped first (its pid file)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _stop_stale(self.directory / "registry.pid")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = self.directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage: {{filesystem: {{rootdirectory: {self.directory / 'data'}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: '127.0.0.1:{self.port}'}}\n"
            "log: {level: warn}\n"
        )
        with (self.directory / "registry.log").open("ab") as log:
            self._proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        (self.directory / "registry.pid").write_text(str(self._proc.pid))

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        self._proc = None


class Shipper:
    """Moves an image from the control host's Docker to a target through the registry."""

    def __init__(self, registry: LocalRegistry, control: LocalExecutor) -> None:
        self.registry = registry
        self.control = control

    async def ship(self, target: Executor, image_id: str, ref: str, log: Log) -> int | None:
        """Bytes moved, or None when this target cannot be shipped to this way (the caller
        falls back to docker save | docker load)."""
        if not isinstance(target, ReverseTunnels):
            return None
        address = await self.registry.ensure()
        name = f"{REPOSITORY}:{image_id.removeprefix('sha256:')}"
        pushed = f"{address}/{name}"
        # One push of an image at a time (servers of one release ship it together): the
        # second finds every layer there already.
        async with self.registry.lock_for(image_id):
            await self.control.run(docker.tag(image_id, pushed))
            try:
                await self.control.run(docker.push(pushed))
            finally:
                await self.control.run(docker.untag(pushed))
        async with target.reverse_tunnel("127.0.0.1", self.registry.port or 0) as (port, sent):
            pulled = f"127.0.0.1:{port}/{name}"
            await log(
                f"pulling {ref} from the control host's registry through the SSH connection "
                "(only the layers it lacks)"
            )
            # An image asked for by its ID keeps a name of its own: without one, removing the
            # registry's name below would remove the image.
            keep = ref if ref != image_id else name
            try:
                await target.run(docker.pull(pulled))
                await target.run(docker.tag(pulled, keep))
            finally:
                await target.run(docker.untag(pulled))
            return sent[0]
