"""Builds of an app release's services that have `build:` instead of `image:`, on the control
host, from the commit's archive: before any server is touched, so a failed build leaves every
environment as it was. A commit already built is not built again."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from deploymate.apps import sources
from deploymate.apps.models import AppRelease
from deploymate.context import AppContext
from deploymate.core.errors import DeployMateError
from deploymate.runtime import build as commands
from deploymate.runtime import images
from deploymate.runtime.executor import LocalExecutor

Log = Callable[[str], Awaitable[None]]


class BuildFailed(DeployMateError):
    code = "build_failed"
    status = 409


def wanted(app_release: AppRelease) -> dict[str, dict[str, Any]]:
    """The services to build: those with `build:` that no earlier release pinned (a ship or a
    rollback runs the image IDs it pins, never a rebuild)."""
    services: dict[str, Any] = app_release.spec["services"]
    pinned = {
        service
        for service, per_server in app_release.parts.items()
        if any(p.get("pinned") or p.get("unchanged") for p in per_server.values())
    }
    return {s: svc["build"] for s, svc in services.items() if "build" in svc and s not in pinned}


async def build_all(
    context: AppContext,
    app_name: str,
    app_release: AppRelease,
    secrets: dict[str, str],
    log: Log,
) -> None:
    todo = wanted(app_release)
    if not todo:
        return
    commit = app_release.commit or ""
    control = context.control_docker()
    if control is None:
        raise BuildFailed("builds run on the control host, which has no docker CLI")
    tree: Path | None = None
    try:
        for service, spec in todo.items():
            tag = commands.tag_for(app_name, service, commit)
            found = await images.inspect(control, tag)
            if found is not None:
                await log(f"[{service}] {tag} already built ({found.id[:19]}); not built again")
                continue
            if tree is None:
                tree = sources.scratch()
                sources.unpack(context.settings, app_name, commit, tree)
            await _build(control, tree, tag, service, spec, secrets, log)
    finally:
        if tree is not None:
            sources.discard(tree)


async def _build(
    control: LocalExecutor,
    tree: Path,
    tag: str,
    service: str,
    spec: dict[str, Any],
    secrets: dict[str, str],
    log: Log,
) -> None:
    where, dockerfile = sources.build_paths(tree, spec["context"], spec.get("dockerfile"))
    names = list(spec.get("secrets") or [])
    files: dict[str, Path] = {}
    if names:
        if not (await control.run(commands.buildkit_version())).ok:
            raise BuildFailed(
                f"{service}: build secrets need BuildKit (docker buildx), which the control host "
                "lacks; install the docker-buildx package, or build without build.secrets"
            )
        missing = [n for n in names if n not in secrets]
        if missing:
            raise BuildFailed(
                f"{service}: no value for the build secret {', '.join(missing)} in this "
                "environment; set it with `deploymate secrets set`"
            )
        secret_dir = tree.parent / f"{tree.name}-secrets"
        secret_dir.mkdir(mode=0o700)
        for name in names:
            path = secret_dir / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets[name])
            files[name] = path
    shown = {v for v in secrets.values() if v}

    async def line(text: str) -> None:
        for value in shown:  # a build that prints a secret does not put it in the log
            text = text.replace(value, "***")
        await log(f"[{service}] {text}")

    await log(f"[{service}] building {tag} from {spec['context']} (docker build)")
    try:
        result = await control.run(
            commands.build(
                tag,
                where,
                dockerfile,
                target=spec.get("target"),
                args=spec.get("args") or {},
                secret_files=files,
            ),
            on_line=line,
        )
    finally:
        for path in files.values():
            path.unlink(missing_ok=True)
        if files:
            next(iter(files.values())).parent.rmdir()
    if not result.ok:
        raise BuildFailed(
            f"{service}: the build of {tag} failed (status {result.exit_status}); "
            "its output is in the job log"
        )
    await log(f"[{service}] built {tag}")
