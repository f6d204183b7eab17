"""Docker commands as data (argument lists), and parsers for their output."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deploymate.runtime.executor import Command

LABEL_PREFIX = "deploymate"
LABEL_DEPLOYMENT = f"{LABEL_PREFIX}.deployment"
LABEL_NAME = f"{LABEL_PREFIX}.name"
LABEL_RELEASE = f"{LABEL_PREFIX}.release"
LABEL_ROLE = f"{LABEL_PREFIX}.role"  # candidate (being verified) | serving (holds the port)
ROLE_CANDIDATE = "candidate"
ROLE_SERVING = "serving"


@dataclass(frozen=True)
class Mount:
    """A named volume (`volume`) or a host directory (`bind`) at `target` in the container.
    Paths and names are validated at the edge: no commas, so the --mount value cannot grow
    options."""

    kind: str  # volume | bind
    source: str
    target: str
    read_only: bool = False

    def option(self) -> str:
        return f"type={self.kind},source={self.source},target={self.target}" + (
            ",readonly" if self.read_only else ""
        )


@dataclass(frozen=True)
class ContainerSpec:
    """Everything `docker run` needs; env travels on stdin, never on the command line."""

    name: str
    image: str
    labels: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    internal_port: int | None = None
    external_port: int | None = None
    command: Sequence[str] | None = None
    restart_policy: str = "unless-stopped"
    memory: str | None = None
    cpus: float | None = None
    network: str | None = None
    mounts: Sequence[Mount] = ()


def env_file(env: Mapping[str, str]) -> bytes:
    """Docker's env-file format: KEY=VALUE per line, the value taken literally (no quoting)."""
    return "".join(f"{k}={v}\n" for k, v in env.items()).encode()


def run(spec: ContainerSpec) -> Command:
    argv = [
        "docker",
        "run",
        "--detach",
        "--name",
        spec.name,
        "--env-file",
        "/dev/stdin",
        "--restart",
        spec.restart_policy,
    ]
    for key, value in sorted(spec.labels.items()):
        argv += ["--label", f"{key}={value}"]
    if spec.network:
        argv += ["--network", spec.network]
    if spec.external_port is not None and spec.internal_port is not None:
        argv += ["--publish", f"{spec.external_port}:{spec.internal_port}"]
    for mount in spec.mounts:
        argv += ["--mount", mount.option()]
    if spec.memory:
        argv += ["--memory", spec.memory]
    if spec.cpus:
        argv += ["--cpus", f"{spec.cpus:g}"]
    # The image is validated at the edge (no leading "-"); docker run takes no "--" before it.
    argv.append(spec.image)
    argv += list(spec.command or [])
    return Command(tuple(argv), timeout=120, stdin=env_file(spec.env))


def image_inspect(ref: str) -> Command:
    return Command.of(
        "docker", "image", "inspect", "--format", "{{json .}}", "--", ref, timeout=30, check=False
    )


def pull(ref: str) -> Command:
    return Command.of("docker", "pull", "--", ref, timeout=900)


def manifest_inspect(ref: str) -> Command:
    """Ask the registry whether it has `ref`, without pulling it (the docker CLI asks)."""
    return Command.of("docker", "manifest", "inspect", "--", ref, timeout=30, check=False)


def load() -> Command:
    return Command.of("docker", "load", timeout=900)


def save(ref: str) -> Command:
    return Command.of("docker", "save", "--", ref, timeout=900)


def tag(source: str, target: str) -> Command:
    return Command.of("docker", "tag", source, target, timeout=30)


def push(ref: str) -> Command:
    return Command.of("docker", "push", "--", ref, timeout=900)


def untag(ref: str) -> Command:
    """Remove one tag (the image stays while another tag or a container holds it)."""
    return Command.of("docker", "image", "rm", "--no-prune", "--", ref, timeout=60, check=False)


def inspect(name: str) -> Command:
    return Command.of(
        "docker",
        "container",
        "inspect",
        "--format",
        "{{json .}}",
        "--",
        name,
        timeout=30,
        check=False,
    )


def inspect_format(name: str, template: str) -> Command:
    return Command.of(
        "docker", "inspect", "--format", template, "--", name, timeout=30, check=False
    )


def process_environ_host(pid: int) -> Command:
    """The main process's environment read on the host (root sees every process)."""
    return Command.of("cat", f"/proc/{pid}/environ", timeout=30, check=False)


def process_environ_exec(name: str) -> Command:
    """The same read from inside the container (needs a `cat` in the image)."""
    return Command.of(
        "docker", "exec", "--", name, "cat", "/proc/1/environ", timeout=30, check=False
    )


def volume_remove(name: str) -> Command:
    return Command.of("docker", "volume", "rm", "--", name, timeout=60, check=False)


def volume_list(prefix: str) -> Command:
    return Command.of(
        "docker",
        "volume",
        "ls",
        "--filter",
        f"name={prefix}",
        "--format",
        "{{.Name}}",
        timeout=30,
        check=False,
    )


def list_by_labels(labels: Mapping[str, str]) -> Command:
    """Containers carrying every one of these labels (docker ANDs label filters)."""
    filters = [arg for k, v in sorted(labels.items()) for arg in ("--filter", f"label={k}={v}")]
    return Command.of(
        "docker", "ps", "--all", "--no-trunc", *filters, "--format", "{{json .}}", timeout=30
    )


