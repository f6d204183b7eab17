"""Operations endpoints: liveness for load balancers and monitors, the overview for admins."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from deploymate import __version__
from deploymate.core.db import ping
from deploymate.deps import DbDep, get_context, require_admin
from deploymate.ops import service

health_router = APIRouter(tags=["health"])
router = APIRouter(prefix="/api/ops", tags=["ops"], dependencies=[Depends(require_admin)])


@health_router.get("/api/health")
async def health(request: Request) -> JSONResponse:
    """Liveness with the database checked (503 naming it when it does not answer)."""
    try:
        await ping(get_context(request).engine)
    except (SQLAlchemyError, OSError):
        body = {
            "status": "error",
            "database": "unreachable",
            "version": __version__,
            "detail": "database unreachable",
            "code": "database_unreachable",
        }
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", "version": __version__})


@router.get("/overview")
async def overview(db: DbDep) -> dict[str, Any]:
    return await service.overview(db)
