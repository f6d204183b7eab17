"""The lab itself: each host is a real, separate SSH + Docker machine, and leaves no trace."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh
import httpx
import pytest

from tests.support import images
from tests.support.fixtures import host_report
from tests.support.lab import CONTROL_DOCKER_SOCK, NETNS_DIR, Lab, LabHost, fingerprint

pytestmark = pytest.mark.e2e


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 10) -> httpx.Response:
    """GET with retries while the container starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def _password_run(host: LabHost, password: str, command: str) -> str:
    async with asyncssh.connect(
        host.address,
        port=host.ssh_port,
        username=host.password_user,
        password=password,
        known_hosts=str(host.known_hosts),
        client_keys=None,
        agent_path=None,
        preferred_auth="password",
    ) as conn:
        return str((await conn.run(command, check=True)).stdout)


def test_ssh_docker_reaches_the_hosts_own_daemon(lab_host: LabHost) -> None:
    out = lab_host.ssh("docker", "info", "--format", "{{.DockerRootDir}}").stdout.strip()
    control_info = [
        "docker",
        "-H",
        f"unix://{CONTROL_DOCKER_SOCK}",
        "info",
        "-f",
        "{{.DockerRootDir}}",
    ]
    control = subprocess.run(
        control_info, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == str(lab_host.data_root)
    assert out != control
    assert lab_host.address in lab_host.exec("ip", "-4", "-o", "addr", "show", "eth0").stdout


def test_sessions_do_not_run_the_machines_shell_start_up_files(lab_host: LabHost) -> None:
    # Root's ~/.bashrc here runs `pyenv init`, which waits on a lock that a killed session can
    # leave behind; lab sessions get their own empty HOME so that can never stall them.
    assert lab_host.ssh("echo $HOME").stdout.strip() == str(lab_host.home)


def test_passphrase_key_logs_in(lab_host: LabHost, tmp_path: Path) -> None:
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{lab_host.key_passphrase}'\n")
    askpass.chmod(0o700)
    args = lab_host.ssh_args("echo", "ok", key=lab_host.client_key_encrypted)
    args[1:1] = ["-o", "BatchMode=no"]  # first value wins: let ssh ask askpass
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=30)
    assert result.stdout.strip() == "ok", result.stderr


def test_password_login_follows_the_switch(lab_host_factory: Callable[..., LabHost]) -> None:
    host = lab_host_factory(password_auth=True)
    out = asyncio.run(
        _password_run(host, host.password, "docker info --format '{{.DockerRootDir}}'")
    )
    assert out.strip() == str(host.data_root)
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(_password_run(host, "wrong-password", "true"))

    host.set_password_auth(False)
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(_password_run(host, host.password, "true"))
    assert host.ssh("echo", "key-still-works").stdout.strip() == "key-still-works"


def test_published_port_is_on_the_host_address_only(
    lab_host: LabHost, test_images: dict[str, str]
) -> None:
    images.copy_image(images.WEB_V1, lab_host.docker_host)
    port = _free_local_port()
    cid = lab_host.docker("run", "-d", "-p", f"{port}:80", images.WEB_V1).stdout.strip()
    try:
        response = _get(f"http://{lab_host.address}:{port}/version")
        assert (response.status_code, response.text) == (200, "v1")
        assert _get(f"http://{lab_host.address}:{port}/").status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/version", timeout=2)
    finally:
        lab_host.docker("rm", "-f", cid)


def test_images_behave(lab_host: LabHost, test_images: dict[str, str]) -> None:
    assert test_images[images.WEB_V1] != test_images[images.WEB_V2]
    images.copy_images(
        [images.CRASH, images.UNHEALTHY, images.UNHEALTHY_HTTP500], lab_host.docker_host
    )
    crash = lab_host.docker("run", "--rm", images.CRASH, check=False)
    assert crash.returncode == 3
    idle = lab_host.docker("run", "-d", "-p", "8181:80", images.UNHEALTHY).stdout.strip()
    http500 = lab_host.docker("run", "-d", "-p", "8182:80", images.UNHEALTHY_HTTP500).stdout.strip()
    try:
        assert _get(f"http://{lab_host.address}:8182/").status_code == 500
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://{lab_host.address}:8181/", timeout=2)
        assert lab_host.docker("inspect", "-f", "{{.State.Running}}", idle).stdout.strip() == "true"
    finally:
        started = time.monotonic()
        lab_host.docker("rm", "-f", idle, http500)
        lab_host.docker("run", "-d", "--name", "stop-check", images.UNHEALTHY)
        lab_host.docker("stop", "stop-check")  # PID 1 forwards SIGTERM: no 10 s stop timeout
        lab_host.docker("rm", "stop-check")
        assert time.monotonic() - started < 5


def test_regenerated_host_key_is_detected(
    lab_host_factory: Callable[..., LabHost], tmp_path: Path
) -> None:
    host = lab_host_factory()
    old_line = host.host_public_key
    new_line = host.regenerate_host_key()
    assert fingerprint(new_line) != fingerprint(old_line)
    assert host.host_key_fingerprint == fingerprint(new_line)

    pinned_old = tmp_path / "known_hosts"
    pinned_old.write_text(f"{host.address} {old_line}\n")
    args = host.ssh_args("true")
    args[1:1] = ["-o", f"UserKnownHostsFile={pinned_old}"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr
    assert host.ssh("true").returncode == 0  # host.known_hosts follows the new key


def test_stopped_sshd_is_unreachable(lab_host_factory: Callable[..., LabHost]) -> None:
    host = lab_host_factory()
    args = host.ssh_args("echo started; sleep 60")
    session = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert session.stdout is not None
    assert session.stdout.readline() == "started\n"

    host.stop_sshd()

    assert session.wait(10) == 255  # open sessions are dropped too
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host.address, host.ssh_port), timeout=2).close()
    host.start_sshd()
    assert host.ssh("true").returncode == 0


def test_teardown_leaves_nothing_behind(test_images: dict[str, str]) -> None:
    lab = Lab()
    host = lab.add_host(password_auth=True)
    images.copy_image(images.WEB_V1, host.docker_host)
    host.docker("run", "-d", "-p", "8080:80", images.WEB_V1)
    assert host.pids()

    lab.teardown()

    assert not host.pids()
    assert not (NETNS_DIR / host.netns).exists()
    assert not Path(f"/sys/class/net/{host.veth}").exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{host.cgroup_parent}"))
    assert not lab.root.exists()
    assert lab.password_user not in Path("/etc/passwd").read_text()
    assert host.name not in Path("/proc/self/mountinfo").read_text()


def test_a_failing_e2e_test_reports_the_hosts_logs(lab_host: LabHost) -> None:
    images.build_images(lab_host.docker_host, [images.WEB_V1])
    lab_host.docker("run", "--detach", "--name", "dm-report-probe", images.WEB_V1)
    try:
        report = host_report(lab_host)
    finally:
        lab_host.docker("rm", "--force", "dm-report-probe", check=False)
    assert f"=== {lab_host.name}" in report
    assert "--- sshd.log" in report and "Server listening" in report
    assert "--- dockerd.log" in report
    assert "dm-report-probe" in report and "dm-test web v1 starting" in report
