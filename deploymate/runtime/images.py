"""Getting an image onto a target: reuse, pull from a registry, or stream it over SSH."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from deploymate.runtime import docker
from deploymate.runtime.errors import CommandFailed, RuntimeFailure
from deploymate.runtime.executor import Executor, LocalExecutor

Log = Callable[[str], Awaitable[None]]
CHUNK = 256 * 1024


async def inspect(executor: Executor, ref: str) -> docker.ImageInfo | None:
    result = await executor.run(docker.image_inspect(ref))
    return docker.parse_image(result.stdout) if result.ok else None


async def _local_save(ref: str) -> AsyncIterator[bytes]:
    """`docker save` on the control host, as a byte stream (never held in memory whole)."""
    proc = await asyncio.create_subprocess_exec(
        *docker.save(ref).argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        while chunk := await proc.stdout.read(CHUNK):
            yield chunk
        status = await proc.wait()
        if status != 0:
            err = (await proc.stderr.read()).decode(errors="replace").strip()
            raise RuntimeFailure(f"docker save {ref} failed: {err}", step="image")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _stream(target: Executor, ref: str, log: Log) -> None:
    await log(f"streaming {ref} from the control host (docker save | docker load)")
    result = await target.run(docker.load(), source=_local_save(ref))
    await log(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "image loaded")


def pull_failure(ref: str, output: str) -> str:
    """Why `docker pull` failed, in words, with what to check."""
    registry = ref.split("/", 1)[0]
    text = output.lower()
    if "no such host" in text or "server misbehaving" in text:
        return (
            f"cannot pull {ref}: the registry {registry} does not resolve from the target; check "
            "the image name, or the target's DNS"
        )
    if "unauthorized" in text or "denied" in text or "authentication required" in text:
        return (
            f"cannot pull {ref}: {registry} refused it; check the name, or run `docker login "
            f"{registry}` on the target"
        )
    if "manifest unknown" in text or "not found" in text:
        return f"cannot pull {ref}: {registry} has no such image or tag; check the name and the tag"
    if "timeout" in text or "i/o timeout" in text or "connection refused" in text:
        return f"cannot pull {ref}: {registry} does not answer from the target; try again later"
    last = output.strip().splitlines()[-1] if output.strip() else "no output"
    return f"cannot pull {ref}: {last[:300]}"


async def missing(target: Executor, ref: str, *, control: LocalExecutor | None) -> str | None:
    """Why `ensure` would find the image nowhere, asked before anything is recorded; None when
    the target or the control host has it, or it names a registry to pull from."""
    if docker.names_registry(ref):
        return None
    if control is not None and await inspect(control, ref) is not None:
        return None
    if await inspect(target, ref) is not None:
        return None
    where = "not on the target" if control is None else "on neither the control host nor the target"
    return (
        f"{ref} is {where}, and it names no registry to pull from: build or load it there "
        "(docker build, docker load), or give a registry reference such as "
        "registry.example.com/team/app:1.0"
    )


async def ensure(
    target: Executor, ref: str, *, pinned_id: str | None, control: LocalExecutor | None, log: Log
) -> docker.ImageInfo:
    """Make sure the target has the image and return it, by pinned ID when one is given.

    Pinned (rollback): the exact ID from the target, else streamed from the control host.
    A registry reference: what the target has, else `docker pull` on the target.
    Otherwise: the control host's image, streamed unless the target already has that ID.
    `control` is None when the control host is no source for this caller: the messages then
    say nothing of what the control host holds.
    """
    if pinned_id:
        found = await inspect(target, pinned_id)
        if found is None and control is not None and await inspect(control, pinned_id):
            await _stream(target, pinned_id, log)
            found = await inspect(target, pinned_id)
        if found is None:
            where = (
                "not on the target"
                if control is None
                else "on neither the target nor the control host"
            )
            raise RuntimeFailure(
                f"image {pinned_id} is {where} (pruned?); it cannot be restored",
                step="image",
                code="image_missing",
            )
        await log(f"image {pinned_id[:19]} is on the target")
        return found
    if docker.names_registry(ref):
        found = await inspect(target, ref)
        if found is None:
            await log(f"pulling {ref} on the target")
            try:
                await target.run(docker.pull(ref), on_line=log)
            except CommandFailed as exc:
                raise RuntimeFailure(pull_failure(ref, exc.output), step="image") from None
            found = await inspect(target, ref)
        if found is None:
            raise RuntimeFailure(f"image {ref} is not on the target after pull", step="image")
        return found
    local = await inspect(control, ref) if control is not None else None
    if local is None:
        found = await inspect(target, ref)
        if found is None:
            where = (
                "not on the target"
                if control is None
                else "on neither the control host nor the target"
            )
            raise RuntimeFailure(
                f"image {ref} is {where}, and it names no registry to pull from; use a "
                "registry reference (registry.example.com/team/app:tag)",
                step="image",
                code="image_missing",
            )
        return found
    found = await inspect(target, local.id)
    if found is None:
        await _stream(target, ref, log)
        found = await inspect(target, local.id)
        if found is None:
            raise RuntimeFailure(f"image {ref} did not arrive on the target", step="image")
    else:
        await log(f"target already has {ref} ({local.id[:19]}); transfer skipped")
        await target.run(docker.tag(local.id, ref))
    return found
