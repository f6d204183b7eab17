"""The long-lived parts the API, the console and the worker share (built once at start-up)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploymate.config import Settings
from deploymate.errors import PermissionDenied
from deploymate.runtime.executor import Executor, LocalExecutor
from deploymate.runtime.ssh import SSHPool
from deploymate.servers.credentials import Cipher
from deploymate.servers.models import Server
from deploymate.servers.service import target_for


@dataclass
class Services:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    cipher: Cipher
    pool: SSHPool
    local: LocalExecutor = field(default_factory=LocalExecutor)
    wake_worker: list[object] = field(default_factory=list)  # callables set by the worker

    def executor_for(self, server: Server | None) -> Executor:
        """The executor of a deployment's target: a server over SSH, or the control host."""
        if server is None:
            if not self.settings.local_docker:
                raise PermissionDenied(
                    "deploying to the control host is disabled "
                    "(DEPLOYMATE_LOCAL_DOCKER_ENABLED=false)",
                    code="local_docker_disabled",
                )
            return self.local
        return self.pool.executor(target_for(server, self.cipher))

    def control_docker(self) -> LocalExecutor | None:
        """The control host's Docker as an image source, when its CLI is installed."""
        return self.local if shutil.which("docker") else None

    def wake(self) -> None:
        for callback in self.wake_worker:
            callback()  # type: ignore[operator]
