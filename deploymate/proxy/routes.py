"""JSON API for the proxy of a target (`local` is the control host)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from deploymate.deps import CallerDep, ContextDep, DbDep
from deploymate.proxy import service

router = APIRouter(prefix="/api/proxy", tags=["proxy"])
Target = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


@router.get("/{target}")
async def proxy_status(
    target: Target, db: DbDep, me: CallerDep, context: ContextDep
) -> dict[str, Any]:
    """The proxy's state, version and the routes the records give it."""
    server = await service.target_of(db, context, me, target)
    return await service.status(context, server)


@router.post("/{target}/install")
async def install(target: Target, db: DbDep, me: CallerDep, context: ContextDep) -> dict[str, Any]:
    """Install the proxy when missing, and load its routes from the records."""
    server = await service.target_of(db, context, me, target)
    return await service.install(db, context, me, server, upgrade=False)


@router.post("/{target}/upgrade")
async def upgrade(target: Target, db: DbDep, me: CallerDep, context: ContextDep) -> dict[str, Any]:
    """Replace the proxy with the configured image (DEPLOYMATE_PROXY_IMAGE); routes come back
    from the records."""
    server = await service.target_of(db, context, me, target)
    return await service.install(db, context, me, server, upgrade=True)
