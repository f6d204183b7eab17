"""Getting an image onto a target: reuse, pull from a registry, or stream it over SSH."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from deploymate.runtime import docker
from deploymate.runtime.errors import CommandFailed, RuntimeFailure
from deploymate.runtime.executor import Command, Executor, LocalExecutor
from deploymate.runtime.shipping import ReverseTunnels, Shipper

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


async def _transfer(
    target: Executor, image_id: str, ref: str, log: Log, shipper: Shipper | None
) -> None:
    """The control host's image to the target: through the registry (only the layers the
    target lacks) where it can, else the whole image by docker save | docker load."""
    if shipper is not None:
        try:
            moved = await shipper.ship(target, image_id, ref, log)
        except RuntimeFailure as exc:
            await log(f"the registry route failed ({exc.detail}); falling back")
            moved = None
        if moved is not None:
            await log(f"shipped {ref}: {moved} bytes moved through the SSH connection")
            return
    elif isinstance(target, ReverseTunnels):
        await log("no registry on the control host (install docker-registry): the whole image")
    await _stream(target, ref, log)


@dataclass(frozen=True)
class RegistryAuth:
    """Credentials for one registry; they reach the target's Docker on stdin, in a client
    config that exists only for the pull."""

    host: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password, even in a traceback
        return f"RegistryAuth({self.host!r}, {self.username!r})"

    def config_json(self) -> bytes:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return json.dumps({"auths": {self.host: {"auth": token}}}).encode()


def registry_of(ref: str) -> str:
    return ref.split("/", 1)[0] if docker.names_registry(ref) else "docker.io"


@contextlib.asynccontextmanager
async def client_config(target: Executor, auth: RegistryAuth | None) -> AsyncIterator[list[str]]:
    """The argv prefix that points the docker CLI at a throw-away config holding `auth`."""
    if auth is None:
        yield []
        return
    made = await target.run(Command.of("mktemp", "-d", timeout=30))
    directory = made.stdout.strip()
    try:
        await target.run(
            Command(
                ("sh", "-c", 'umask 077 && cat > "$1/config.json"', "sh", directory),
                timeout=30,
                stdin=auth.config_json(),
            )
        )
        yield ["env", f"DOCKER_CONFIG={directory}"]
    finally:
        await target.run(Command.of("rm", "-rf", "--", directory, timeout=30, check=False))


def _with(prefix: Sequence[str], command: Command) -> Command:
    return Command(
        (*prefix, *command.argv), timeout=command.timeout, stdin=command.stdin, check=command.check
    )


async def pull(target: Executor, ref: str, auth: RegistryAuth | None, log: Log) -> docker.ImageInfo:
    await log(f"pulling {ref} on the target" + (" (with stored credentials)" if auth else ""))
    async with client_config(target, auth) as prefix:
        try:
            await target.run(_with(prefix, docker.pull(ref)), on_line=log)
        except CommandFailed as exc:
            raise RuntimeFailure(pull_failure(ref, exc.output), step="image") from None
    found = await inspect(target, ref)
    if found is None:
        raise RuntimeFailure(f"image {ref} is not on the target after pull", step="image")
    return found


def pull_failure(ref: str, output: str) -> str:
    """Why `docker pull` failed, in words, with what to check."""
    registry = registry_of(ref)
    text = output.lower()
    if "no such host" in text or "server misbehaving" in text:
        return (
            f"cannot pull {ref}: the registry {registry} does not resolve from the target; check "
            "the image name, or the target's DNS"
        )
    if any(
        w in text for w in ("unauthorized", "denied", "authentication required", "no basic auth")
    ):
        return (
            f"cannot pull {ref}: {registry} refused it; check the name, or store the "
            f"registry's credentials in DeployMate (Registries) for {registry}"
        )
    if "manifest unknown" in text or "not found" in text:
        return f"cannot pull {ref}: {registry} has no such image or tag; check the name and the tag"
    if "timeout" in text or "i/o timeout" in text or "connection refused" in text:
        return f"cannot pull {ref}: {registry} does not answer from the target; try again later"
    last = output.strip().splitlines()[-1] if output.strip() else "no output"
    return f"cannot pull {ref}: {last[:300]}"


async def missing(
    target: Executor,
    ref: str,
    *,
    control: LocalExecutor | None,
    auth: RegistryAuth | None = None,
) -> str | None:
    """Why `ensure` would find the image nowhere, asked before anything is recorded; None when
    the target or the control host has it, or it names a registry to pull from, or Docker Hub
    has it (asked from the target, without pulling)."""
    if docker.names_registry(ref):
        return None
    if control is not None and await inspect(control, ref) is not None:
        return None
    if await inspect(target, ref) is not None:
        return None
    async with client_config(target, auth) as prefix:
        asked = await target.run(_with(prefix, docker.manifest_inspect(ref)))
    if asked.ok:
        return None
    where = "not on the target" if control is None else "on neither the control host nor the target"
    why = pull_failure(ref, asked.stderr or asked.stdout).removeprefix(f"cannot pull {ref}: ")
    return (
        f"{ref} is {where}, and Docker Hub cannot give it ({why}): build or load it there "
        "(docker build, docker load), or give a registry reference such as "
        "registry.example.com/team/app:1.0"
    )


async def _none() -> None:
    return None


async def ensure(
    target: Executor,
    ref: str,
    *,
    pinned_id: str | None,
    control: LocalExecutor | None,
    log: Log,
    auth: RegistryAuth | None = None,
    shipper: Shipper | None = None,
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
            await _transfer(target, pinned_id, pinned_id, log, shipper)
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
        return found if found is not None else await pull(target, ref, auth, log)
    local, tagged = await asyncio.gather(
        inspect(control, ref) if control is not None else _none(), inspect(target, ref)
    )
    if local is None:
        return tagged if tagged is not None else await pull(target, ref, auth, log)
    if tagged is not None and tagged.id == local.id:  # the usual redeploy: nothing to move
        await log(f"target already has {ref} ({local.id[:19]}); transfer skipped")
        return tagged
    found = await inspect(target, local.id)
    if found is None:
        await _transfer(target, local.id, ref, log, shipper)
        found = await inspect(target, local.id)
        if found is None:
            raise RuntimeFailure(f"image {ref} did not arrive on the target", step="image")
    else:
        await log(f"target already has {ref} ({local.id[:19]}); transfer skipped")
        await target.run(docker.tag(local.id, ref))
    return found
