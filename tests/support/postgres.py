"""A throw-away PostgreSQL server for the test session (Debian's `postgresql` binaries)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path


class PostgresMissing(RuntimeError):
    pass


def _bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise PostgresMissing(
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); "
            "install the Debian package `postgresql` (scripts/install-test-deps.sh)"
        )
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    bindir: Path
    run_as: str | None

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            str(self.bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ).stdout

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def dump(self, database: str) -> str:
        return self._run(
            str(self.bindir / "pg_dump"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            database,
        ).stdout

    def pause(self) -> None:
        """Stop the server (its data kept) as an outage would: connections are cut."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        _pg_ctl_start(self)

    def stop(self) -> None:
        try:
            self._run(
                str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop"
            )
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.datadir, ignore_errors=True)


def start() -> PostgresServer:
    """initdb into a fresh directory and start on a free loopback port (as `postgres` when root)."""
    bindir = _bindir()
    run_as = None
    datadir = Path(tempfile.mkdtemp(prefix="dm-pg-"))
    if os.geteuid() == 0:
        run_as = "postgres"
        try:
            pw = pwd.getpwnam(run_as)
        except KeyError:
            raise PostgresMissing(
                "system user `postgres` missing; reinstall `postgresql`"
            ) from None
        os.chown(datadir, pw.pw_uid, pw.pw_gid)
    server = PostgresServer(datadir=datadir, port=_free_port(), bindir=bindir, run_as=run_as)
    server._run(
        str(bindir / "initdb"),
        "-D",
        str(datadir),
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
        "-E",
        "UTF8",
    )
    _pg_ctl_start(server)
    return server


def _pg_ctl_start(server: PostgresServer) -> None:
    datadir = server.datadir
    opts = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {datadir} -c fsync=off"
    server._run(
        str(server.bindir / "pg_ctl"),
        "-D",
        str(datadir),
        "-o",
        opts,
        "-w",
        "-t",
        "60",
        "-l",
        str(datadir / "server.log"),
        "start",
    )
