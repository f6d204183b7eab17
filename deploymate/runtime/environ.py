"""What environment a container's main process really has ("HTTP 200 is not enough").

An entrypoint may drop or overwrite variables Docker was given, so the strongest check reads
the running process: from the host's /proc (any image), else from inside the container (an image
with `cat`), else only what Docker was told (weaker, and said so).
"""

from __future__ import annotations

from dataclasses import dataclass

from deploymate.runtime import docker
from deploymate.runtime.executor import Executor


@dataclass(frozen=True)
class Environ:
    names: frozenset[str]
    source: str  # how it was read, for the release log
    strong: bool


def _names(raw: str) -> frozenset[str]:
    return frozenset(p.split("=", 1)[0] for p in raw.split("\x00") if "=" in p)


async def read(executor: Executor, state: docker.ContainerState) -> Environ:
    if state.pid > 0:
        result = await executor.run(docker.process_environ_host(state.pid))
        if result.ok and "=" in result.stdout:
            return Environ(
                _names(result.stdout), "the main process's environment (host /proc)", True
            )
    result = await executor.run(docker.process_environ_exec(state.name))
    if result.ok and "=" in result.stdout:
        return Environ(_names(result.stdout), "the main process's environment (inside)", True)
    return Environ(
        frozenset(e.split("=", 1)[0] for e in state.config_env),
        "the configuration Docker was given (weaker: the image shows no process environment, "
        "so an entrypoint that drops a variable goes unseen)",
        False,
    )
