"""Real test hosts on one machine: each a network namespace with its own sshd and dockerd.

Why: deploymate deploys over SSH to Docker hosts; the tests drive real ones instead of mocks.
Every name (netns, veth, cgroup, dirs, user) carries a random run id so runs on a reused
machine never collide, and `down` can find leftovers by prefix.

By hand:  python -m tests.support.lab up 2   /   python -m tests.support.lab down [--all]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import fcntl
import functools
import hashlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PREFIX = "dmlab"
BASE_DIR = Path("/tmp")
NETNS_DIR = Path("/var/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
LOCK_FILE = BASE_DIR / f"{PREFIX}.lock"
# Hosts get a /30 each from a run-specific /24 of 198.18.0.0/16 (RFC 2544 benchmarking range);
# the Docker bridges inside the namespaces use 198.19.0.0/16, private to each namespace.
HOST_NET = ipaddress.IPv4Network("198.18.0.0/16")
DOCKER_BIP = "198.19.0.1/24"
DOCKER_POOL = "base=198.19.128.0/17,size=24"
MAX_HOSTS = 64
CONTROL_DOCKER_SOCK = Path("/var/run/docker.sock")
CONTROL_DOCKER_LOG = Path("/var/log/deploymate-test-dockerd.log")
REQUIRED_BINARIES = (
    "ip",
    "nsenter",
    "dockerd",
    "containerd",
    "runc",
    "docker",
    "sshd",
    "ssh",
    "ssh-keygen",
    "useradd",
    "userdel",
    "chpasswd",
    "iptables",
)
_RUN_RE = re.compile(rf"^{PREFIX}-?([0-9a-f]{{6}})(?:-?h(\d+))?$")
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class LabError(RuntimeError):
    """A lab host could not be set up; the message names the step and includes its log."""


def missing_parts() -> list[str]:
    """Name every machine part the lab needs but lacks (so a test can fail saying which)."""
    missing = [] if os.geteuid() == 0 else ["root privileges (euid 0)"]
    path = f"{os.environ.get('PATH', '')}:{_SBIN_PATH}"
    missing += [f"`{b}` binary" for b in REQUIRED_BINARIES if not shutil.which(b, path=path)]
    return missing


def _run(
    args: Sequence[str], *, check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), check=check, capture_output=True, text=True, input=input, timeout=timeout
    )


def _docker_ping(sock: Path) -> bool:
    """True when a dockerd answers on this unix socket (cheaper than running `docker`)."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = s.recv(256).split(b"\r\n", 1)[0]
    except OSError:
        return False
    return status.startswith(b"HTTP/1.") and b" 200 " in status


def _ssh_banner(address: str, port: int) -> bool:
    """True when an sshd greets on address:port."""
    try:
        with socket.create_connection((address, port), timeout=1) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _read(path: Path) -> str:
    """File text, or "" when it is gone (files of exiting processes, half-made hosts)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _log_tail(path: Path, lines: int = 20) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])


def _wait(
    ready: Callable[[], bool],
    what: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll `ready()` until true (no fixed sleeps); fail early with the log if the daemon died."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not ready():
        if proc is not None and log is not None and proc.poll() is not None:
            raise LabError(f"{what} exited with {proc.returncode}:\n{_log_tail(log)}")
        if time.monotonic() > deadline:
            raise LabError(f"{what} not ready after {timeout}s:\n{_log_tail(log) if log else ''}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def _spawn(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a daemon detached from us (own session) so `up` can exit and leave it running."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{_SBIN_PATH}"},
        )


def _proc_start(pid: int) -> int | None:
    """Start time of a live (non-zombie) process, to tell a pid from a reused one."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in "ZX" else int(fields[19])


