"""JSON API for servers. Members see and use only their own servers; admins see all."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from deploymate.deps import CallerDep, ContextDep, DbDep, IdPath, PageDep
from deploymate.servers import checks, presenters, service
from deploymate.servers.schemas import (
    HostPort,
    PinHostKey,
    ScannedKeyOut,
    ScanResult,
    ServerCreate,
    ServerOut,
    ServerUpdate,
    TestResult,
)

router = APIRouter(prefix="/api/servers", tags=["servers"])


@router.get("")
async def list_servers(
    response: Response,
    page: PageDep,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
    name: Annotated[str | None, Query(max_length=64)] = None,
) -> list[ServerOut]:
    """A page of the servers you can see, by name (`?name=` for one name)."""
    servers = await service.list_for(db, caller=me, name=name, limit=page.limit, offset=page.offset)
    page.total(response, await service.count_for(db, caller=me, name=name))
    return await presenters.present(db, servers=servers, cipher=context.cipher)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_server(
    body: ServerCreate,
    db: DbDep,
    me: CallerDep,
    context: ContextDep,
    test: Annotated[
        bool, Query(description="test the connection now (false: for bulk imports)")
    ] = True,
) -> ServerOut:
    """Save a server, then test it at once: it stays saved if the test fails, marked with the
    failure (`last_check_ok` false, `last_check_message` says why)."""
    server = await service.create(db, context=context, caller=me, data=body)
    if test:
        await checks.test_added(db, context=context, caller=me, server=server)
        server = await service.get(db, caller=me, server_id=server.id)
    return await presenters.present_one(db, server=server, cipher=context.cipher)


@router.post("/scan-host-key")
async def scan_host_key(
    body: HostPort, db: DbDep, me: CallerDep, context: ContextDep
) -> ScanResult:
    """Read the keys a host offers; nothing is pinned until the operator confirms one."""
    keys = await service.scan_host_key(
        db, settings=context.settings, caller=me, host=body.host, port=body.port
    )
    return ScanResult(
        host=body.host, port=body.port, keys=[ScannedKeyOut(**asdict(k)) for k in keys]
    )


@router.get("/{server_id}")
async def get_server(server_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep) -> ServerOut:
    server = await service.get(db, caller=me, server_id=server_id)
    return await presenters.present_one(db, server=server, cipher=context.cipher)


@router.patch("/{server_id}")
async def update_server(
    server_id: IdPath, body: ServerUpdate, db: DbDep, me: CallerDep, context: ContextDep
) -> ServerOut:
    server = await service.update(db, context=context, caller=me, server_id=server_id, data=body)
    return await presenters.present_one(db, server=server, cipher=context.cipher)


@router.delete("/{server_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_server(server_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep) -> None:
    await service.delete(db, context=context, caller=me, server_id=server_id)


@router.post("/{server_id}/host-key")
async def pin_host_key(
    server_id: IdPath, body: PinHostKey, db: DbDep, me: CallerDep, context: ContextDep
) -> ServerOut:
    server = await service.pin_host_key(
        db, context=context, caller=me, server_id=server_id, public_key=body.public_key
    )
    return await presenters.present_one(db, server=server, cipher=context.cipher)


@router.post("/{server_id}/test")
async def test_server(
    server_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep
) -> TestResult:
    return await checks.run(db, context=context, caller=me, server_id=server_id)


@router.get("/{server_id}/diagnostics")
async def diagnostics(
    server_id: IdPath, db: DbDep, me: CallerDep, context: ContextDep
) -> dict[str, Any]:
    facts = await checks.diagnostics(db, context=context, caller=me, server_id=server_id)
    return asdict(facts)
