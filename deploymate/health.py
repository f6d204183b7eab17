"""Liveness with the database checked, for load balancers and the smoke command."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from deploymate import __version__
from deploymate.db import ping

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(request: Request) -> JSONResponse:
    try:
        await ping(request.app.state.engine)
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