def fingerprint(public_key_line: str) -> str:
    """OpenSSH-style SHA256 fingerprint of an `ssh-ed25519 AAAA...` line."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# ---------------------------------------------------------------- teardown helpers


def _find_pids(markers: Sequence[str], netns_ino: int | None, cgroup: str) -> set[int]:
    """Pids belonging to a host: in its netns, its dir in the cmdline, or in its cgroup."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if _proc_start(int(entry.name)) is None:
                continue
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            groups = [line.split(":", 2)[-1] for line in (entry / "cgroup").read_text().split()]
            if (
                any(m in cmdline for m in markers)
                or (netns_ino is not None and os.stat(entry / "ns" / "net").st_ino == netns_ino)
                or any(g == f"/{cgroup}" or g.startswith(f"/{cgroup}/") for g in groups)
            ):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def _kill_all(markers: Sequence[str], netns_ino: int | None, cgroup: str) -> None:
    """SIGKILL everything of a host until nothing is left (containers go first, via cgroup)."""
    deadline = time.monotonic() + 10
    while (pids := _find_pids(markers, netns_ino, cgroup)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


_libc = ctypes.CDLL(None, use_errno=True)


def _unmount_under(directory: Path) -> bool:
    """Detach every mount below `directory` (overlays, netns binds); True when none remain."""

    def mounts() -> list[str]:
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == str(directory) or point.startswith(f"{directory}/"):
                points.append(point)
        return sorted(points, key=len, reverse=True)

    for point in mounts():
        _libc.umount2(point.encode(), 2)  # MNT_DETACH
    return not mounts()


def _remove_cgroups(name: str) -> None:
    for base in [CGROUP_ROOT, *CGROUP_ROOT.iterdir()] if CGROUP_ROOT.is_dir() else []:
        top = base / name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


def _destroy_host(run_id: str, index: int, directory: Path) -> None:
    """Remove everything a host may have left; best effort, never raises."""
    name = f"{PREFIX}-{run_id}-h{index}"
    netns = NETNS_DIR / name
    try:
        ino: int | None = os.stat(netns).st_ino
    except OSError:
        ino = None
    with contextlib.suppress(Exception):
        _kill_all([f"{directory}/"], ino, name)
    with contextlib.suppress(Exception):
        mounts_gone = _unmount_under(directory)
        _remove_cgroups(name)
        _run(["ip", "netns", "delete", name], check=False)
        _run(["ip", "link", "delete", f"{PREFIX}{run_id}h{index}"], check=False)
        if mounts_gone:
            shutil.rmtree(directory, ignore_errors=True)


def _delete_user(name: str) -> None:
    for _ in range(20):  # useradd/userdel of concurrent runs contend for the passwd lock
        if _run(["userdel", "--remove", name], check=False).returncode in (0, 6):
            return
        time.sleep(0.1)


# ---------------------------------------------------------------- hosts


class LabHost:
    """One test host: netns `name` at `address`, its sshd on port 22 and its dockerd."""

    ssh_port = 22
    username = "root"

    def __init__(
        self, lab: Lab, index: int, *, password_auth: bool = False, disk_mb: int | None = None
    ) -> None:
        self.lab = lab
        self.disk_mb = disk_mb  # a tmpfs of that size under Docker's data root (disk-full tests)
        self.index = index
        self.name = f"{PREFIX}-{lab.run_id}-h{index}"
        self.netns = self.name
        self.netns_path = NETNS_DIR / self.name
        self.cgroup_parent = self.name
        self.veth = f"{PREFIX}{lab.run_id}h{index}"
        net = list(lab.subnet.subnets(new_prefix=30))[index]
        self.gateway = str(net[1])  # root-namespace end of the veth pair
        self.address = str(net[2])
        self.dir = lab.root / f"h{index}"
        self.docker_sock = self.dir / "docker.sock"
        self.docker_host = f"unix://{self.docker_sock}"
        self.data_root = self.dir / "docker"
        self.exec_root = self.dir / "run"
        self.sshd_config = self.dir / "sshd_config"
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.client_key = self.dir / "id_ed25519"
        self.client_key_encrypted = self.dir / "id_ed25519_passphrase"
        self.key_passphrase = lab.key_passphrase
        self.authorized_keys = self.dir / "authorized_keys.root"
        self.known_hosts = self.dir / "known_hosts"
        self.home = self.dir / "home"  # HOME of lab sessions (see _write_sshd_config)
        self.password_auth = password_auth
        self.sshd_pid: int | None = None
        self.dockerd_pid: int | None = None
        self.startup_seconds = 0.0
        self.teardown_seconds = 0.0
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    def __repr__(self) -> str:
        return f"<LabHost {self.name} {self.address}>"

    @property
    def password_user(self) -> str:
        """Local user for password-credential tests (only accepted when password_auth)."""
        return self.lab.password_user

    @property
    def password(self) -> str:
        return self.lab.password

    @property
    def host_public_key(self) -> str:
        """Current host key as `ssh-ed25519 AAAA...` (what deploymate pins)."""
        return " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])

    @property
    def host_key_fingerprint(self) -> str:
        return fingerprint(self.host_public_key)

    @property
    def known_hosts_line(self) -> str:
        return f"{self.address} {self.host_public_key}"

    # -- life cycle

    def start(self) -> None:
        """Create netns + veth, keys and configs, then start dockerd and sshd in parallel."""
        started = time.monotonic()
        self.dir.mkdir(parents=True)
        self._network()
        if self.disk_mb is not None:
            self.data_root.mkdir(parents=True)
            size = f"size={self.disk_mb}m"
            _run(["mount", "-t", "tmpfs", "-o", size, "dm-lab-disk", str(self.data_root)])
        self.dockerd_pid = self._start_dockerd()
        for key, passphrase in (
            (self.host_key, ""),
            (self.client_key, ""),
            (self.client_key_encrypted, self.key_passphrase),
        ):
            self._keygen(key, passphrase)
        self.authorized_keys.write_text(
            Path(f"{self.client_key}.pub").read_text()
            + Path(f"{self.client_key_encrypted}.pub").read_text()
        )
        self.known_hosts.write_text(self.known_hosts_line + "\n")
        self.start_sshd()
        dockerd, log = self._procs[self.dockerd_pid], self.dir / "dockerd.log"
        _wait(lambda: _docker_ping(self.docker_sock), "dockerd", 60, dockerd, log)
        self.startup_seconds = time.monotonic() - started

    def _network(self) -> None:
        _run(["ip", "netns", "add", self.netns])
        batch = [
            f"link add {self.veth} type veth peer name eth0 netns {self.netns}",
            f"addr add {self.gateway}/30 dev {self.veth}",
            f"link set {self.veth} up",
        ]
        inner = [f"addr add {self.address}/30 dev eth0", "link set eth0 up", "link set lo up"]
        _run(["ip", "-batch", "-"], input="\n".join(batch) + "\n")
        _run(["ip", "-n", self.netns, "-batch", "-"], input="\n".join(inner) + "\n")

    def _keygen(self, path: Path, passphrase: str) -> None:
        for p in (path, Path(f"{path}.pub")):
            p.unlink(missing_ok=True)
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-C", self.name, "-f", str(path)]
        _run([*keygen, "-N", passphrase])

    def _nsenter(self) -> list[str]:
        return ["nsenter", f"--net={self.netns_path}"]

    def _start_dockerd(self) -> int:
        config = self.dir / "daemon.json"  # keeps /etc/docker/daemon.json and key.json out
        config.write_text("{}\n")
        args = [
            *self._nsenter(),
            "dockerd",
            f"--config-file={config}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.dir / 'docker.pid'}",
            f"--host={self.docker_host}",
            f"--bip={DOCKER_BIP}",
            f"--default-address-pool={DOCKER_POOL}",
            f"--cgroup-parent=/{self.cgroup_parent}",
            "--log-level=warn",
        ]
        proc = _spawn(args, self.dir / "dockerd.log")
        self._procs[proc.pid] = proc
        return proc.pid

    def _write_sshd_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.sshd_config.write_text(
            "\n".join(
                [
                    "ListenAddress 0.0.0.0",
                    f"Port {self.ssh_port}",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.dir}/authorized_keys.%u",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    f"PasswordAuthentication {'yes' if self.password_auth else 'no'}",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",  # password check against /etc/shadow, no PAM session modules
                    "StrictModes no",  # the lab dir lives under world-writable /tmp
                    "UseDNS no",
                    "PrintMotd no",
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "LogLevel VERBOSE",
                    # Sessions talk to this host's dockerd, not the control host's, and get an
                    # empty HOME: the machine's own ~/.bashrc (pyenv init takes a lock under
                    # ~/.pyenv) must not run in lab sessions, where teardown may kill a shell.
                    f"SetEnv DOCKER_HOST={self.docker_host} HOME={self.home}",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def start_sshd(self) -> None:
        """(Re)start this host's sshd with the current config and wait for its banner."""
        if self.password_auth:
            self.lab.ensure_password_user()
        self._write_sshd_config()
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege-separation dir
        log = self.dir / "sshd.log"
        sshd = shutil.which("sshd", path=_SBIN_PATH) or "sshd"  # sshd insists on a full path
        proc = _spawn([*self._nsenter(), sshd, "-D", "-e", "-f", str(self.sshd_config)], log)
        self._procs[proc.pid] = proc
        self.sshd_pid = proc.pid
        self.lab.save()
        _wait(lambda: _ssh_banner(self.address, self.ssh_port), "sshd", 30, proc, log)

    def stop_sshd(self) -> None:
        """Stop sshd and drop its sessions, so the host looks unreachable; dockerd stays up."""
        if self.sshd_pid is None:
            return
        sessions = [p for p in self.pids() if _read(Path(f"/proc/{p}/comm")) == "sshd\n"]
        for pid in sessions:  # the listener and per-connection processes
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        proc = self._procs.pop(self.sshd_pid, None)
        if proc is not None:
            proc.wait(10)
        self.sshd_pid = None
        self.lab.save()
        _wait(lambda: not _ssh_banner(self.address, self.ssh_port), "sshd stop", 10)

    def restart_dockerd(self) -> None:
        """Stop dockerd as a service manager would (SIGTERM: its containers stop) and start it
        again; containers with a restart policy come back."""
        if self.dockerd_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.dockerd_pid, signal.SIGTERM)
            proc = self._procs.pop(self.dockerd_pid, None)
            if proc is not None:
                proc.wait(60)
        self.dockerd_pid = self._start_dockerd()
        self.lab.save()
        dockerd, log = self._procs[self.dockerd_pid], self.dir / "dockerd.log"
        _wait(lambda: _docker_ping(self.docker_sock), "dockerd", 60, dockerd, log)

    def restart_sshd(self) -> None:
        self.stop_sshd()
        self.start_sshd()

    def set_password_auth(self, enabled: bool) -> None:
        """Switch PasswordAuthentication and restart sshd."""
        self.password_auth = enabled
        self.restart_sshd()

    def regenerate_host_key(self) -> str:
        """New host key + sshd restart, for "host key changed" tests; returns the new line.

        `known_hosts` is rewritten with the new key; keep `host_public_key` from before if
        a test needs the old pin.
        """
        self._keygen(self.host_key, "")
        self.known_hosts.write_text(self.known_hosts_line + "\n")
        self.restart_sshd()
        return self.host_public_key

    def teardown(self) -> None:
        """Kill sshd, dockerd, containerd, shims and containers; delete netns, veth, dirs."""
        started = time.monotonic()
        _destroy_host(self.lab.run_id, self.index, self.dir)
        for proc in self._procs.values():  # reap our children
            with contextlib.suppress(Exception):
                proc.wait(5)
        self._procs.clear()
        self.sshd_pid = self.dockerd_pid = None
        self.teardown_seconds = time.monotonic() - started

    # -- conveniences

    def pids(self) -> set[int]:
        """Live processes of this host (daemons, sessions, shims, containers)."""
        try:
            ino: int | None = os.stat(self.netns_path).st_ino
        except OSError:
            ino = None
        return _find_pids([f"{self.dir}/"], ino, self.cgroup_parent)

    def exec(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside this host's network namespace."""
        return _run([*self._nsenter(), *args], check=check, input=input, timeout=timeout)

    def docker(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this host's daemon."""
        return _run(
            ["docker", "-H", self.docker_host, *args], check=check, input=input, timeout=timeout
        )

    def ssh_args(self, *command: str, user: str = "root", key: Path | None = None) -> list[str]:
        """System `ssh` argument list with this host's key and strictly pinned host key."""
        return [
            "ssh",
            "-F", "/dev/null",
            "-i", str(key or self.client_key),
            "-p", str(self.ssh_port),
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "ConnectTimeout=5",
            f"{user}@{self.address}",
            *command,
        ]  # fmt: skip

    def ssh(
        self, *command: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on the host over SSH as root with the client key."""
        return _run(self.ssh_args(*command), check=check, timeout=timeout)

    def to_state(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "address": self.address,
            "gateway": self.gateway,
            "ssh_port": self.ssh_port,
            "docker_host": self.docker_host,
            "dir": str(self.dir),
            "client_key": str(self.client_key),
            "client_key_encrypted": str(self.client_key_encrypted),
            "known_hosts": str(self.known_hosts),
            "host_public_key": _read(Path(f"{self.host_key}.pub")).strip() or None,
            "password_auth": self.password_auth,
            "sshd_pid": self.sshd_pid,
            "dockerd_pid": self.dockerd_pid,
            "startup_seconds": round(self.startup_seconds, 3),
        }


# ---------------------------------------------------------------- the lab


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialise subnet choice and control-dockerd start between concurrent runs."""
    with LOCK_FILE.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


CONTROL_DOCKER_NET = (
    "--bip",
    "198.19.254.1/24",
    "--default-address-pool",
    "base=198.19.240.0/21,size=24",
)


def ensure_control_dockerd(timeout: float = 60) -> None:
    """Start the control host's own dockerd when none answers; it stays running.

    Its bridge and address pool are in 198.19.0.0/16 (benchmarking range) so that health checks
    to local containers never send traffic to a private-range address.
    """
    if _docker_ping(CONTROL_DOCKER_SOCK):
        return
    with _machine_lock():
        if _docker_ping(CONTROL_DOCKER_SOCK):
            return
        proc = _spawn(["dockerd", *CONTROL_DOCKER_NET], CONTROL_DOCKER_LOG)
        ready = functools.partial(_docker_ping, CONTROL_DOCKER_SOCK)
        _wait(ready, "control dockerd", timeout, proc, CONTROL_DOCKER_LOG)


def _used_subnets() -> set[str]:
    """/24s of 198.18.0.0/16 taken by addresses here or by recorded labs (their /24s)."""
    out = _run(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    addresses = re.findall(r"inet (198\.18\.\d+\.\d+)/", out)
    used = {str(ipaddress.ip_network(f"{a}/24", strict=False)) for a in addresses}
    for state in BASE_DIR.glob(f"{PREFIX}-*/state.json"):
        with contextlib.suppress(Exception):
            used.add(json.loads(state.read_text())["subnet"])
    return used


class Lab:
    """A set of lab hosts sharing one run id, subnet, password user and state file."""

    def __init__(self, *, owned: bool = True, control_docker: bool = True) -> None:
        """`owned`: the lab lives as long as this process (`down` leaves it alone meanwhile)."""
        if missing := missing_parts():
            raise LabError("lab needs: " + ", ".join(missing))
        if control_docker:
            ensure_control_dockerd()
        self.run_id = secrets.token_hex(3)
        self.root = BASE_DIR / f"{PREFIX}-{self.run_id}"
        self.state_file = self.root / "state.json"
        self.password_user = f"{PREFIX}{self.run_id}"
        self.password = secrets.token_urlsafe(12)
        self.key_passphrase = secrets.token_urlsafe(12)
        self.hosts: list[LabHost] = []
        self.timings: list[tuple[str, float, float]] = []  # (host, start-up s, tear-down s)
        self._owner = (os.getpid(), _proc_start(os.getpid())) if owned else None
        self._user_created = False
        self._lock = threading.RLock()
        self._next_index = 0
        with _machine_lock():
            used = _used_subnets()
            free = [n for n in HOST_NET.subnets(new_prefix=24) if str(n) not in used]
            self.subnet: ipaddress.IPv4Network = random.choice(free)
            self.root.mkdir(mode=0o755)
            self.save()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def save(self) -> None:
        """Record the lab in its JSON state file, for `down` from another process."""
        with self._lock:
            state = {
                "run_id": self.run_id,
                "subnet": str(self.subnet),
                "owner": self._owner,
                "password_user": self.password_user,
                "password": self.password,
                "key_passphrase": self.key_passphrase,
                "hosts": [h.to_state() for h in self.hosts],
            }
            tmp = self.state_file.with_suffix(".tmp")
            tmp.touch(mode=0o600)
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(self.state_file)

    def ensure_password_user(self) -> None:
        """Create this run's password-auth user once (docker group: it may use the socket)."""
        with self._lock:
            if self._user_created:
                return
            _run(["groupadd", "-f", "docker"])
            home = self.root / "home"
            for attempt in range(20):  # concurrent runs contend for the passwd lock
                useradd = ["useradd", "-m", "-d", str(home), "-s", "/bin/sh", "-G", "docker"]
                result = _run([*useradd, self.password_user], check=False)
                if result.returncode == 0:
                    break
                if attempt == 19:
                    raise LabError(f"useradd {self.password_user}: {result.stderr}")
                time.sleep(0.1)
            self._user_created = True
            self.save()
            _run(["chpasswd"], input=f"{self.password_user}:{self.password}\n")

    def add_host(self, *, password_auth: bool = False, disk_mb: int | None = None) -> LabHost:
        """Start one more host and return it once sshd and dockerd both answer."""
        return self.add_hosts(1, password_auth=password_auth, disk_mb=disk_mb)[0]

    def add_hosts(
        self, count: int, *, password_auth: bool = False, disk_mb: int | None = None
    ) -> list[LabHost]:
        """Start `count` hosts in parallel."""
        with self._lock:
            if self._next_index + count > MAX_HOSTS:
                raise LabError(f"at most {MAX_HOSTS} hosts per lab")
            hosts = [
                LabHost(self, self._next_index + i, password_auth=password_auth, disk_mb=disk_mb)
                for i in range(count)
            ]
            self._next_index += count
            self.hosts += hosts
            self.save()
        with ThreadPoolExecutor(max_workers=max(count, 1)) as pool:
            futures = [pool.submit(h.start) for h in hosts]
            errors = [f.exception() for f in futures]
        self.save()
        if failed := [e for e in errors if e is not None]:
            for host in hosts:
                self.remove_host(host)
            raise failed[0]
        return hosts

    def remove_host(self, host: LabHost) -> None:
        host.teardown()
        with self._lock:
            self.timings.append((host.name, host.startup_seconds, host.teardown_seconds))
            if host in self.hosts:
                self.hosts.remove(host)
            self.save()

    def teardown(self) -> None:
        """Remove all hosts (in parallel), the password user and the lab dir; never raises."""
        with ThreadPoolExecutor(max_workers=max(len(self.hosts), 1)) as pool:
            list(pool.map(LabHost.teardown, self.hosts))
        self.timings += [(h.name, h.startup_seconds, h.teardown_seconds) for h in self.hosts]
        self.hosts.clear()
        _destroy_run(self.run_id)


def _destroy_run(run_id: str) -> None:
    """Remove a run's user, cgroups and dir (after its hosts); never raises."""
    with contextlib.suppress(Exception):
        if _user_exists(f"{PREFIX}{run_id}"):
            _delete_user(f"{PREFIX}{run_id}")
        root = BASE_DIR / f"{PREFIX}-{run_id}"
        if _unmount_under(root):
            shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    return any(
        line.split(":", 1)[0] == name for line in Path("/etc/passwd").read_text().splitlines()
    )


def _owner_alive(state: dict[str, Any]) -> bool:
    owner = state.get("owner")
    return owner is not None and _proc_start(owner[0]) == owner[1]


def down(*, include_live: bool = False) -> list[str]:
    """Tear down recorded labs and any `dmlab` leftovers; returns what was removed (timed).

    Labs whose owning process (a pytest session) still runs are left alone unless
    `include_live`, so one session's `down` does not pull hosts from under another.
    """
    hosts: set[tuple[str, int]] = set()
    runs: set[str] = set()
    with _machine_lock():  # a new lab's dir and state file appear together under this lock
        live: set[str] = set()
        for state_file in BASE_DIR.glob(f"{PREFIX}-*/state.json"):
            with contextlib.suppress(Exception):
                state = json.loads(state_file.read_text())
                if _owner_alive(state) and not include_live:
                    live.add(state["run_id"])
        names = [p.name for p in NETNS_DIR.glob(f"{PREFIX}-*")]
        names += [p.name for p in Path("/sys/class/net").glob(f"{PREFIX}*")]
        names += [p.name for p in CGROUP_ROOT.glob(f"*/{PREFIX}-*")]
        names += [p.name for p in BASE_DIR.glob(f"{PREFIX}-*")]
        names += [p.parent.name + "-" + p.name for p in BASE_DIR.glob(f"{PREFIX}-*/h*")]
        names += [line.split(":", 1)[0] for line in _read(Path("/etc/passwd")).splitlines()]
    for name in names:
        if (m := _RUN_RE.match(name)) and m.group(1) not in live:
            runs.add(m.group(1))
            if m.group(2) is not None:
                hosts.add((m.group(1), int(m.group(2))))

    def destroy(host: tuple[str, int]) -> str:
        started = time.monotonic()
        _destroy_host(*host, BASE_DIR / f"{PREFIX}-{host[0]}" / f"h{host[1]}")
        return f"{PREFIX}-{host[0]}-h{host[1]} ({time.monotonic() - started:.2f}s)"

    with ThreadPoolExecutor(max_workers=max(len(hosts), 1)) as pool:
        removed = sorted(pool.map(destroy, hosts))
    for run_id in runs:
        _destroy_run(run_id)
    return removed + sorted(f"{PREFIX}-{r}" for r in runs)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: `up N [--password-auth]` leaves hosts running; `down [--all]` removes them."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.lab")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start lab hosts and leave them running")
    up.add_argument("count", type=int, nargs="?", default=1)
    up.add_argument("--password-auth", action="store_true")
    dn = sub.add_parser("down", help="tear down recorded labs and leftovers")
    dn.add_argument("--all", action="store_true", help="also labs of still-running sessions")
    args = parser.parse_args(argv)
    if args.command == "down":
        started = time.monotonic()
        removed = down(include_live=args.all)
        print("\n".join(f"removed {name}" for name in removed) or "nothing to remove")
        print(f"down took {time.monotonic() - started:.2f}s")
        return 0
    lab = Lab(owned=False)
    try:
        lab.add_hosts(args.count, password_auth=args.password_auth)
    except BaseException:
        lab.teardown()
        raise
    print(f"lab {lab.run_id}: subnet {lab.subnet}, state {lab.state_file}")
    print(f"  client key passphrase: {lab.key_passphrase}")
    if args.password_auth:
        print(f"  password login: {lab.password_user} / {lab.password}")
    for h in lab.hosts:
        print(f"{h.name}: address {h.address}, ssh port {h.ssh_port}")
        print(f"  started in      {h.startup_seconds:.2f}s")
        print(f"  docker socket   {h.docker_sock}  (DOCKER_HOST={h.docker_host})")
        print(f"  client key      {h.client_key}  (with passphrase: {h.client_key_encrypted})")
        print(f"  known_hosts     {h.known_hosts}")
        print(f"  try: {' '.join(h.ssh_args('docker', 'info'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
