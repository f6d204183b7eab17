"""Console page /app/backup: download a bundle, upload one for a restore dry-run (admins only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from deploymate.backup import service
from deploymate.backup.routes import BUNDLE_FIELD
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.deps import AdminDep, ContextDep, DbDep, SettingsDep
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)
PAGE = "/app/backup"


def _page(
    request: Request, me: Caller, settings: Settings, *, status: int = 200, **extra: Any
) -> Response:
    context = {
        "report": None,
        "filename": None,
        "error": None,
        "limit_mib": f"{settings.max_upload_bytes / 1_048_576:g}",
        **extra,
    }
    return render(request, "backup.html", context, me=me, status=status)


@router.get(PAGE, response_class=HTMLResponse)
async def backup_page(request: Request, me: AdminDep, settings: SettingsDep) -> Response:
    return _page(request, me, settings)


@router.post(f"{PAGE}/dry-run", response_class=HTMLResponse)
async def dry_run(request: Request, me: AdminDep, db: DbDep, context: ContextDep) -> Response:
    settings = context.settings
    form = await request.form()
    upload = form.get(BUNDLE_FIELD)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _page(request, me, settings, status=422, error="Choose a bundle file to check.")
    data = await upload.read()
    report = await service.dry_run(
        db, settings=settings, cipher=context.cipher, caller=me, data=data
    )
    return _page(
        request,
        me,
        settings,
        status=report.http_status,
        report=report.to_dict(),
        filename=upload.filename,
        error=report.fatal.message if report.fatal else None,
    )
