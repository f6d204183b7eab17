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
from deploymate.deps import CallerDep, DbDep, IdPath

router = APIRouter(prefix="/api", tags=["account"])


@router.post("/upgrade-requests", status_code=status.HTTP_201_CREATED)
async def request_upgrade(
    body: UpgradeRequestCreate, me: CallerDep, db: DbDep
) -> UpgradeRequestOut:
    row = await service.request_upgrade(db, caller=me, kind=body.kind, reason=body.reason)
    return UpgradeRequestOut.model_validate(row)


@router.get("/upgrade-requests")
async def my_requests(me: CallerDep, db: DbDep) -> list[UpgradeRequestOut]:
    return [UpgradeRequestOut.model_validate(r) for r in await service.my_requests(db, caller=me)]


@router.get("/views")
async def list_views(page: str, me: CallerDep, db: DbDep) -> list[SavedViewOut]:
    views = await service.list_views(db, caller=me, page=page[:32])
    return [SavedViewOut.model_validate(v) for v in views]


@router.post("/views", status_code=status.HTTP_201_CREATED)
async def save_view(body: SavedViewIn, me: CallerDep, db: DbDep) -> SavedViewOut:
    """Named filter sets per user and page; the query string makes a view shareable as a URL."""
    view = await service.save_view(db, caller=me, page=body.page, name=body.name, query=body.query)
    return SavedViewOut.model_validate(view)


@router.delete("/views/{view_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_view(view_id: IdPath, me: CallerDep, db: DbDep) -> None:
    await service.delete_view(db, caller=me, view_id=view_id)