def remove(name: str) -> Command:
    return Command.of("docker", "rm", "--force", "--", name, timeout=60, check=False)


def stop(name: str, seconds: int = 10) -> Command:
    return Command.of("docker", "stop", "--time", str(seconds), "--", name, timeout=seconds + 30)


def stop_and_remove(name: str, seconds: int = 10) -> Command:
    """SIGTERM, the app's own shutdown for up to `seconds`, then removal: one round trip."""
    return Command(
        (
            "sh",
            "-c",
            'docker stop --time "$2" -- "$1" >/dev/null && docker rm -- "$1" >/dev/null',
            "sh",
            name,
            str(seconds),
        ),
        timeout=seconds + 60,
    )


def rename(name: str, new_name: str) -> Command:
    return Command.of("docker", "rename", "--", name, new_name, timeout=30)


def start(name: str) -> Command:
    return Command.of("docker", "start", "--", name, timeout=60)


def restart(name: str, seconds: int = 10) -> Command:
    return Command.of("docker", "restart", "--time", str(seconds), "--", name, timeout=seconds + 60)


def run_once(spec: ContainerSpec, timeout: float) -> Command:
    """A one-off container of a release (`docker run --rm`, attached): its output streamed, its
    exit status the command's; env on stdin like every run."""
    argv = ["docker", "run", "--rm", "--name", spec.name, "--env-file", "/dev/stdin"]
    for key, value in sorted(spec.labels.items()):
        argv += ["--label", f"{key}={value}"]
    if spec.network:
        argv += ["--network", spec.network]
    for mount in spec.mounts:
        argv += ["--mount", mount.option()]
    if spec.memory:
        argv += ["--memory", spec.memory]
    argv.append(spec.image)
    argv += list(spec.command or [])
    return Command(
        tuple(argv), timeout=timeout, stdin=env_file(spec.env), check=False, merge_stderr=True
    )


def exec_in(name: str, argv: Sequence[str], timeout: float) -> Command:
    """A one-off command in a running container; its output, stderr included, streamed."""
    return Command(
        ("docker", "exec", "--", name, *argv), timeout=timeout, check=False, merge_stderr=True
    )


def logs(name: str, tail: int, follow: bool = False, timestamps: bool = False) -> Command:
    argv = ["docker", "logs", "--tail", str(tail)]
    if follow:
        argv.append("--follow")
    if timestamps:
        argv.append("--timestamps")
    return Command(tuple([*argv, "--", name]), timeout=3600 if follow else 30, merge_stderr=True)


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?Z ")


def readable_stamp(line: str) -> str:
    """`docker logs --timestamps` writes nanoseconds; people read seconds, in UTC."""
    return _STAMP.sub(r"\1 \2 ", line, count=1)


@dataclass(frozen=True)
class ImageInfo:
    id: str
    repo_digests: list[str]
    repo_tags: list[str]


def parse_image(stdout: str) -> ImageInfo | None:
    text = stdout.strip()
    if not text:
        return None
    data: dict[str, Any] = json.loads(text.splitlines()[0])
    return ImageInfo(
        id=data["Id"],
        repo_digests=data.get("RepoDigests") or [],
        repo_tags=data.get("RepoTags") or [],
    )


@dataclass(frozen=True)
class ContainerState:
    id: str
    name: str
    image_id: str
    status: str  # created | running | exited | ...
    running: bool
    exit_code: int
    oom_killed: bool
    restart_count: int
    started_at: str
    pid: int
    ip_address: str | None
    labels: dict[str, str]
    config_env: list[str]
    ports: dict[str, Any]
    health_log: list[dict[str, Any]]


def parse_container(stdout: str) -> ContainerState | None:
    text = stdout.strip()
    if not text or text.startswith("[]"):
        return None
    data: dict[str, Any] = json.loads(text.splitlines()[0])
    state = data.get("State") or {}
    networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
    ip = next((n.get("IPAddress") for n in networks.values() if n.get("IPAddress")), None)
    return ContainerState(
        id=data["Id"],
        name=data["Name"].lstrip("/"),
        image_id=data["Image"],
        status=state.get("Status", "unknown"),
        running=bool(state.get("Running")),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        restart_count=int(data.get("RestartCount") or 0),
        started_at=state.get("StartedAt", ""),
        pid=int(state.get("Pid") or 0),
        ip_address=ip,
        labels=(data.get("Config") or {}).get("Labels") or {},
        config_env=(data.get("Config") or {}).get("Env") or [],
        ports=(data.get("NetworkSettings") or {}).get("Ports") or {},
        health_log=((state.get("Health") or {}).get("Log") or [])[-5:],
    )


def parse_ps(stdout: str) -> list[dict[str, Any]]:
    rows = []
    for line in stdout.splitlines():
        if line.strip():
            data = json.loads(line)
            labels = dict(
                p.split("=", 1) for p in str(data.get("Labels", "")).split(",") if "=" in p
            )
            rows.append(
                {
                    "id": data.get("ID", ""),
                    "name": data.get("Names", ""),
                    "state": data.get("State", ""),
                    "labels": labels,
                }
            )
    return rows


def names_registry(ref: str) -> bool:
    """Docker's rule: a first path part with a dot or a port, or localhost, is a registry."""
    first, sep, _ = ref.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")
