"""SSH executor (asyncssh) with pinned host keys, reused connections and line streaming."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncssh

from deploymate.runtime.errors import (
    AuthenticationFailed,
    CommandTimeout,
    HostKeyChanged,
    RuntimeFailure,
    Unreachable,
)
from deploymate.runtime.executor import ByteSource, Command, LineHandler, Result, finish

CONNECT_TIMEOUT = 10.0
HOST_KEY_ALGORITHMS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512")


@dataclass(frozen=True)
class SSHTarget:
    """Everything needed to reach one server; built by the servers service, secrets included."""

    key: str  # identifies the target (server id + a digest of its settings) for connection reuse
    host: str
    port: int
    username: str
    host_key: str | None
    private_key: str | None = None
    passphrase: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # never print credentials, even in a traceback
        return f"SSHTarget({self.username}@{self.host}:{self.port})"


@dataclass(frozen=True)
class ScannedKey:
    type: str
    fingerprint_sha256: str
    public_key: str


def parse_public_key(line: str) -> asyncssh.SSHKey:
    return asyncssh.import_public_key(line.strip())


@functools.lru_cache(maxsize=4096)
def fingerprint(public_key_line: str) -> str:
    """SHA256 fingerprint of a public key line (cached: lists show one per server)."""
    return str(parse_public_key(public_key_line).get_fingerprint("sha256"))


def check_private_key(private_key: str, passphrase: str | None) -> str | None:
    """Why a private key cannot be used, or None."""
    try:
        asyncssh.import_private_key(private_key, passphrase or None)
    except asyncssh.KeyEncryptionError:
        return "wrong passphrase" if passphrase else "key is encrypted; a passphrase is required"
    except (asyncssh.KeyImportError, ValueError) as exc:
        if "passphrase" in str(exc).lower():
            return "key is encrypted; a passphrase is required"
        return "not a valid private key"
    return None


def _base_options() -> dict[str, Any]:
    # No ~/.ssh/config, no agent, no extra identities: only what the record says.
    return {"config": None, "agent_path": None, "connect_timeout": CONNECT_TIMEOUT}


async def scan_host_keys(host: str, port: int) -> list[ScannedKey]:
    """Every host key type the server offers, with SHA256 fingerprints, for confirmation."""
    found: list[ScannedKey] = []
    errors: list[BaseException] = []
    for alg in HOST_KEY_ALGORITHMS:
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(host, port, server_host_key_algs=[alg], config=None),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError, asyncssh.Error) as exc:
            errors.append(exc)
            if isinstance(exc, (OSError, TimeoutError)):
                break  # unreachable: no point trying other algorithms
            continue
        if key is not None:
            line = bytes(key.export_public_key("openssh")).decode().strip()
            algorithm, blob = line.split()[:2]
            found.append(
                ScannedKey(algorithm, str(key.get_fingerprint("sha256")), f"{algorithm} {blob}")
            )
    if not found:
        reason = _describe(errors[0], host) if errors else "no host key offered"
        raise Unreachable(
            f"cannot read the host key of {host}:{port}: {reason}", step="reachability"
        )
    return found


_ERRNO_WORDS = {
    errno.ECONNREFUSED: "nothing accepts connections on that port (is sshd running, on this port?)",
    errno.EHOSTUNREACH: "there is no route to the host (is it up, on a network this machine "
    "reaches?)",
    errno.ENETUNREACH: "this machine has no route to that network (check the address)",
    errno.ECONNRESET: "the connection was reset (a firewall, or the server closed it)",
    errno.ETIMEDOUT: "no answer (the host is down, or a firewall drops the connection)",
}


def _describe(exc: BaseException, host: str = "") -> str:
    """A connection failure in words, with what to check; no errno text."""
    if isinstance(exc, TimeoutError):
        return (
            f"no answer within {CONNECT_TIMEOUT:g}s (the host is down, or a firewall drops the "
            "connection)"
        )
    if isinstance(exc, socket.gaierror):
        return (
            f"the name {host or 'of the host'} does not resolve (check its spelling, or use its IP)"
        )
    if isinstance(exc, OSError) and exc.errno in _ERRNO_WORDS:
        return _ERRNO_WORDS[exc.errno]
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def public_key_of(private_key: str, passphrase: str | None) -> tuple[str, str] | None:
    """(algorithm, SHA256 fingerprint) of the public half of a private key, or None."""
    try:
        key = asyncssh.import_private_key(private_key, passphrase or None)
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError):
        return None
    return key.get_algorithm(), str(key.get_fingerprint("sha256"))


def _login_refused(target: SSHTarget) -> str:
    who = f"{target.username}@{target.host}"
    if target.private_key:
        public = public_key_of(target.private_key, target.passphrase)
        held = f"the public key {public[1]} ({public[0]})" if public else "the key's public half"
        return (
            f"{who} refused the login: check the user name and the key. The server must hold "
            f"{held} in ~{target.username}/.ssh/authorized_keys."
        )
    return f"{who} refused the login: check the user name and the password."


async def probe_tcp(host: str, port: int) -> None:
    """Plain TCP reachability, so a test can name this step separately from SSH."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise Unreachable(
            f"{host}:{port} is not reachable: {_describe(exc, host)}", step="reachability"
        ) from None
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


