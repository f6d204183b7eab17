"""Servers as the API and the console show them: credentials only as has_* flags."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.auth.models import User
from deploymate.core.crypto import Cipher
from deploymate.runtime.ssh import fingerprint
from deploymate.servers.credentials import decrypt
from deploymate.servers.models import Server
from deploymate.servers.schemas import ServerOut
from deploymate.servers.service import deployment_counts


async def present(
    db: AsyncSession, *, servers: Sequence[Server], cipher: Cipher
) -> list[ServerOut]:
    """Owners and deployment counts in one query each, whatever the number of servers."""
    counts = await deployment_counts(db, [s.id for s in servers])
    owner_ids = {s.owner_id for s in servers if s.owner_id}
    owners = (
        dict((await db.execute(select(User.id, User.username).where(User.id.in_(owner_ids)))).all())
        if owner_ids
        else {}
    )
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


async def present_one(db: AsyncSession, *, server: Server, cipher: Cipher) -> ServerOut:
    return (await present(db, servers=[server], cipher=cipher))[0]
