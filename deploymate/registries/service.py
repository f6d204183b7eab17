"""Registries: admins store credentials; members pull with those an admin shares.

The password is sealed at rest, never returned, and reaches a target only on the stdin of the
pull (runtime.images.client_config).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.core.caller import Caller
from deploymate.core.crypto import Cipher
from deploymate.core.errors import Conflict, NotFound
from deploymate.registries.models import Registry
from deploymate.registries.schemas import RegistryCreate, RegistryUpdate
from deploymate.runtime.images import RegistryAuth, registry_of


async def list_for(db: AsyncSession, *, caller: Caller) -> list[Registry]:
    stmt = select(Registry).order_by(Registry.name)
    if not caller.is_admin:
        stmt = stmt.where(Registry.shared.is_(True))
    return list((await db.execute(stmt)).scalars())


async def get(db: AsyncSession, *, registry_id: int) -> Registry:
    found = await db.get(Registry, registry_id)
    if found is None:
        raise NotFound(f"no such registry: {registry_id}")
    return found


async def _taken(db: AsyncSession, name: str, host: str | None, except_id: int | None) -> None:
    for reg in (await db.execute(select(Registry))).scalars():
        if reg.id == except_id:
            continue
        if reg.name == name:
            raise Conflict(f"name: a registry named {name} exists", code="name_taken")
        if host is not None and reg.host == host:
            raise Conflict(
                f"url: {host} has credentials already (registry {reg.name}); change those",
                code="registry_exists",
            )


async def create(
    db: AsyncSession, *, caller: Caller, cipher: Cipher, data: RegistryCreate
) -> Registry:
    await _taken(db, data.name, data.url, None)
    reg = Registry(
        name=data.name,
        host=data.url,
        username=data.username,
        password=cipher.encrypt(data.password.get_secret_value()),
        shared=data.shared,
        created_by=caller.user_id,
    )
    db.add(reg)
    await db.flush()
    await audit.record(
        db,
        caller=caller,
        action="registry.create",
        target_type="registry",
        target_id=reg.id,
        details={"name": reg.name, "host": reg.host, "shared": reg.shared},
    )
    await db.commit()
    return reg


async def update(
    db: AsyncSession, *, caller: Caller, cipher: Cipher, registry_id: int, data: RegistryUpdate
) -> Registry:
    reg = await get(db, registry_id=registry_id)
    if data.name is not None and data.name != reg.name:
        await _taken(db, data.name, None, reg.id)
        reg.name = data.name
    if data.username is not None:
        reg.username = data.username
    if data.password is not None:
        reg.password = cipher.encrypt(data.password.get_secret_value())
    if data.shared is not None:
        reg.shared = data.shared
    changed = sorted(k for k, v in data.model_dump(exclude_unset=True).items() if v is not None)
    await audit.record(
        db,
        caller=caller,
        action="registry.update",
        target_type="registry",
        target_id=reg.id,
        details={"name": reg.name, "changed": changed},
    )
    await db.commit()
    return reg


async def delete(db: AsyncSession, *, caller: Caller, registry_id: int) -> None:
    reg = await get(db, registry_id=registry_id)
    await audit.record(
        db,
        caller=caller,
        action="registry.delete",
        target_type="registry",
        target_id=reg.id,
        details={"name": reg.name, "host": reg.host},
    )
    await db.delete(reg)
    await db.commit()


async def auth_for(
    db: AsyncSession, *, cipher: Cipher, image: str, admin: bool
) -> RegistryAuth | None:
    """The credentials to pull `image` with, if any may be used (admins: any; members: the
    shared ones)."""
    host = registry_of(image)
    reg = (await db.execute(select(Registry).where(Registry.host == host))).scalar_one_or_none()
    if reg is None or not (admin or reg.shared):
        return None
    return RegistryAuth(reg.host, reg.username, cipher.decrypt(reg.password))
