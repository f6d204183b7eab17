"""A real image registry (Debian's `docker-registry`) inside a lab host, with htpasswd auth.

It listens on the host's loopback, 127.0.0.1:5000, which Docker treats as an insecure
(plain HTTP) registry by default, so the lab host's dockerd pulls from it as from any registry.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.lab import LabHost

ADDRESS = "127.0.0.1:5000"


@dataclass(frozen=True)
class LabRegistry:
    host: str
    username: str
    password: str


def _ready(lab_host: LabHost) -> bool:
    probe = lab_host.exec(
        "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5000", check=False, timeout=5
    )  # no curl needed: bash's /dev/tcp
    return probe.returncode == 0


@contextmanager
def lab_registry(
    lab_host: LabHost, directory: Path, username: str, password: str
) -> Iterator[LabRegistry]:
    for part in ("docker-registry", "htpasswd"):
        if shutil.which(part) is None:
            raise RuntimeError(
                f"{part} is missing: install Debian's docker-registry and apache2-utils"
            )
    directory.mkdir(parents=True, exist_ok=True)
    htpasswd = directory / "htpasswd"
    subprocess.run(
        ["htpasswd", "-Bbc", str(htpasswd), username, password], check=True, capture_output=True
    )
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {directory / 'data'}}}}}\n"
        f"http: {{addr: '{ADDRESS}'}}\n"
        f"auth: {{htpasswd: {{realm: lab, path: {htpasswd}}}}}\n"
        "log: {level: warn}\n"
    )
    log = (directory / "registry.log").open("wb")
    proc = subprocess.Popen(
        ["nsenter", f"--net={lab_host.netns_path}", "docker-registry", "serve", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while not _ready(lab_host):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "the lab registry did not start: "
                    + (directory / "registry.log").read_text()[-500:]
                )
            time.sleep(0.1)
        yield LabRegistry(ADDRESS, username, password)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def push(lab_host: LabHost, registry: LabRegistry, source: str, ref: str, config_dir: Path) -> None:
    """Push `source` (on the lab host) as `ref`, logged in with a throw-away client config; the
    tag is removed afterwards so a deploy must pull it."""
    env = ["env", f"DOCKER_CONFIG={config_dir}", "docker", "-H", lab_host.docker_host]
    subprocess.run(
        [*env, "login", "--username", registry.username, "--password-stdin", registry.host],
        input=registry.password,
        text=True,
        check=True,
        capture_output=True,
    )
    lab_host.docker("tag", source, ref)
    subprocess.run([*env, "push", ref], check=True, capture_output=True, timeout=120)
    lab_host.docker("rmi", ref)
    shutil.rmtree(config_dir, ignore_errors=True)
