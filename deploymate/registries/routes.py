"""JSON API for registry credentials: admins manage them; members list the shared ones."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from deploymate.deps import AdminDep, CallerDep, ContextDep, DbDep, IdPath, require_admin
from deploymate.registries import service
from deploymate.registries.models import Registry
from deploymate.registries.schemas import RegistryCreate, RegistryOut, RegistryUpdate

router = APIRouter(prefix="/api/registries", tags=["registries"])


def _out(reg: Registry) -> RegistryOut:
    return RegistryOut(
        id=reg.id,
        name=reg.name,
        host=reg.host,
        username=reg.username,
        shared=reg.shared,
        created_at=reg.created_at,
    )


@router.get("")
async def list_registries(db: DbDep, me: CallerDep) -> list[RegistryOut]:
    """Admins see every registry; members the ones shared with them. Never a password."""
    return [_out(r) for r in await service.list_for(db, caller=me)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(body: RegistryCreate, db: DbDep, me: AdminDep, context: ContextDep) -> RegistryOut:
    return _out(await service.create(db, caller=me, cipher=context.cipher, data=body))


@router.patch("/{registry_id}")
async def update(
    registry_id: IdPath, body: RegistryUpdate, db: DbDep, me: AdminDep, context: ContextDep
) -> RegistryOut:
    reg = await service.update(
        db, caller=me, cipher=context.cipher, registry_id=registry_id, data=body
    )
    return _out(reg)


@router.delete(
    "/{registry_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[Depends(require_admin)]
)
async def delete(registry_id: IdPath, db: DbDep, me: AdminDep) -> None:
    await service.delete(db, caller=me, registry_id=registry_id)
