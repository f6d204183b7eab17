"""What every signed-in user may do here: ask for more rights, keep saved views."""

from __future__ import annotations

from fastapi import APIRouter, status

from deploymate.admin import service
from deploymate.admin.schemas import (
    SavedViewIn,
    SavedViewOut,
    UpgradeRequestCreate,
    UpgradeRequestOut,
)
from deploymate.deps import CurrentPrincipal, DbDep

router = APIRouter(prefix="/api", tags=["account"])


@router.post("/upgrade-requests", status_code=status.HTTP_201_CREATED)
async def request_upgrade(
    body: UpgradeRequestCreate, principal: CurrentPrincipal, db: DbDep
) -> UpgradeRequestOut:
    row = await service.request_upgrade(db, principal.actor, principal.user, body.kind, body.reason)
    return UpgradeRequestOut.model_validate(row)


@router.get("/upgrade-requests")
async def my_requests(principal: CurrentPrincipal, db: DbDep) -> list[UpgradeRequestOut]:
    return [
        UpgradeRequestOut.model_validate(r) for r in await service.my_requests(db, principal.user)
    ]


@router.get("/views")
async def list_views(page: str, principal: CurrentPrincipal, db: DbDep) -> list[SavedViewOut]:
    return [
        SavedViewOut.model_validate(v) for v in await service.list_views(db, principal.user, page)
    ]


@router.post("/views", status_code=status.HTTP_201_CREATED)
async def save_view(body: SavedViewIn, principal: CurrentPrincipal, db: DbDep) -> SavedViewOut:
    """Named filter sets per user and page; the query string makes a view shareable as a URL."""
    view = await service.save_view(db, principal.user, body.page, body.name, body.query)
    return SavedViewOut.model_validate(view)


@router.delete("/views/{view_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_view(view_id: int, principal: CurrentPrincipal, db: DbDep) -> None:
    await service.delete_view(db, principal.user, view_id)
