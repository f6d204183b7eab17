"""Server use cases: records with encrypted credentials, host-key pinning, checks and facts."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import InvalidToken
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.audit.service import Actor
from deploymate.auth.models import User
from deploymate.config import Settings
from deploymate.db import Base, utcnow
from deploymate.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from deploymate.runtime import host_facts
from deploymate.runtime.errors import HostKeyChanged, RuntimeFailure
from deploymate.runtime.ssh import (
    ScannedKey,
    SSHPool,
    SSHTarget,
    check_private_key,
    fingerprint,
    parse_public_key,
    scan_host_keys,
)
from deploymate.servers import known_hosts
from deploymate.servers.credentials import Cipher, Credentials, looks_encrypted
from deploymate.servers.models import Server
from deploymate.servers.schemas import CheckStep, ServerCreate, ServerOut, ServerUpdate, TestResult

CREDENTIAL_FIELDS = ("private_key", "passphrase", "password")


@dataclass(frozen=True)
class Viewer:
    """Who is asking: members see and use only the servers they own; admins see all."""

    user: User
    actor: Actor

    def can_see(self, server: Server) -> bool:
        return self.user.is_admin or server.owner_id == self.user.id


def _normalise_key_line(line: str, field: str = "host_key") -> str:
    try:
        key = parse_public_key(line)
    except Exception:  # asyncssh raises KeyImportError and others for malformed input
        raise ValidationFailed(f"{field}: not a valid SSH public key line") from None
    exported = bytes(key.export_public_key("openssh")).decode().split()
    return f"{exported[0]} {exported[1]}"


def _check_credentials(creds: Credentials, auth_type: str) -> None:
    if auth_type == "key":
        if not creds.private_key:
            raise ValidationFailed("private_key: required when auth_type is key")
        problem = check_private_key(creds.private_key, creds.passphrase)
        if problem:
            field = "passphrase" if "passphrase" in problem else "private_key"
            raise ValidationFailed(f"{field}: {problem}")
    elif not creds.password:
        raise ValidationFailed("password: required when auth_type is password")


async def _deployment_counts(db: AsyncSession, ids: Sequence[int]) -> dict[int, int]:
    table = Base.metadata.tables.get("deployments")
    if table is None or not ids:
        return {}
    rows = await db.execute(
        select(table.c.server_id, func.count())
        .where(table.c.server_id.in_(ids))
        .group_by(table.c.server_id)
    )
    return {int(sid): int(n) for sid, n in rows.all()}


async def to_out(db: AsyncSession, servers: Sequence[Server], cipher: Cipher) -> list[ServerOut]:
    counts = await _deployment_counts(db, [s.id for s in servers])
    owners = {
        u.id: u.username
        for u in (
            await db.execute(
                select(User).where(User.id.in_({s.owner_id for s in servers if s.owner_id}))
            )
        ).scalars()
    }
    out = []
    for s in servers:
        creds = decrypt(cipher, s)
        out.append(
            ServerOut(
                id=s.id,
                name=s.name,
                host=s.host,
                port=s.port,
                username=s.username,
                auth_type=s.auth_type,
                has_private_key=bool(creds and creds.private_key),
                has_passphrase=bool(creds and creds.passphrase),
                has_password=bool(creds and creds.password),
                host_key=s.host_key,
                host_key_fingerprint=fingerprint(s.host_key) if s.host_key else None,
                purpose=s.purpose,
                criticality=s.criticality,
                labels=s.labels,
                notes=s.notes,
                owner_id=s.owner_id,
                owner=owners.get(s.owner_id) if s.owner_id else None,
                created_at=s.created_at,
                updated_at=s.updated_at,
                last_check_at=s.last_check_at,
                last_check_ok=s.last_check_ok,
                last_check_message=s.last_check_message,
                deployments=counts.get(s.id, 0),
            )
        )
    return out


def decrypt(cipher: Cipher, server: Server) -> Credentials | None:
    try:
        return Credentials.from_json(cipher.decrypt(server.credentials))
    except (InvalidToken, ValueError):
        return None


async def list_visible(db: AsyncSession, viewer: Viewer) -> list[Server]:
    stmt = select(Server).order_by(Server.name)
    if not viewer.user.is_admin:
        stmt = stmt.where(Server.owner_id == viewer.user.id)
    return list((await db.execute(stmt)).scalars())


async def get_visible(db: AsyncSession, viewer: Viewer, server_id: int) -> Server:
    server = await db.get(Server, server_id)
    if server is None or not viewer.can_see(server):
        raise NotFound(f"no such server: {server_id}")
    return server


async def _name_taken(db: AsyncSession, name: str, except_id: int | None = None) -> bool:
    stmt = select(Server.id).where(Server.name == name)
    if except_id is not None:
        stmt = stmt.where(Server.id != except_id)
    return (await db.execute(stmt)).first() is not None


def _export_known_host(settings: Settings, server: Server) -> None:
    if settings.ssh_known_hosts_file and server.host_key:
        known_hosts.write_entry(
            settings.ssh_known_hosts_file, server.host, server.port, [server.host_key]
        )


async def _check_server_limit(db: AsyncSession, viewer: Viewer) -> None:
    """Members register up to their limit; an approved upgrade request raises it."""
    if viewer.user.is_admin:
        return
    owned = int(
        (
            await db.execute(
                select(func.count()).select_from(Server).where(Server.owner_id == viewer.user.id)
            )
        ).scalar_one()
    )
    if owned >= viewer.user.server_limit:
        raise PermissionDenied(
            f"you may register {viewer.user.server_limit} server(s) and have {owned}; ask an admin "
            "for more servers (Upgrade requests)",
            code="server_limit",
        )


async def create(
    db: AsyncSession, settings: Settings, cipher: Cipher, viewer: Viewer, data: ServerCreate
) -> Server:
    if await _name_taken(db, data.name):
        raise Conflict(f"a server named {data.name} exists already", code="name_taken")
    await _check_server_limit(db, viewer)
    creds = Credentials(
        private_key=data.private_key if data.auth_type == "key" else None,
        passphrase=data.passphrase if data.auth_type == "key" else None,
        password=data.password if data.auth_type == "password" else None,
    )
    _check_credentials(creds, data.auth_type)
    host_key = _normalise_key_line(data.host_key) if data.host_key else None
    server = Server(
        name=data.name,
        host=data.host,
        port=data.port,
        username=data.username,
        auth_type=data.auth_type,
        credentials=cipher.encrypt(creds.to_json()),
        host_key=host_key,
        purpose=data.purpose.value,
        criticality=data.criticality.value,
        labels=data.labels,
        notes=data.notes,
        owner_id=viewer.user.id,
    )
    db.add(server)
    await db.flush()
    await audit.record(
        db,
        actor=viewer.actor,
        action="server.create",
        target_type="server",
        target_id=server.id,
        details={
            "name": server.name,
            "host": server.host,
            "auth_type": server.auth_type,
            "host_key_pinned": bool(host_key),
        },
    )
    await db.commit()
    _export_known_host(settings, server)
    return server


async def update(
    db: AsyncSession,
    settings: Settings,
    cipher: Cipher,
    pool: SSHPool,
    viewer: Viewer,
    server_id: int,
    data: ServerUpdate,
) -> Server:
    server = await get_visible(db, viewer, server_id)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes and await _name_taken(db, changes["name"], except_id=server.id):
        raise Conflict(f"a server named {changes['name']} exists already", code="name_taken")
    secret_changes = {k: changes.pop(k) for k in CREDENTIAL_FIELDS if k in changes}
    auth_type = changes.get("auth_type") or server.auth_type
    credentials_changed = bool(secret_changes) or auth_type != server.auth_type
    if credentials_changed:
        current = decrypt(cipher, server) or Credentials()
        merged = {**current.__dict__, **secret_changes}
        creds = Credentials(
            private_key=merged["private_key"] if auth_type == "key" else None,
            passphrase=merged["passphrase"] if auth_type == "key" else None,
            password=merged["password"] if auth_type == "password" else None,
        )
        _check_credentials(creds, auth_type)
        server.credentials = cipher.encrypt(creds.to_json())
    address_changed = any(
        k in changes and changes[k] != getattr(server, k) for k in ("host", "port")
    )
    for key, value in changes.items():
        setattr(server, key, value.value if hasattr(value, "value") else value)
    if address_changed:
        server.host_key = None  # a new address must have its key scanned and confirmed again
    await audit.record(
        db,
        actor=viewer.actor,
        action="server.update",
        target_type="server",
        target_id=server.id,
        details={
            "fields": sorted(changes),
            "credentials_changed": credentials_changed,
            "host_key_cleared": address_changed,
        },
    )
    if credentials_changed:
        await audit.record(
            db,
            actor=viewer.actor,
            action="server.credentials_change",
            target_type="server",
            target_id=server.id,
            details={"fields": sorted(secret_changes)},
        )
    await db.commit()
    pool.discard_prefix(f"{server.id}:")
    return server


async def delete(db: AsyncSession, pool: SSHPool, viewer: Viewer, server_id: int) -> None:
    server = await get_visible(db, viewer, server_id)
    table = Base.metadata.tables["deployments"]
    rows = (
        await db.execute(select(table.c.name, table.c.status).where(table.c.server_id == server.id))
    ).all()
    if rows:
        live = [name for name, state in rows if state != "deleted"]
        why = (
            f"deployments run on it ({', '.join(live[:5])}); delete them first"
            if live
            else f"{len(rows)} deleted deployment(s) keep their release history on it"
        )
        raise Conflict(f"server {server.name} cannot be deleted: {why}", code="server_in_use")
    await audit.record(
        db,
        actor=viewer.actor,
        action="server.delete",
        target_type="server",
        target_id=server.id,
        details={"name": server.name, "host": server.host},
    )
    await db.delete(server)
    await db.commit()
    pool.discard_prefix(f"{server.id}:")


async def pin_host_key(
    db: AsyncSession,
    settings: Settings,
    pool: SSHPool,
    viewer: Viewer,
    server_id: int,
    public_key: str,
) -> Server:
    server = await get_visible(db, viewer, server_id)
    line = _normalise_key_line(public_key, "public_key")
    previous = server.host_key
    server.host_key = line
    await audit.record(
        db,
        actor=viewer.actor,
        action="server.host_key_pin",
        target_type="server",
        target_id=server.id,
        details={
            "fingerprint": fingerprint(line),
            "replaced": fingerprint(previous) if previous else None,
        },
    )
    await db.commit()
    pool.discard_prefix(f"{server.id}:")
    _export_known_host(settings, server)
    return server


async def scan_host_key(db: AsyncSession, viewer: Viewer, host: str, port: int) -> list[ScannedKey]:
    """Read the keys a host offers (audited); nothing is pinned until the operator confirms one."""
    keys = await scan_host_keys(host, port)
    await audit.record(
        db,
        actor=viewer.actor,
        action="server.host_key_scan",
        target_type="host",
        target_id=f"{host}:{port}",
        details={"fingerprints": [k.fingerprint_sha256 for k in keys]},
    )
    await db.commit()
    return keys


async def ensure_pinned(
    db: AsyncSession, settings: Settings, viewer: Viewer, server: Server
) -> None:
    """With DEPLOYMATE_SSH_HOST_KEY_CHECKING=accept-new, pin the first key seen (audited)."""
    if server.host_key or settings.ssh_host_key_checking != "accept-new":
        return
    keys = await scan_host_keys(server.host, server.port)
    server.host_key = keys[0].public_key
    await audit.record(
        db,
        actor=viewer.actor,
        action="server.host_key_pin",
        target_type="server",
        target_id=server.id,
        details={"fingerprint": keys[0].fingerprint_sha256, "accepted_new": True},
    )
    await db.commit()
    _export_known_host(settings, server)


def target_for(server: Server, cipher: Cipher) -> SSHTarget:
    creds = decrypt(cipher, server)
    if creds is None:
        raise ValidationFailed(
            f"credentials of server {server.name} cannot be decrypted with the configured keys",
            code="credentials_unreadable",
        )
    digest = hashlib.sha256(
        f"{server.host}|{server.port}|{server.username}|{server.host_key}|"
        f"{server.credentials}".encode()
    ).hexdigest()[:16]
    return SSHTarget(
        key=f"{server.id}:{digest}",
        host=server.host,
        port=server.port,
        username=server.username,
        host_key=server.host_key,
        private_key=creds.private_key,
        passphrase=creds.passphrase,
        password=creds.password,
    )


async def _record_host_key_mismatch(
    db: AsyncSession,
    viewer: Viewer,
    server: Server,
    exc: HostKeyChanged,
) -> None:
    if exc.code == "host_key_changed":
        await audit.record(
            db,
            actor=viewer.actor,
            action="server.host_key_mismatch",
            target_type="server",
            target_id=server.id,
            outcome="failure",
            details={"host": server.host, "port": server.port},
        )


async def run_check(
    db: AsyncSession,
    settings: Settings,
    cipher: Cipher,
    pool: SSHPool,
    viewer: Viewer,
    server_id: int,
) -> TestResult:
    """Reachability, host key, authentication, then `docker version`, naming the step that fails."""
    from deploymate.runtime.ssh import probe_tcp

    server = await get_visible(db, viewer, server_id)
    steps: list[CheckStep] = []
    version = None
    order = ["reachability", "host_key", "authentication", "docker"]
    try:
        await probe_tcp(server.host, server.port)
        steps.append(
            CheckStep(step="reachability", ok=True, detail=f"{server.host}:{server.port} answers")
        )
        await ensure_pinned(db, settings, viewer, server)
        target = target_for(server, cipher)
        pool.discard(target.key)  # a check always makes a fresh connection
        executor = pool.executor(target)
        await pool.connection(target)
        steps.append(CheckStep(step="host_key", ok=True, detail="matches the pinned key"))
        steps.append(
            CheckStep(step="authentication", ok=True, detail=f"signed in as {server.username}")
        )
        try:
            version, _ = await host_facts.docker_version(executor)
        except RuntimeFailure as exc:
            raise RuntimeFailure(exc.detail, step="docker") from None
        steps.append(CheckStep(step="docker", ok=True, detail=f"Docker {version}"))
    except RuntimeFailure as exc:
        steps.append(
            CheckStep(step=exc.step if exc.step in order else "docker", ok=False, detail=exc.detail)
        )
        if isinstance(exc, HostKeyChanged):
            await _record_host_key_mismatch(db, viewer, server, exc)
    except ValidationFailed as exc:
        steps.append(CheckStep(step="authentication", ok=False, detail=exc.detail))
    failed = next((s for s in steps if not s.ok), None)
    already_failing = server.last_check_ok is False and server.last_check_message == (
        failed.detail if failed else None
    )
    server.last_check_at = utcnow()
    server.last_check_ok = failed is None
    server.last_check_message = failed.detail if failed else f"ok; Docker {version}"
    await audit.record(
        db,
        actor=viewer.actor,
        action="server.test",
        target_type="server",
        target_id=server.id,
        outcome="success" if failed is None else "failure",
        details={"failed_step": failed.step if failed else None},
    )
    await db.commit()
    if failed is not None and failed.step == "reachability" and not already_failing:
        from deploymate.notifications.service import publish_from_session

        await publish_from_session(  # never raises; webhooks are sent in the background
            db,
            settings,
            event="server.unreachable",
            text=f"Server {server.name} ({server.host}:{server.port}) is unreachable: "
            f"{failed.detail}",
            link="/app/server-review",
            user_ids=[server.owner_id] if server.owner_id else [],
        )
    return TestResult(
        ok=failed is None,
        failed_step=failed.step if failed else None,
        steps=steps,
        docker_version=version,
    )


async def _with_executor(
    db: AsyncSession, cipher: Cipher, pool: SSHPool, viewer: Viewer, server_id: int
) -> tuple[Server, Any]:
    server = await get_visible(db, viewer, server_id)
    return server, pool.executor(target_for(server, cipher))


async def diagnostics(
    db: AsyncSession, cipher: Cipher, pool: SSHPool, viewer: Viewer, server_id: int
) -> host_facts.Diagnostics:
    server, executor = await _with_executor(db, cipher, pool, viewer, server_id)
    try:
        return await host_facts.collect(executor)
    except HostKeyChanged as exc:
        await _record_host_key_mismatch(db, viewer, server, exc)
        await db.commit()
        raise


async def held_ports(db: AsyncSession, server_id: int) -> set[int]:
    table = Base.metadata.tables.get("deployments")
    if table is None:
        return set()
    rows = await db.execute(
        select(table.c.external_port).where(
            table.c.server_id == server_id, table.c.status != "deleted"
        )
    )
    return {int(p) for (p,) in rows.all() if p is not None}


async def suggested_ports(
    db: AsyncSession, cipher: Cipher, pool: SSHPool, viewer: Viewer, server_id: int
) -> tuple[list[int], list[int]]:
    server, executor = await _with_executor(db, cipher, pool, viewer, server_id)
    try:
        listening = await host_facts.listening_ports(executor)
    except HostKeyChanged as exc:
        await _record_host_key_mismatch(db, viewer, server, exc)
        await db.commit()
        raise
    return host_facts.suggest_ports(set(listening), await held_ports(db, server.id)), listening


async def inventory(db: AsyncSession) -> list[tuple[Server, int]]:
    servers = list(
        (await db.execute(select(Server).order_by(Server.purpose, Server.name))).scalars()
    )
    counts = await _deployment_counts(db, [s.id for s in servers])
    return [(s, counts.get(s.id, 0)) for s in servers]


@dataclass(frozen=True)
class CredentialState:
    server: Server
    state: str  # encrypted | plaintext | undecryptable


async def credential_states(db: AsyncSession, cipher: Cipher) -> list[CredentialState]:
    states = []
    for server in (await db.execute(select(Server).order_by(Server.id))).scalars():
        if not looks_encrypted(server.credentials):
            state = "plaintext"
        elif cipher.can_decrypt(server.credentials):
            state = "encrypted"
        else:
            state = "undecryptable"
        states.append(CredentialState(server, state))
    return states


async def encrypt_plaintext(db: AsyncSession, cipher: Cipher) -> int:
    """Start-up guard: a plaintext credential (e.g. from an old import) is encrypted at once."""
    count = 0
    for state in await credential_states(db, cipher):
        if state.state == "plaintext":
            state.server.credentials = cipher.encrypt(state.server.credentials)
            count += 1
    if count:
        await audit.record(
            db,
            actor=Actor(None, "system", None),
            action="credentials.encrypt_plaintext",
            details={"servers": count},
        )
        await db.commit()
    return count


async def rotate(db: AsyncSession, cipher: Cipher, actor: Actor) -> tuple[int, list[str]]:
    """Re-encrypt every record with the first key; returns (rotated, names that no key opens)."""
    rotated, failed = 0, []
    for state in await credential_states(db, cipher):
        if state.state == "undecryptable":
            failed.append(state.server.name)
            continue
        value = state.server.credentials
        state.server.credentials = (
            cipher.encrypt(value) if state.state == "plaintext" else cipher.rotate(value)
        )
        rotated += 1
    await audit.record(
        db,
        actor=actor,
        action="credentials.rotate",
        outcome="success" if not failed else "failure",
        details={"rotated": rotated, "undecryptable": failed},
    )
    await db.commit()
    return rotated, failed
