"""Console page /app/server-review: list, create, edit, pin host keys, test, diagnose, delete."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.errors import DeployMateError
from deploymate.core.ids import parse_id
from deploymate.deps import CallerDep, ContextDep, DbDep, IdPath
from deploymate.monitoring import service as monitor
from deploymate.runtime import proxy
from deploymate.runtime.errors import RuntimeFailure
from deploymate.servers import checks, presenters, service
from deploymate.servers.models import Server
from deploymate.servers.schemas import HostPort, ServerCreate, ServerUpdate
from deploymate.servers.targets import executor_for
from deploymate.web import flash
from deploymate.web.forms import number, refused
from deploymate.web.render import pager, render

router = APIRouter(include_in_schema=False)
PAGE = "/app/server-review"

TEXT_FIELDS = ("name", "host", "username", "purpose", "criticality", "notes")
SECRET_FIELDS = ("private_key", "passphrase", "password")
PROXY_TIMEOUT = 15.0  # seconds for the proxy's state on a server's own view
CHANGES = 10  # the monitor's latest changes on a server's own view


def _labels(text: str) -> dict[str, str]:
    """`key=value` pairs, one per line or comma-separated."""
    pairs = [p.strip() for chunk in text.splitlines() for p in chunk.split(",") if p.strip()]
    return {key.strip(): value.strip() for key, _, value in (p.partition("=") for p in pairs)}


async def _page(
    request: Request,
    me: Caller,
    db: AsyncSession,
    context: AppContext,
    *,
    status: int = 200,
    **extra: Any,
) -> Response:
    servers = await presenters.present(
        db, servers=await service.list_for(db, caller=me), cipher=context.cipher
    )
    watched = await monitor.views(db, monitor.SERVER, [s.id for s in servers])
    edit_id = request.query_params.get("edit")
    editing = next((s for s in servers if edit_id and str(s.id) == edit_id), None)
    base = {
        "servers": servers,
        "editing": extra.pop("editing", editing),
        "form": {},
        "scan": None,
        "error": None,
        "message": None,
        "result": None,
        "diagnostics": None,
        "proxy_state": None,
        "monitoring": watched,
        "changes": None,
    }
    return render(request, "servers.html", {**base, **extra}, me=me, status=status)


LIST_PAGE = 50


@router.get("/app/servers", response_class=HTMLResponse)
async def listing(request: Request, me: CallerDep, db: DbDep, context: ContextDep) -> Response:
    """The servers you can see, a page at a time, with their state."""
    page = parse_id(request.query_params.get("page")) or 1
    total = await service.count_for(db, caller=me)
    rows = await service.list_for(db, caller=me, limit=LIST_PAGE, offset=(page - 1) * LIST_PAGE)
    context_ = {
        "servers": await presenters.present(db, servers=rows, cipher=context.cipher),
        "pager": pager(request, page=page, size=LIST_PAGE, total=total),
    }
    return render(request, "servers_list.html", context_, me=me)


@router.get(PAGE, response_class=HTMLResponse)
async def server_review(
    request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    return await _page(request, me, db, context)


@router.post(f"{PAGE}/scan", response_class=HTMLResponse)
async def scan(
    request: Request,
    me: CallerDep,
    db: DbDep,
    context: ContextDep,
    host: Annotated[str, Form(max_length=300)] = "",
    port: Annotated[str, Form(max_length=10)] = "22",
) -> Response:
    form = {"host": host, "port": port}
    try:
        target = HostPort.model_validate({"host": host, "port": number(port)})
        keys = await service.scan_host_key(
            db, settings=context.settings, caller=me, host=target.host, port=target.port
        )
    except (ValidationError, DeployMateError) as exc:
        return await refused(db, exc, partial(_page, request, me, db, context), form=form)
    return await _page(request, me, db, context, form=form, scan=[asdict(k) for k in keys])


@router.post(PAGE, response_class=HTMLResponse)
async def create(request: Request, me: CallerDep, db: DbDep, context: ContextDep) -> Response:
    raw = await request.form()
    form = {k: str(v) for k, v in raw.items() if isinstance(v, str) and k not in SECRET_FIELDS}
    data: dict[str, Any] = {k: form.get(k, "") for k in TEXT_FIELDS}
    data.update(
        port=number(form.get("port", "22")),
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
            db, context=context, caller=me, data=ServerCreate.model_validate(data)
        )
    except (ValidationError, DeployMateError) as exc:
        return await refused(db, exc, partial(_page, request, me, db, context), form=form)
    return flash.redirect(
        PAGE, await checks.test_added(db, context=context, caller=me, server=server)
    )


@router.post(f"{PAGE}/{{server_id}}/edit", response_class=HTMLResponse)
async def edit(
    server_id: IdPath, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    raw = await request.form()
    data: dict[str, Any] = {k: str(raw[k]) for k in TEXT_FIELDS if isinstance(raw.get(k), str)}
    port = str(raw.get("port", ""))
    if port:
        data["port"] = number(port)
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
            db,
            context=context,
            caller=me,
            server_id=server_id,
            data=ServerUpdate.model_validate(data),
        )
    except (ValidationError, DeployMateError) as exc:
        return await refused(db, exc, partial(_page, request, me, db, context))
    return RedirectResponse(PAGE, status_code=303)


@router.post(f"{PAGE}/{{server_id}}/scan", response_class=HTMLResponse)
async def scan_existing(
    server_id: IdPath, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    try:
        server = await service.get(db, caller=me, server_id=server_id)
        keys = await service.scan_host_key(
            db, settings=context.settings, caller=me, host=server.host, port=server.port
        )
    except DeployMateError as exc:
        return await refused(db, exc, partial(_page, request, me, db, context))
    return await _page(
        request, me, db, context, scan=[asdict(k) for k in keys], scan_server_id=server_id
    )


@router.post(f"{PAGE}/{{server_id}}/pin", response_class=HTMLResponse)
async def pin(
    server_id: IdPath,
    request: Request,
    me: CallerDep,
    db: DbDep,
    context: ContextDep,
    public_key: Annotated[str, Form(max_length=8192)] = "",
) -> Response:
    try:
        await service.pin_host_key(
            db, context=context, caller=me, server_id=server_id, public_key=public_key
        )
    except DeployMateError as exc:
        return await refused(db, exc, partial(_page, request, me, db, context))
    return flash.redirect(PAGE, "Host key pinned.")


@router.post(f"{PAGE}/{{server_id}}/test", response_class=HTMLResponse)
async def test(
    server_id: IdPath, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    try:
        result = await checks.run(db, context=context, caller=me, server_id=server_id)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_page, request, me, db, context))
    return await _page(request, me, db, context, result=result, result_server_id=server_id)


async def _proxy_state(context: AppContext, server: Server) -> dict[str, Any]:
    """The proxy on one server, for that server's own view only (never per row of a list).
    A server that does not answer shows the proxy as unknown; the page itself still renders."""
    try:
        found = await asyncio.wait_for(proxy.status(executor_for(context, server)), PROXY_TIMEOUT)
    except RuntimeFailure as exc:
        return {"known": False, "detail": exc.detail}
    except TimeoutError:
        return {"known": False, "detail": f"no answer within {PROXY_TIMEOUT:g}s"}
    return {"known": True, **found.as_dict()}


@router.get(f"{PAGE}/{{server_id}}/diagnostics", response_class=HTMLResponse)
async def diagnostics(
    server_id: IdPath, request: Request, me: CallerDep, db: DbDep, context: ContextDep
) -> Response:
    """The server's own view: host facts, and the state and version of its proxy."""
    try:
        facts = await checks.diagnostics(db, context=context, caller=me, server_id=server_id)
        server = await service.get(db, caller=me, server_id=server_id)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_page, request, me, db, context))
    return await _page(
        request,
        me,
        db,
        context,
        diagnostics=asdict(facts),
        proxy_state=await _proxy_state(context, server),
        proxy_server=server.name,
        changes=await monitor.recent_changes(
            db, kind=monitor.SERVER, subject_id=server_id, limit=CHANGES
        ),
        result_server_id=server_id,
    )


@router.post(f"{PAGE}/{{server_id}}/delete", response_class=HTMLResponse)
async def delete(
    server_id: IdPath,
    request: Request,
    me: CallerDep,
    db: DbDep,
    context: ContextDep,
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirm != "yes":
        return await _page(
            request,
            me,
            db,
            context,
            status=422,
            error="Tick the confirmation box to delete a server.",
        )
    try:
        await service.delete(db, context=context, caller=me, server_id=server_id)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_page, request, me, db, context))
    return flash.redirect(PAGE, "Server deleted.")