async def connect(target: SSHTarget) -> asyncssh.SSHClientConnection:
    """Open a connection that trusts only the pinned host key."""
    if not target.host_key:
        raise HostKeyChanged(
            "no host key pinned for this server; scan and confirm it first",
            step="host_key",
            code="host_key_not_pinned",
        )
    options: dict[str, Any] = {
        **_base_options(),
        "known_hosts": ([parse_public_key(target.host_key)], [], []),
        "username": target.username,
        "client_keys": [],
        "password": target.password,
        "preferred_auth": "publickey,password,keyboard-interactive",
    }
    if target.private_key:
        options["client_keys"] = [
            asyncssh.import_private_key(target.private_key, target.passphrase or None)
        ]
    try:
        return await asyncio.wait_for(
            asyncssh.connect(target.host, target.port, **options), CONNECT_TIMEOUT + 5
        )
    except asyncssh.HostKeyNotVerifiable:
        raise HostKeyChanged(
            f"host key changed for {target.host}:{target.port}: the key presented does not "
            "match the pinned one; refusing to connect",
            step="host_key",
        ) from None
    except asyncssh.PermissionDenied:
        raise AuthenticationFailed(_login_refused(target), step="authentication") from None
    except (OSError, TimeoutError) as exc:
        raise Unreachable(
            f"{target.host}:{target.port} is not reachable: {_describe(exc, target.host)}",
            step="reachability",
        ) from None
    except asyncssh.Error as exc:
        raise RuntimeFailure(f"SSH error with {target.host}: {exc.reason}", step="ssh") from None


