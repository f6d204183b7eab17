"""Console page /app/backup: download a bundle, dry-run one, restore one (admins only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from deploymate.backup import restore as restoring
from deploymate.backup import service
from deploymate.backup.routes import BUNDLE_FIELD
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.errors import DeployMateError
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
        "restored": None,
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


@router.post(f"{PAGE}/restore", response_class=HTMLResponse)
async def restore(request: Request, me: AdminDep, db: DbDep, context: ContextDep) -> Response:
    settings = context.settings
    form = await request.form()
    upload = form.get(BUNDLE_FIELD)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _page(request, me, settings, status=422, error="Choose a bundle file to restore.")
    try:
        restoring.check_confirmation(str(form.get("confirm") or ""))
        result = await restoring.restore(
            db,
            settings=settings,
            cipher=context.cipher,
            caller=me,
            data=await upload.read(),
            merge=form.get("merge") == "on",
        )
    except restoring.BundleRefused as exc:
        return _page(
            request,
            me,
            settings,
            status=exc.status,
            report=exc.report.to_dict(),
            filename=upload.filename,
            error=exc.detail,
        )
    except DeployMateError as exc:
        return _page(request, me, settings, status=exc.status, error=exc.detail)
    response = _page(
        request, me, settings, restored={**result.to_dict(), "summary": result.summary}
    )
    response.headers["cache-control"] = "no-store"  # the temporary passwords, shown once
    return response
