"""Server records: encrypted credentials, pinned host keys, the member's server limit.

Members see and use only the servers they own; admins see all. Members reach only addresses
the SSH address policy allows (`check_address`); the error they get never tells a closed
port from a filtered one or from one that is open but not SSH.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy import update as update_rows
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from deploymate.audit import service as audit
from deploymate.auth.models import User
from deploymate.context import AppContext
from deploymate.core import addresses
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from deploymate.runtime.errors import RuntimeFailure, Unreachable
from deploymate.runtime.ssh import (
    ScannedKey,
    check_private_key,
    fingerprint,
    parse_public_key,
    scan_host_keys,
)
from deploymate.servers import known_hosts
from deploymate.servers.credentials import FIELDS as CREDENTIAL_FIELDS
from deploymate.servers.credentials import Credentials, decrypt
from deploymate.servers.models import Server
from deploymate.servers.schemas import ServerCreate, ServerUpdate

PRIVATE_SETTING = "DEPLOYMATE_SSH_ALLOW_PRIVATE"


def no_ssh_here(host: str, port: int) -> Unreachable:
    """The one answer a member gets when nothing usable answers: closed, filtered and
    open-but-not-SSH ports look the same."""
    return Unreachable(
        f"no SSH server answered at {host}:{port}; check the address and the port, and that "
        "sshd runs there and lets the control host in",
        step="reachability",
    )


async def check_address(
    settings: Settings, caller: Caller, host: str, port: int, *, must_resolve: bool = True
) -> None:
    """Members reach only public addresses, and private ones where the setting allows.

    Checked when a server is saved (a name that does not resolve yet may be saved) and again
    before every connection a member asks for (DNS can change)."""
    if caller.is_admin:
        return
    try:
        await addresses.check_host(
            host, port, allow_private=settings.ssh_allow_private, setting=PRIVATE_SETTING
        )
    except addresses.Unresolvable:
        if must_resolve:
            raise ValidationFailed(
                f"the host {host} does not resolve; check the name", field="host"
            ) from None
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="host", code="address_refused") from None


def _normalise_key_line(line: str, field: str = "host_key") -> str:
    try:
        key = parse_public_key(line)
    except Exception:  # asyncssh raises KeyImportError and others for malformed input
        raise ValidationFailed("not a valid SSH public key line", field=field) from None
    exported = bytes(key.export_public_key("openssh")).decode().split()
    return f"{exported[0]} {exported[1]}"


def _check_credentials(creds: Credentials, auth_type: str) -> None:
    if auth_type == "key":
        if not creds.private_key:
            raise ValidationFailed("required when auth_type is key", field="private_key")
        problem = check_private_key(creds.private_key, creds.passphrase)
        if problem:
            raise ValidationFailed(
                problem, field="passphrase" if "passphrase" in problem else "private_key"
            )
    elif not creds.password:
        raise ValidationFailed("required when auth_type is password", field="password")


def _visible(caller: Caller, name: str | None) -> list[Any]:
    clauses: list[Any] = [] if name is None else [Server.name == name]
    if not caller.is_admin:
        clauses.append(Server.owner_id == caller.user_id)
    return clauses


async def list_for(
    db: AsyncSession,
    *,
    caller: Caller,
    name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Server]:
    stmt = select(Server).where(*_visible(caller, name)).order_by(Server.name).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list((await db.execute(stmt)).scalars())


async def count_for(db: AsyncSession, *, caller: Caller, name: str | None = None) -> int:
    stmt = select(func.count()).select_from(Server).where(*_visible(caller, name))
    return int((await db.execute(stmt)).scalar_one())


async def get(db: AsyncSession, *, caller: Caller, server_id: int) -> Server:
    server = await db.get(Server, server_id)
    if server is None or not caller.owns(server.owner_id):
        raise NotFound(f"no such server: {server_id}")
    return server


async def find(db: AsyncSession, *, caller: Caller, name: str) -> Server:
    server = (await db.execute(select(Server).where(Server.name == name))).scalar_one_or_none()
    if server is None or not caller.owns(server.owner_id):
        raise NotFound(f"no server named {name}")
    return server


async def _name_taken(db: AsyncSession, name: str, except_id: int | None = None) -> bool:
    stmt = select(Server.id).where(Server.name == name)
    if except_id is not None:
        stmt = stmt.where(Server.id != except_id)
    return (await db.execute(stmt)).first() is not None


async def _export_known_host(db: AsyncSession, settings: Settings, host: str, port: int) -> None:
    """Write the address's pinned key to DEPLOYMATE_SSH_KNOWN_HOSTS_FILE.

    One key per address: an admin's server before a member's, then the oldest server. A later
    pin for the same address by somebody else never replaces (nor joins) the line others trust.
    """
    path = settings.ssh_known_hosts_file
    if path is None:
        return
    rows = (
        await db.execute(
            select(Server.id, Server.host_key, User.role)
            .outerjoin(User, User.id == Server.owner_id)
            .where(Server.host == host, Server.port == port, Server.host_key.is_not(None))
        )
    ).all()
    if rows:
        winner = min(rows, key=lambda r: (r.role != "admin", r.id))
        known_hosts.write_entry(path, host, port, [str(winner.host_key)])


async def _claim_server_slot(db: AsyncSession, caller: Caller) -> None:
    """Members register up to their limit; an approved upgrade request raises it.

    The owner's row is locked first (an UPDATE: a row lock on PostgreSQL, the write lock on
    SQLite), so concurrent creations for one member are counted one after another."""
    await db.execute(
        update_rows(User)
        .where(User.id == caller.user_id)
        .values(server_limit=User.server_limit)
        .execution_options(synchronize_session=False)
    )
    user = (
        await db.execute(
            select(User).where(User.id == caller.user_id).execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if user is None or user.is_admin:
        return
    owned = int(
        (
            await db.execute(
                select(func.count()).select_from(Server).where(Server.owner_id == user.id)
            )
        ).scalar_one()
    )
    if owned >= user.server_limit:
        raise PermissionDenied(
            f"you may register {user.server_limit} server(s) and have {owned}; ask an admin "
            "for more servers (Upgrade requests)",
            code="server_limit",
        )


async def create(
    db: AsyncSession, *, context: AppContext, caller: Caller, data: ServerCreate
) -> Server:
    if await _name_taken(db, data.name):
        raise Conflict(f"a server named {data.name} exists already", code="name_taken")
    await check_address(context.settings, caller, data.host, data.port, must_resolve=False)
    creds = Credentials(
        private_key=data.private_key if data.auth_type == "key" else None,
        passphrase=data.passphrase if data.auth_type == "key" else None,
        password=data.password if data.auth_type == "password" else None,
    )
    _check_credentials(creds, data.auth_type)
    host_key = _normalise_key_line(data.host_key) if data.host_key else None
    await _claim_server_slot(db, caller)
    server = Server(
        name=data.name,
        host=data.host,
        port=data.port,
        username=data.username,
        auth_type=data.auth_type,
        credentials=context.cipher.encrypt(creds.to_json()),
        host_key=host_key,
        purpose=data.purpose.value,
        criticality=data.criticality.value,
        labels=data.labels,
        notes=data.notes,
        owner_id=caller.user_id,
    )
    db.add(server)
    await db.flush()
    await audit.record(
        db,
        caller=caller,
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
    await _export_known_host(db, context.settings, server.host, server.port)
    return server


async def update(
    db: AsyncSession, *, context: AppContext, caller: Caller, server_id: int, data: ServerUpdate
) -> Server:
    server = await get(db, caller=caller, server_id=server_id)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes and await _name_taken(db, changes["name"], except_id=server.id):
        raise Conflict(f"a server named {changes['name']} exists already", code="name_taken")
    if "host" in changes or "port" in changes:
        await check_address(
            context.settings,
            caller,
            changes.get("host", server.host),
            changes.get("port", server.port),
            must_resolve=False,
        )
    secret_changes = {k: changes.pop(k) for k in CREDENTIAL_FIELDS if k in changes}
    auth_type = changes.get("auth_type") or server.auth_type
    credentials_changed = bool(secret_changes) or auth_type != server.auth_type
    if credentials_changed:
        current = decrypt(context.cipher, server) or Credentials()
        merged = {**current.__dict__, **secret_changes}
        creds = Credentials(
            private_key=merged["private_key"] if auth_type == "key" else None,
            passphrase=merged["passphrase"] if auth_type == "key" else None,
            password=merged["password"] if auth_type == "password" else None,
        )
        _check_credentials(creds, auth_type)
        server.credentials = context.cipher.encrypt(creds.to_json())
    address_changed = any(
        k in changes and changes[k] != getattr(server, k) for k in ("host", "port")
    )
    for key, value in changes.items():
        setattr(server, key, value.value if hasattr(value, "value") else value)
    if address_changed:
        server.host_key = None  # a new address must have its key scanned and confirmed again
    await audit.record(
        db,
        caller=caller,
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
            caller=caller,
            action="server.credentials_change",
            target_type="server",
            target_id=server.id,
            details={"fields": sorted(secret_changes)},
        )
    await db.commit()
    context.pool.discard_prefix(f"{server.id}:")
    return server


async def delete(db: AsyncSession, *, context: AppContext, caller: Caller, server_id: int) -> None:
    server = await get(db, caller=caller, server_id=server_id)
    stmt = select(Server).where(Server.id == server.id).options(selectinload(Server.deployments))
    rows = [(d.name, d.status) for d in (await db.execute(stmt)).scalar_one().deployments]
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
        caller=caller,
        action="server.delete",
        target_type="server",
        target_id=server.id,
        details={"name": server.name, "host": server.host},
    )
    await db.delete(server)
    await db.commit()
    context.pool.discard_prefix(f"{server.id}:")


async def pin_host_key(
    db: AsyncSession, *, context: AppContext, caller: Caller, server_id: int, public_key: str
) -> Server:
    server = await get(db, caller=caller, server_id=server_id)
    line = _normalise_key_line(public_key, "public_key")
    previous = server.host_key
    server.host_key = line
    await audit.record(
        db,
        caller=caller,
        action="server.host_key_pin",
        target_type="server",
        target_id=server.id,
        details={
            "fingerprint": fingerprint(line),
            "replaced": fingerprint(previous) if previous else None,
        },
    )
    await db.commit()
    context.pool.discard_prefix(f"{server.id}:")
    await _export_known_host(db, context.settings, server.host, server.port)
    return server


async def scan_host_key(
    db: AsyncSession, *, settings: Settings, caller: Caller, host: str, port: int
) -> list[ScannedKey]:
    """Read the keys a host offers (audited); nothing is pinned until the operator confirms one."""
    await check_address(settings, caller, host, port)
    try:
        keys = await scan_host_keys(host, port)
    except RuntimeFailure as exc:
        # The address given is what failed: a field error (422), not the gateway's (502).
        said = exc if caller.is_admin else no_ssh_here(host, port)
        raise ValidationFailed(said.detail, field="host", code=said.code) from None
    await audit.record(
        db,
        caller=caller,
        action="server.host_key_scan",
        target_type="host",
        target_id=f"{host}:{port}",
        details={"fingerprints": [k.fingerprint_sha256 for k in keys]},
    )
    await db.commit()
    return keys


async def ensure_pinned(
    db: AsyncSession, *, settings: Settings, caller: Caller, server: Server
) -> None:
    """With DEPLOYMATE_SSH_HOST_KEY_CHECKING=accept-new, pin the first key seen (audited)."""
    if server.host_key or settings.ssh_host_key_checking != "accept-new":
        return
    keys = await scan_host_keys(server.host, server.port)
    server.host_key = keys[0].public_key
    await audit.record(
        db,
        caller=caller,
        action="server.host_key_pin",
        target_type="server",
        target_id=server.id,
        details={"fingerprint": keys[0].fingerprint_sha256, "accepted_new": True},
    )
    await db.commit()
    await _export_known_host(db, settings, server.host, server.port)


async def inventory(db: AsyncSession) -> list[tuple[Server, int]]:
    """Every server with its count of deployments (the control host's CLI)."""
    servers = list(
        (await db.execute(select(Server).order_by(Server.purpose, Server.name))).scalars()
    )
    counts = await deployment_counts(db, [s.id for s in servers])
    return [(s, counts.get(s.id, 0)) for s in servers]


async def deployment_counts(db: AsyncSession, ids: list[int]) -> dict[int, int]:
    """Deployments per server (deleted ones excluded), in one query."""
    if not ids:
        return {}
    rows = await db.execute(
        select(Server.id, func.count())
        .join(Server.live_deployments)
        .where(Server.id.in_(ids))
        .group_by(Server.id)
    )
    return {int(sid): int(n) for sid, n in rows.all()}
