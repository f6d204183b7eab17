"""The long-lived parts every use case may need, built once per process: one way to reach them.

Routes and pages get it from `web/deps.py` (`ContextDep`), job handlers from their JobContext,
the CLI from `build`. It knows nothing of any domain.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from deploymate.core import db, failpoints
from deploymate.core.config import Settings
from deploymate.core.crypto import Cipher, cipher_from_settings
from deploymate.core.events import EventBus
from deploymate.runtime.executor import LocalExecutor
from deploymate.runtime.shipping import LocalRegistry, Shipper
from deploymate.runtime.ssh import SSHPool


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    cipher: Cipher
    pool: SSHPool
    bus: EventBus
    local: LocalExecutor = field(default_factory=LocalExecutor)
    # Named in-process locks (e.g. one per target's proxy), made on first use.
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Small facts about targets that do not change while a process runs (e.g. a volume's path).
    memo: dict[str, str] = field(default_factory=dict)
    _wakers: list[Callable[[], None]] = field(default_factory=list)
    _registry: LocalRegistry | None = None

    def control_docker(self) -> LocalExecutor | None:
        """The control host's Docker as an image source, when its CLI is installed."""
        return self.local if shutil.which("docker") else None

    def shipper(self) -> Shipper | None:
        """Images to targets through the control host's registry (started on first use);
        None when shipping is set to stream, or docker-registry or docker is missing."""
        control = self.control_docker()
        if self.settings.image_shipping != "registry" or control is None:
            return None
        if not LocalRegistry.available():
            return None
        if self._registry is None:
            self._registry = LocalRegistry(self.settings.data_dir / "registry")
        return Shipper(self._registry, control)

    def stop_registry(self) -> None:
        if self._registry is not None:
            self._registry.stop()

    def on_wake(self, callback: Callable[[], None]) -> None:
        self._wakers.append(callback)

    def wake_worker(self) -> None:
        """A job was queued: the worker claims it now instead of at its next poll."""
        for callback in self._wakers:
            callback()


def build(settings: Settings) -> AppContext:
    """Engine, sessions (each carrying the event bus), cipher and SSH pool; nothing started."""
    engine = db.make_engine(settings.resolved_database_url)
    bus = EventBus()
    failpoints.arm(settings.failpoints)
    return AppContext(
        settings=settings,
        engine=engine,
        sessions=db.session_factory(engine, bus.session_info),
        cipher=cipher_from_settings(settings),
        pool=SSHPool(),
        bus=bus,
    )
