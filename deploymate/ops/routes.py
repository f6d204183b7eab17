"""GET /api/ops/overview for admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from deploymate.deps import DbDep, require_admin
from deploymate.ops import service

router = APIRouter(prefix="/api/ops", tags=["ops"], dependencies=[Depends(require_admin)])


@router.get("/overview")
async def overview(db: DbDep) -> dict[str, Any]:
    return await service.overview(db)
