"""Backup API: download a bundle, dry-run a restore, apply one (admins only, all audited)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from deploymate.backup import restore as restoring
from deploymate.backup import service
from deploymate.core.errors import ValidationFailed
from deploymate.deps import AdminDep, ContextDep, DbDep, require_admin
from deploymate.web.http import error_response

router = APIRouter(prefix="/api/admin", tags=["backup"], dependencies=[Depends(require_admin)])

BUNDLE_FIELD = "bundle"
_BUNDLE_SCHEMA = {"type": "object", "description": "A backup bundle (see docs/backup.md)."}
DRY_RUN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _BUNDLE_SCHEMA},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {BUNDLE_FIELD: {"type": "string", "format": "binary"}},
                    "required": [BUNDLE_FIELD],
                }
            },
        },
    }
}


def bundle_filename(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"deploymate-backup-{stamp}.json"


async def read_bundle(request: Request, limit: int) -> bytes:
    """The bundle from a raw JSON body, or from the multipart file field `bundle`."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        return await request.body()
    form = await request.form(max_part_size=limit)
    value = form.get(BUNDLE_FIELD)
    if isinstance(value, UploadFile):
        return await value.read()
    if isinstance(value, str) and value:
        return value.encode()
    raise ValidationFailed(
        "send the bundle as the JSON request body, or as a multipart file field "
        f"named {BUNDLE_FIELD}",
        field="bundle",
        code="bundle_missing",
    )


@router.get(
    "/backup-bundle",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "The bundle file."}},
)
async def download_bundle(
    me: AdminDep,
    db: DbDep,
    context: ContextDep,
    include_password_hashes: Annotated[
        bool,
        Query(
            description="Include the users' password hashes (the bundle is marked sensitive); "
            "without them, restored users get a temporary password."
        ),
    ] = False,
) -> Response:
    """The backup bundle as a file; credentials only encrypted, password hashes on request."""
    data, _ = await service.download(
        db,
        settings=context.settings,
        cipher=context.cipher,
        caller=me,
        include_password_hashes=include_password_hashes,
    )
    return Response(
        data,
        media_type="application/json",
        headers={
            "content-disposition": f'attachment; filename="{bundle_filename()}"',
            "cache-control": "no-store",
        },
    )


@router.post("/restore/dry-run", openapi_extra=DRY_RUN_BODY)
async def restore_dry_run(
    request: Request, me: AdminDep, db: DbDep, context: ContextDep
) -> JSONResponse:
    """Analyse a bundle and apply nothing: per section ok, warn or error with the reasons."""
    try:
        data = await read_bundle(request, context.settings.max_upload_bytes)
    except ClientDisconnect:  # the edge already answered 413 for an over-long chunked body
        return error_response(400, "the request body was not received", "bad_request")
    report = await service.dry_run(
        db, settings=context.settings, cipher=context.cipher, caller=me, data=data
    )
    if report.fatal is not None:
        return error_response(
            report.http_status, report.fatal.message, report.fatal.code, report=report.to_dict()
        )
    return JSONResponse(report.to_dict(), headers={"cache-control": "no-store"})


@router.post("/restore", openapi_extra=DRY_RUN_BODY)
async def restore(
    request: Request,
    me: AdminDep,
    db: DbDep,
    context: ContextDep,
    confirm: Annotated[
        str | None, Query(description=f"Type {restoring.CONFIRM_WORD} to confirm.")
    ] = None,
    merge: Annotated[
        bool,
        Query(
            description="Into an instance that is not empty: keep what exists here by name, "
            "add the rest (docs/backup.md)."
        ),
    ] = False,
) -> JSONResponse:
    """Apply a bundle after its dry-run passes, in one transaction. The temporary passwords of
    users restored without a hash are in this answer only."""
    restoring.check_confirmation(confirm)
    try:
        data = await read_bundle(request, context.settings.max_upload_bytes)
    except ClientDisconnect:
        return error_response(400, "the request body was not received", "bad_request")
    try:
        result = await restoring.restore(
            db,
            settings=context.settings,
            cipher=context.cipher,
            caller=me,
            data=data,
            merge=merge,
        )
    except restoring.BundleRefused as exc:
        return error_response(exc.status, exc.detail, exc.code, report=exc.report.to_dict())
    return JSONResponse(
        {**result.to_dict(), "summary": result.summary}, headers={"cache-control": "no-store"}
    )
