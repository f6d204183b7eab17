"""The proxy on a target: one Caddy 2 container in front of every deployment that has domains.

Its configuration is data rendered from DeployMate's records (`render`), written next to Caddy
(so a restarted proxy comes back with its routes) and loaded through Caddy's admin API. The admin
API listens on a Unix socket in a Docker volume, reached through the SSH connection: no port is
published, and no container on the deployments' network can reprogram the routes.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from deploymate.runtime import docker
from deploymate.runtime.errors import RuntimeFailure
from deploymate.runtime.executor import Command, Executor

NETWORK = "deploymate"
CONTAINER = "deploymate-proxy"
NEXT = f"{CONTAINER}-next"  # its replacement while an upgrade prepares it
CONFIG_VOLUME = "deploymate-proxy-config"  # config file and admin socket
DATA_VOLUME = "deploymate-proxy-data"  # certificates: they survive upgrades
CONFIG_DIR = "/run/deploymate"
CONFIG_FILE = f"{CONFIG_DIR}/caddy.json"
ADMIN_SOCKET = "admin.sock"
# A listener that is never published: checks "through the proxy" (smoke) reach the same routes
# over plain HTTP, whatever the domain's TLS mode.
CHECK_PORT = 2080
LABEL_PROXY = f"{docker.LABEL_PREFIX}.proxy"

Tls = Literal["auto", "internal", "off"]


@dataclass(frozen=True)
class Route:
    """Requests for these host names go to `upstream` (container:port on the network)."""

    deployment: str
    domains: tuple[str, ...]
    upstream: str
    tls: Tls = "auto"


def _route(route: Route) -> dict[str, Any]:
    return {
        "@id": f"dm-{route.deployment}",
        "match": [{"host": list(route.domains)}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": route.upstream}]}],
        "terminal": True,
    }


def render(routes: Sequence[Route]) -> dict[str, Any]:
    """Caddy's JSON config for these routes: HTTP on 80 for `tls: off`, HTTPS on 443 for the
    others (HTTP redirects to it), and the unpublished check listener for all of them."""
    ordered = sorted(routes, key=lambda r: r.deployment)
    plain = [_route(r) for r in ordered if r.tls == "off"]
    secure = [_route(r) for r in ordered if r.tls != "off"]
    internal = sorted({d for r in ordered if r.tls == "internal" for d in r.domains})
    servers: dict[str, Any] = {
        "http": {"listen": [":80"], "routes": plain},
        "checks": {
            "listen": [f":{CHECK_PORT}"],
            "routes": [_route(r) for r in ordered],
            "automatic_https": {"disable": True},
        },
    }
    if secure:
        servers["https"] = {"listen": [":443"], "routes": secure}
    config: dict[str, Any] = {
        # Caddy keeps a copy of each config DeployMate loads (autosave, in its data volume) and
        # resumes from it when Docker restarts it: the last rendering of the records.
        "admin": {"listen": f"unix/{CONFIG_DIR}/{ADMIN_SOCKET}", "config": {"persist": True}},
        "storage": {"module": "file_system", "root": "/data/caddy"},
        "apps": {"http": {"servers": servers}},
    }
    if internal:
        config["apps"]["tls"] = {
            "automation": {
                "policies": [{"subjects": internal, "issuers": [{"module": "internal"}]}]
            }
        }
    return config


# --- commands -------------------------------------------------------------------------------


def network_create() -> Command:
    return Command.of(
        "docker",
        "network",
        "create",
        "--label",
        f"{LABEL_PROXY}=network",
        NETWORK,
        timeout=60,
        check=False,
    )


def network_inspect() -> Command:
    return Command.of(
        "docker", "network", "inspect", "--format", "{{.Name}}", NETWORK, timeout=30, check=False
    )


def create(image: str, name: str = CONTAINER) -> Command:
    """The proxy container, created stopped so that its config file is written before Caddy
    starts; `caddy run` explicitly, so any image with a caddy binary works."""
    return Command.of(
        "docker",
        "create",
        "--name",
        name,
        "--network",
        NETWORK,
        "--restart",
        "unless-stopped",
        "--label",
        f"{LABEL_PROXY}=proxy",
        "--publish",
        "80:80",
        "--publish",
        "443:443",
        "--mount",
        f"type=volume,source={CONFIG_VOLUME},target={CONFIG_DIR}",
        "--mount",
        f"type=volume,source={DATA_VOLUME},target=/data",
        "--env",
        "XDG_DATA_HOME=/data",
        "--env",
        "XDG_CONFIG_HOME=/data/config",
        image,
        "caddy",
        "run",
        "--config",
        CONFIG_FILE,
        "--resume",
        timeout=120,
    )


def config_tar(config: dict[str, Any]) -> bytes:
    """The config file as the tar stream `docker cp -` takes (works with any image)."""
    data = json.dumps(config, indent=1, sort_keys=True).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("caddy.json")
        info.size, info.mode = len(data), 0o600
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_config(container: str, config: dict[str, Any]) -> Command:
    return Command(
        ("docker", "cp", "-", f"{container}:{CONFIG_DIR}"), timeout=60, stdin=config_tar(config)
    )


def volume_path() -> Command:
    return Command.of(
        "docker",
        "volume",
        "inspect",
        "--format",
        "{{.Mountpoint}}",
        CONFIG_VOLUME,
        timeout=30,
        check=False,
    )


def version() -> Command:
    return Command.of("docker", "exec", CONTAINER, "caddy", "version", timeout=30, check=False)


# --- state and the admin API ---------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    installed: bool
    running: bool
    image: str | None = None
    version: str | None = None
    address: str | None = None
    started_at: str | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "installed": self.installed,
            "running": self.running,
            "image": self.image,
            "version": self.version,
            "address": self.address,
            "started_at": self.started_at,
            "detail": self.detail,
        }


async def status(executor: Executor) -> Status:
    state = docker.parse_container((await executor.run(docker.inspect(CONTAINER))).stdout)
    if state is None:
        return Status(False, False, detail="not installed")
    image = state.labels.get("org.opencontainers.image.ref.name")
    found = (await executor.run(docker.inspect_format(CONTAINER, "{{.Config.Image}}"))).stdout
    image = found.strip() or image
    if not state.running:
        return Status(True, False, image=image, detail=f"{state.status} (exit {state.exit_code})")
    out = (await executor.run(version())).stdout.strip()
    return Status(
        True,
        True,
        image=image,
        version=out.split()[0] if out else None,
        address=state.ip_address,
        started_at=state.started_at,
        detail="running",
    )


async def running(executor: Executor) -> bool:
    found = await executor.run(docker.inspect_format(CONTAINER, "{{.State.Running}}"))
    return found.stdout.strip() == "true"


async def address(executor: Executor) -> str | None:
    """The proxy's address on the deployments' network (for checks through it)."""
    found = await executor.run(
        docker.inspect_format(CONTAINER, f"{{{{.NetworkSettings.Networks.{NETWORK}.IPAddress}}}}")
    )
    return found.stdout.strip() or None


async def admin_socket(executor: Executor) -> str:
    result = await executor.run(volume_path())
    path = result.stdout.strip()
    if not result.ok or not path:
        raise RuntimeFailure(
            "the proxy's config volume is missing; install the proxy", step="proxy"
        )
    return f"{path}/{ADMIN_SOCKET}"


async def load(executor: Executor, socket_path: str, config: dict[str, Any]) -> None:
    """POST /load: Caddy swaps its whole configuration at once, gracefully."""
    body = json.dumps(config).encode()
    try:
        async with asyncio.timeout(30):
            reader, writer = await executor.open_unix_connection(socket_path)
            try:
                # Caddy accepts only an empty Host on its Unix socket (its origin check).
                head = (
                    "POST /load HTTP/1.1\r\nHost: \r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                writer.write(head.encode("ascii") + body)
                answer = bytes(await reader.read(-1)).decode("utf-8", errors="replace")
            finally:
                writer.close()
    except TimeoutError:
        raise RuntimeFailure(
            "the proxy did not take its new config within 30s", step="proxy"
        ) from None
    except (OSError, EOFError) as exc:
        raise RuntimeFailure(
            f"cannot reach the proxy's admin socket ({exc}); is the proxy running? "
            "`deploymate proxy install SERVER` restores it",
            step="proxy",
        ) from None
    status_line, _, rest = answer.partition("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or parts[1] != "200":
        body_text = rest.partition("\r\n\r\n")[2].strip()
        raise RuntimeFailure(
            f"the proxy refused its config: {status_line} {body_text[:300]}", step="proxy"
        )
