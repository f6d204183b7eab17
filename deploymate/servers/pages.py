"""Console page /app/server-review: list, create, edit, pin host keys, test, diagnose, delete."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from deploymate.deps import CurrentPrincipal, DbDep, SettingsDep
from deploymate.errors import DeployMateError
from deploymate.servers import service
from deploymate.servers.deps import CipherDep, PoolDep, ViewerDep
from deploymate.servers.schemas import HostPort, ServerCreate, ServerUpdate
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)
PAGE = "/app/server-review"

TEXT_FIELDS = ("name", "host", "username", "purpose", "criticality", "notes")
SECRET_FIELDS = ("private_key", "passphrase", "password")


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _port(value: str) -> int | str:
    """Digits become a number for validation; anything else is passed on to be refused."""
    return int(value) if value.isascii() and value.isdigit() else value


def _labels(text: str) -> dict[str, str]:
    """`key=value` pairs, one per line or comma-separated."""
    pairs = [p.strip() for chunk in text.splitlines() for p in chunk.split(",") if p.strip()]
    return {key.strip(): value.strip() for key, _, value in (p.partition("=") for p in pairs)}


async def _page(
    request: Request,
    principal: Any,
    db: Any,
    cipher: Any,
    viewer: Any,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    servers = await service.to_out(db, await service.list_visible(db, viewer), cipher)
    edit_id = request.query_params.get("edit")
    editing = next((s for s in servers if edit_id and str(s.id) == edit_id), None)
    base = {
        "servers": servers,
        "editing": context.pop("editing", editing),
        "form": {},
        "scan": None,
        "error": None,
        "message": None,
        "result": None,
        "diagnostics": None,
    }
    return render(request, "servers.html", {**base, **context}, principal=principal, status=status)


async def _failed(
    request: Request,
    principal: Any,
    db: Any,
    cipher: Any,
    viewer: Any,
    exc: ValidationError | DeployMateError,
    **context: Any,
) -> Response:
    """The page again, with the reason a form was refused and the right status."""
    if isinstance(exc, ValidationError):
        return await _page(
            request,
            principal,
            db,
            cipher,
            viewer,
            status=422,
            error=_validation_message(exc),
            **context,
        )
    return await _page(
        request, principal, db, cipher, viewer, status=exc.status, error=exc.detail, **context
    )


@router.get(PAGE, response_class=HTMLResponse)
async def server_review(
    request: Request, principal: CurrentPrincipal, db: DbDep, cipher: CipherDep, viewer: ViewerDep
) -> Response:
    return await _page(request, principal, db, cipher, viewer)


@router.post(f"{PAGE}/scan", response_class=HTMLResponse)
async def scan(
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    cipher: CipherDep,
    viewer: ViewerDep,
    host: Annotated[str, Form(max_length=300)] = "",
    port: Annotated[str, Form(max_length=10)] = "22",
) -> Response:
    form = {"host": host, "port": port}
    try:
        target = HostPort.model_validate({"host": host, "port": _port(port)})
        keys = await service.scan_host_key(db, viewer, target.host, target.port)
    except (ValidationError, DeployMateError) as exc:
        return await _failed(request, principal, db, cipher, viewer, exc, form=form)
    return await _page(
        request, principal, db, cipher, viewer, form=form, scan=[asdict(k) for k in keys]
    )


@router.post(PAGE, response_class=HTMLResponse)
async def create(
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    settings: SettingsDep,
    cipher: CipherDep,
    viewer: ViewerDep,
) -> Response:
    raw = await request.form()
    form = {k: str(v) for k, v in raw.items() if isinstance(v, str) and k not in SECRET_FIELDS}
    data: dict[str, Any] = {k: form.get(k, "") for k in TEXT_FIELDS}
    port = form.get("port", "22")
    data.update(
        port=_port(port),
        auth_type=form.get("auth_type", "key"),
        labels=_labels(form.get("labels", "")),
        host_key=form.get("host_key") or None,
    )
    for key in SECRET_FIELDS:
        value = raw.get(key)
        if isinstance(value, str) and value:
            data[key] = value.replace("\r\n", "\n")
    try:
        server = await service.create(
            db, settings, cipher, viewer, ServerCreate.model_validate(data)
        )
    except (ValidationError, DeployMateError) as exc:
        return await _failed(request, principal, db, cipher, viewer, exc, form=form)
    return RedirectResponse(f"{PAGE}?created={server.id}", status_code=303)


@router.post(f"{PAGE}/{{server_id}}/edit", response_class=HTMLResponse)
async def edit(
    server_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    settings: SettingsDep,
    cipher: CipherDep,
    pool: PoolDep,
    viewer: ViewerDep,
) -> Response:
    raw = await request.form()
    data: dict[str, Any] = {k: str(raw[k]) for k in TEXT_FIELDS if isinstance(raw.get(k), str)}
    port = str(raw.get("port", ""))
    if port:
        data["port"] = _port(port)
    if isinstance(raw.get("auth_type"), str):
        data["auth_type"] = raw["auth_type"]
    if isinstance(raw.get("labels"), str):
        data["labels"] = _labels(str(raw["labels"]))
    for key in SECRET_FIELDS:  # blank means "keep the stored value"
        value = raw.get(key)
        if isinstance(value, str) and value:
            data[key] = value.replace("\r\n", "\n")
    try:
        await service.update(
            db, settings, cipher, pool, viewer, server_id, ServerUpdate.model_validate(data)
        )
    except (ValidationError, DeployMateError) as exc:
        return await _failed(request, principal, db, cipher, viewer, exc)
    return RedirectResponse(PAGE, status_code=303)


@router.post(f"{PAGE}/{{server_id}}/scan", response_class=HTMLResponse)
async def scan_existing(
    server_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    cipher: CipherDep,
    viewer: ViewerDep,
) -> Response:
    try:
        server = await service.get_visible(db, viewer, server_id)
        keys = await service.scan_host_key(db, viewer, server.host, server.port)
    except DeployMateError as exc:
        return await _failed(request, principal, db, cipher, viewer, exc)
    return await _page(
        request,
        principal,
        db,
        cipher,
        viewer,
        scan=[asdict(k) for k in keys],
        scan_server_id=server_id,
    )


@router.post(f"{PAGE}/{{server_id}}/pin", response_class=HTMLResponse)
async def pin(
    server_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    settings: SettingsDep,
    cipher: CipherDep,
    pool: PoolDep,
    viewer: ViewerDep,
    public_key: Annotated[str, Form(max_length=8192)] = "",
) -> Response:
    try:
        await service.pin_host_key(db, settings, pool, viewer, server_id, public_key)
    except DeployMateError as exc:
        return await _failed(request, principal, db, cipher, viewer, exc)
    return await _page(request, principal, db, cipher, viewer, message="Host key pinned.")


@router.post(f"{PAGE}/{{server_id}}/test", response_class=HTMLResponse)
async def test(
    server_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    settings: SettingsDep,
    cipher: CipherDep,
    pool: PoolDep,
    viewer: ViewerDep,
) -> Response:
    try:
        result = await service.run_check(db, settings, cipher, pool, viewer, server_id)
    except DeployMateError as exc:
        return await _failed(request, principal, db, cipher, viewer, exc)
    return await _page(
        request, principal, db, cipher, viewer, result=result, result_server_id=server_id
    )


@router.get(f"{PAGE}/{{server_id}}/diagnostics", response_class=HTMLResponse)
async def diagnostics(
    server_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    cipher: CipherDep,
    pool: PoolDep,
    viewer: ViewerDep,
) -> Response:
    try:
        facts = await service.diagnostics(db, cipher, pool, viewer, server_id)
    except DeployMateError as exc:
        return await _failed(request, principal, db, cipher, viewer, exc)
    return await _page(
        request,
        principal,
        db,
        cipher,
        viewer,
        diagnostics=asdict(facts),
        result_server_id=server_id,
    )


@router.post(f"{PAGE}/{{server_id}}/delete", response_class=HTMLResponse)
async def delete(
    server_id: int,
    request: Request,
    principal: CurrentPrincipal,
    db: DbDep,
    cipher: CipherDep,
    pool: PoolDep,
    viewer: ViewerDep,
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirm != "yes":
        return await _page(
            request,
            principal,
            db,
            cipher,
            viewer,
            status=422,
            error="Tick the confirmation box to delete a server.",
        )
    try:
        await service.delete(db, pool, viewer, server_id)
    except DeployMateError as exc:
        return await _failed(request, principal, db, cipher, viewer, exc)
    return await _page(request, principal, db, cipher, viewer, message="Server deleted.")
