"""Console page /app/registries (admins): list, add, edit and delete registry credentials.

The password is write-only here as in the API: it is read from the form, sealed by the service
and never rendered, not even back into a refused form.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.core.caller import Caller
from deploymate.core.errors import Conflict, DeployMateError, ValidationFailed
from deploymate.core.ids import parse_id
from deploymate.deps import AdminDep, ContextDep, DbDep, IdPath
from deploymate.registries import service
from deploymate.registries.schemas import RegistryCreate, RegistryUpdate
from deploymate.web import flash
from deploymate.web.forms import refused, truthy
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)
PAGE = "/app/registries"
FIELDS = ("name", "url", "username", "password", "shared")


def _text(raw: Any, key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


# What a name or a username may be, in words rather than the schema's pattern.
PATTERNS = {
    "name": "use letters, digits, '.', '_' and '-', starting with a letter or a digit",
    "username": "no spaces and no ':'",
}


def _why(exc: ValidationError | DeployMateError) -> ValidationError | DeployMateError:
    """The refusal as the form shows it: next to the field it is about, in words."""
    if isinstance(exc, ValidationError):
        details: list[InitErrorDetails] = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            message = err["msg"]
            if err["type"] == "string_pattern_mismatch" and field in PATTERNS:
                message = PATTERNS[field]
            # Only the message and the place are kept: the input may be the password.
            reason = PydanticCustomError("refused", "{reason}", {"reason": message})
            details.append({"type": reason, "loc": err["loc"], "input": None})
        return ValidationError.from_exception_data(exc.title, details)
    # The service names the field a clash is about ("name: ...", "url: ...").
    head, sep, rest = exc.detail.partition(": ")
    if isinstance(exc, Conflict) and sep and head in FIELDS:
        placed = ValidationFailed(rest, field=head, code=exc.code)
        placed.status = exc.status
        return placed
    return exc


async def _page(
    request: Request, me: Caller, db: AsyncSession, *, status: int = 200, **context: Any
) -> Response:
    registries = [
        {
            "id": r.id,
            "name": r.name,
            "host": r.host,
            "username": r.username,
            "shared": r.shared,
            "created_at": r.created_at,
        }
        for r in await service.list_for(db, caller=me)
    ]
    editing = parse_id(str(context.pop("editing", None) or request.query_params.get("edit", "")))
    if editing is not None and not any(r["id"] == editing for r in registries):
        editing = None
    base: dict[str, Any] = {
        "registries": registries,
        "form": {},
        "error": None,
        "editing": editing,
        "edit_form": None,
    }
    return render(request, "registries.html", {**base, **context}, me=me, status=status)


@router.get(PAGE, response_class=HTMLResponse)
async def registries_page(request: Request, me: AdminDep, db: DbDep) -> Response:
    return await _page(request, me, db)


@router.post(PAGE, response_class=HTMLResponse)
async def create(request: Request, me: AdminDep, db: DbDep, context: ContextDep) -> Response:
    raw = await request.form()
    url = _text(raw, "url").strip()
    form = {
        "name": _text(raw, "name").strip(),
        # A URL with credentials in it is refused; it is not typed back into the form either.
        "url": "" if "@" in url else url,
        "username": _text(raw, "username").strip(),
        "shared": truthy(_text(raw, "shared")),
    }
    try:
        data = RegistryCreate.model_validate(
            {**form, "url": url, "password": _text(raw, "password")}
        )
        reg = await service.create(db, caller=me, cipher=context.cipher, data=data)
    except (ValidationError, DeployMateError) as exc:
        return await refused(db, _why(exc), partial(_page, request, me, db), form=form)
    return flash.redirect(PAGE, f"Registry {reg.name} ({reg.host}) added.")


@router.post(f"{PAGE}/{{registry_id}}", response_class=HTMLResponse)
async def edit(
    registry_id: IdPath, request: Request, me: AdminDep, db: DbDep, context: ContextDep
) -> Response:
    """Name, username and sharing; the password only when a new one is typed. The host stays:
    other credentials for it are another registry (delete, add again)."""
    raw = await request.form()
    form = {
        "name": _text(raw, "name").strip(),
        "username": _text(raw, "username").strip(),
        "shared": truthy(_text(raw, "shared")),
    }
    password = _text(raw, "password")
    page = partial(_page, request, me, db)
    try:
        data = RegistryUpdate.model_validate({**form, "password": password or None})
        reg = await service.update(
            db, caller=me, cipher=context.cipher, registry_id=registry_id, data=data
        )
    except (ValidationError, DeployMateError) as exc:
        return await refused(db, _why(exc), page, editing=registry_id, edit_form=form)
    said = "saved with a new password" if password else "saved"
    return flash.redirect(PAGE, f"Registry {reg.name} {said}.")


@router.post(f"{PAGE}/{{registry_id}}/delete", response_class=HTMLResponse)
async def delete(
    registry_id: IdPath,
    request: Request,
    me: AdminDep,
    db: DbDep,
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirm != "yes":
        return await _page(
            request, me, db, status=422, error="Tick the confirmation box to delete a registry."
        )
    try:
        reg = await service.get(db, registry_id=registry_id)
        name = reg.name
        await service.delete(db, caller=me, registry_id=registry_id)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_page, request, me, db))
    return flash.redirect(PAGE, f"Registry {name} deleted.")
