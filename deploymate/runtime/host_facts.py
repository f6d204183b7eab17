"""Commands that describe a target host, as data, and the parsers for their output."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from deploymate.runtime.executor import Command, Executor

DOCKER_VERSION = Command.of("docker", "version", "--format", "{{json .}}", timeout=20)
DOCKER_ROOT = Command.of("docker", "info", "--format", "{{.DockerRootDir}}", timeout=20)
CPUS = Command.of("nproc", timeout=10)
MEMINFO = Command.of("cat", "/proc/meminfo", timeout=10)
LOADAVG = Command.of("cat", "/proc/loadavg", timeout=10)
CONTAINERS = Command.of("docker", "ps", "--format", "{{json .}}", timeout=20)
TCP_TABLES = Command.of("cat", "/proc/net/tcp", "/proc/net/tcp6", timeout=10, check=False)
RESERVED_PORTS = frozenset({22, 80, 443})


def disk_free(path: str) -> Command:
    return Command.of("df", "-P", "-k", "--", path, timeout=10)


@dataclass
class Diagnostics:
    docker_version: str | None
    docker_api_version: str | None
    cpus: int
    memory_total_bytes: int
    memory_available_bytes: int
    docker_root: str
    disk_free_bytes: int
    disk_total_bytes: int
    load_average: list[float]
    running_containers: list[dict[str, str]] = field(default_factory=list)
    listening_ports: list[int] = field(default_factory=list)


def parse_docker_version(stdout: str) -> tuple[str | None, str | None]:
    data: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    server = data.get("Server") or {}
    return server.get("Version"), server.get("ApiVersion")


def parse_meminfo(stdout: str) -> tuple[int, int]:
    values: dict[str, int] = {}
    for line in stdout.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0]) * 1024
    return values.get("MemTotal", 0), values.get("MemAvailable", values.get("MemFree", 0))


def parse_df(stdout: str) -> tuple[int, int]:
    """(free, total) bytes from POSIX `df -P -k` output."""
    fields = stdout.strip().splitlines()[-1].split()
    return int(fields[3]) * 1024, int(fields[1]) * 1024


def parse_loadavg(stdout: str) -> list[float]:
    return [float(v) for v in stdout.split()[:3]]


def parse_containers(stdout: str) -> list[dict[str, str]]:
    rows = []
    for line in stdout.splitlines():
        if line.strip():
            data = json.loads(line)
            rows.append(
                {
                    "id": data.get("ID", ""),
                    "name": data.get("Names", ""),
                    "image": data.get("Image", ""),
                    "status": data.get("Status", ""),
                    "ports": data.get("Ports", ""),
                }
            )
    return rows


def parse_listening_ports(stdout: str) -> list[int]:
    """Ports in LISTEN state (0A) from /proc/net/tcp and tcp6; needs no `ss` on the target."""
    ports: set[int] = set()
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A" and ":" in parts[1]:
            ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def suggest_ports(
    listening: set[int], held: set[int], *, start: int = 8000, end: int = 8999, count: int = 10
) -> list[int]:
    """Free ports for a new deployment: never 22/80/443, a listening port or a held one."""
    taken = listening | held | RESERVED_PORTS
    return [p for p in range(start, end + 1) if p not in taken][:count]


async def docker_version(executor: Executor) -> tuple[str | None, str | None]:
    return parse_docker_version((await executor.run(DOCKER_VERSION)).stdout)


async def listening_ports(executor: Executor) -> list[int]:
    return parse_listening_ports((await executor.run(TCP_TABLES)).stdout)


async def collect(executor: Executor) -> Diagnostics:
    version, api = await docker_version(executor)
    root = (await executor.run(DOCKER_ROOT)).stdout.strip() or "/"
    free, total = parse_df((await executor.run(disk_free(root))).stdout)
    mem_total, mem_avail = parse_meminfo((await executor.run(MEMINFO)).stdout)
    return Diagnostics(
        docker_version=version,
        docker_api_version=api,
        cpus=int((await executor.run(CPUS)).stdout.strip() or 0),
        memory_total_bytes=mem_total,
        memory_available_bytes=mem_avail,
        docker_root=root,
        disk_free_bytes=free,
        disk_total_bytes=total,
        load_average=parse_loadavg((await executor.run(LOADAVG)).stdout),
        running_containers=parse_containers((await executor.run(CONTAINERS)).stdout),
        listening_ports=await listening_ports(executor),
    )
