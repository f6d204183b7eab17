"""Server credentials: the sealed JSON record, and the audit and rotation of every record."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.fernet import InvalidToken
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.core.caller import Caller
from deploymate.core.crypto import Cipher, looks_encrypted
from deploymate.servers.models import Server

FIELDS = ("private_key", "passphrase", "password")


@dataclass(frozen=True)
class Credentials:
    """Secrets to reach a server; never returned by the API, never logged."""

    private_key: str | None = None
    passphrase: str | None = None
    password: str | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if v is not None}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Credentials:
        data = json.loads(text)
        return cls(**{k: data.get(k) for k in FIELDS})


def decrypt(cipher: Cipher, server: Server) -> Credentials | None:
    try:
        return Credentials.from_json(cipher.decrypt(server.credentials))
    except (InvalidToken, ValueError):
        return None


@dataclass(frozen=True)
class CredentialState:
    server: Server
    state: str  # encrypted | plaintext | undecryptable


async def states(db: AsyncSession, *, cipher: Cipher) -> list[CredentialState]:
    found = []
    for server in (await db.execute(select(Server).order_by(Server.id))).scalars():
        if not looks_encrypted(server.credentials):
            state = "plaintext"
        elif cipher.can_decrypt(server.credentials):
            state = "encrypted"
        else:
            state = "undecryptable"
        found.append(CredentialState(server, state))
    return found


async def encrypt_plaintext(db: AsyncSession, *, cipher: Cipher) -> int:
    """Start-up guard: a plaintext credential (e.g. from an old import) is encrypted at once."""
    count = 0
    for state in await states(db, cipher=cipher):
        if state.state == "plaintext":
            state.server.credentials = cipher.encrypt(state.server.credentials)
            count += 1
    if count:
        await audit.record(
            db,
            caller=Caller.system(),
            action="credentials.encrypt_plaintext",
            details={"servers": count},
        )
        await db.commit()
    return count


async def rotate(db: AsyncSession, *, cipher: Cipher, caller: Caller) -> tuple[int, list[str]]:
    """Re-encrypt every record with the first key; returns (rotated, names that no key opens)."""
    rotated, failed = 0, []
    for state in await states(db, cipher=cipher):
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
        caller=caller,
        action="credentials.rotate",
        outcome="success" if not failed else "failure",
        details={"rotated": rotated, "undecryptable": failed},
    )
    await db.commit()
    return rotated, failed