class SSHExecutor:
    """Runs commands on one server over a connection the pool keeps open between calls."""

    def __init__(self, pool: SSHPool, target: SSHTarget) -> None:
        self.pool = pool
        self.target = target

    async def run(
        self, command: Command, on_line: LineHandler | None = None, source: ByteSource | None = None
    ) -> Result:
        conn = await self.pool.connection(self.target)
        try:
            process = await conn.create_process(command.shell_line(), encoding=None)
        except asyncssh.Error as exc:
            self.pool.discard(self.target.key)
            raise RuntimeFailure(
                f"SSH session failed on {self.target.host}: {exc.reason}", step="ssh"
            ) from None
        out: list[str] = []
        err: list[str] = []

        async def read(stream: Any, sink: list[str], handler: LineHandler | None) -> None:
            async for line in stream:
                text = bytes(line).decode("utf-8", errors="replace").rstrip("\n")
                sink.append(text)
                if handler is not None:
                    await handler(text)

        async def feed() -> None:
            try:
                if command.stdin is not None:
                    process.stdin.write(command.stdin)
                elif source is not None:
                    async for chunk in source:
                        process.stdin.write(chunk)
                        await process.stdin.drain()
                process.stdin.write_eof()
            except (asyncssh.Error, BrokenPipeError, ConnectionResetError):
                pass  # the remote process ended early; its exit status tells why

        err_handler = on_line if command.merge_stderr else None
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    feed(),
                    read(process.stdout, out, on_line),
                    read(process.stderr, err, err_handler),
                ),
                timeout=command.timeout,
            )
            completed = await asyncio.wait_for(process.wait(), timeout=command.timeout)
        except TimeoutError:
            process.kill()
            process.close()
            raise CommandTimeout(command.argv[0], command.timeout) from None
        except asyncio.CancelledError:
            process.close()
            raise
        except (asyncssh.Error, ConnectionError) as exc:
            self.pool.discard(self.target.key)
            raise RuntimeFailure(
                f"SSH connection to {self.target.host} lost: {exc}", step="transport"
            ) from None
        status = completed.exit_status if completed.exit_status is not None else 255
        return finish(command, status, "\n".join(out), "\n".join(err))

    async def open_connection(self, host: str, port: int) -> tuple[Any, Any]:
        """A direct-tcpip channel: the server's sshd connects on our behalf."""
        conn = await self.pool.connection(self.target)
        try:
            return await conn.open_connection(host, port, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionRefusedError(f"{host}:{port} via {self.target.host}: {exc}") from None

    @contextlib.asynccontextmanager
    async def reverse_tunnel(
        self, local_host: str, local_port: int
    ) -> AsyncIterator[tuple[int, list[int]]]:
        """Listen on the server's loopback (a port it picks) and carry each connection back to
        local_host:local_port here; yields (that port, [bytes sent to the server so far]).
        Closed when the block ends."""
        conn = await self.pool.connection(self.target)
        sent = [0]

        async def carry(reader: Any, writer: Any) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection(local_host, local_port)
            except OSError:
                writer.close()
                return

            async def down() -> None:  # the registry's answers, to the server
                while chunk := await up_reader.read(65536):
                    sent[0] += len(chunk)
                    writer.write(chunk)
                    await writer.drain()
                writer.write_eof()

            async def up() -> None:
                while chunk := await reader.read(65536):
                    up_writer.write(chunk)
                    await up_writer.drain()
                up_writer.write_eof()

            with contextlib.suppress(OSError, asyncssh.Error):
                await asyncio.gather(down(), up())
            up_writer.close()
            writer.close()

        try:
            listener = await conn.start_server(
                lambda _host, _port: carry, "127.0.0.1", 0, encoding=None
            )
        except (asyncssh.Error, OSError) as exc:
            raise RuntimeFailure(
                f"{self.target.host} refused a reverse tunnel (AllowTcpForwarding?): {exc}",
                step="tunnel",
            ) from None
        try:
            yield listener.get_port(), sent
        finally:
            listener.close()
            await listener.wait_closed()

    async def open_unix_connection(self, path: str) -> tuple[Any, Any]:
        """A direct-streamlocal channel: the server's sshd connects to the socket for us."""
        conn = await self.pool.connection(self.target)
        try:
            return await conn.open_unix_connection(path, encoding=None)
        except (asyncssh.Error, OSError) as exc:
            raise ConnectionRefusedError(f"{path} via {self.target.host}: {exc}") from None


class SSHPool:
    """Reuses one connection per target; closes connections idle for longer than `idle_seconds`."""

    def __init__(self, idle_seconds: float = 120.0) -> None:
        self.idle_seconds = idle_seconds
        self._conns: dict[str, tuple[asyncssh.SSHClientConnection, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def connection(self, target: SSHTarget) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(target.key, asyncio.Lock())
        async with lock:
            entry = self._conns.get(target.key)
            if entry is not None and not entry[0].is_closed():
                self._conns[target.key] = (entry[0], time.monotonic())
                return entry[0]
            conn = await connect(target)
            self._conns[target.key] = (conn, time.monotonic())
            return conn

    def executor(self, target: SSHTarget) -> SSHExecutor:
        return SSHExecutor(self, target)

    def discard(self, key: str) -> None:
        entry = self._conns.pop(key, None)
        if entry is not None:
            entry[0].close()

    def discard_prefix(self, prefix: str) -> None:
        for key in [k for k in self._conns if k.startswith(prefix)]:
            self.discard(key)

    def close_idle(self) -> int:
        now = time.monotonic()
        stale = [
            k
            for k, (c, used) in self._conns.items()
            if c.is_closed() or now - used > self.idle_seconds
        ]
        for key in stale:
            self.discard(key)
        return len(stale)

    @property
    def open_count(self) -> int:
        return sum(1 for c, _ in self._conns.values() if not c.is_closed())

    async def close_all(self) -> None:
        conns = [c for c, _ in self._conns.values()]
        self._conns.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()
