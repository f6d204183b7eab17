"""JSON API for servers. Members see and use only their own servers; admins see all."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, status

from deploymate.deps import DbDep, SettingsDep
from deploymate.servers import service
from deploymate.servers.deps import CipherDep, PoolDep, ViewerDep
from deploymate.servers.schemas import (
    HostPort,
    PinHostKey,
    ScannedKeyOut,
    ScanResult,
    ServerCreate,
    ServerOut,
    ServerUpdate,
    SuggestedPorts,
    TestResult,
)

router = APIRouter(prefix="/api/servers", tags=["servers"])


@router.get("")
async def list_servers(db: DbDep, viewer: ViewerDep, cipher: CipherDep) -> list[ServerOut]:
    return await service.to_out(db, await service.list_visible(db, viewer), cipher)


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_server(
    body: ServerCreate, db: DbDep, settings: SettingsDep, viewer: ViewerDep, cipher: CipherDep
) -> ServerOut:
    server = await service.create(db, settings, cipher, viewer, body)
    return (await service.to_out(db, [server], cipher))[0]


@router.post("/scan-host-key")
async def scan_host_key(body: HostPort, db: DbDep, viewer: ViewerDep) -> ScanResult:
    """Read the keys a host offers; nothing is pinned until the operator confirms one."""
    keys = await service.scan_host_key(db, viewer, body.host, body.port)
    return ScanResult(
        host=body.host, port=body.port, keys=[ScannedKeyOut(**asdict(k)) for k in keys]
    )


@router.get("/{server_id}")
async def get_server(server_id: int, db: DbDep, viewer: ViewerDep, cipher: CipherDep) -> ServerOut:
    return (await service.to_out(db, [await service.get_visible(db, viewer, server_id)], cipher))[0]


@router.patch("/{server_id}")
async def update_server(
    server_id: int,
    body: ServerUpdate,
    db: DbDep,
    settings: SettingsDep,
    viewer: ViewerDep,
    cipher: CipherDep,
    pool: PoolDep,
) -> ServerOut:
    server = await service.update(db, settings, cipher, pool, viewer, server_id, body)
    return (await service.to_out(db, [server], cipher))[0]


@router.delete("/{server_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_server(server_id: int, db: DbDep, viewer: ViewerDep, pool: PoolDep) -> None:
    await service.delete(db, pool, viewer, server_id)


@router.post("/{server_id}/host-key")
async def pin_host_key(
    server_id: int,
    body: PinHostKey,
    db: DbDep,
    settings: SettingsDep,
    viewer: ViewerDep,
    cipher: CipherDep,
    pool: PoolDep,
) -> ServerOut:
    server = await service.pin_host_key(db, settings, pool, viewer, server_id, body.public_key)
    return (await service.to_out(db, [server], cipher))[0]


@router.post("/{server_id}/test")
async def test_server(
    server_id: int,
    db: DbDep,
    settings: SettingsDep,
    viewer: ViewerDep,
    cipher: CipherDep,
    pool: PoolDep,
) -> TestResult:
    return await service.run_check(db, settings, cipher, pool, viewer, server_id)


@router.get("/{server_id}/diagnostics")
async def diagnostics(
    server_id: int, db: DbDep, viewer: ViewerDep, cipher: CipherDep, pool: PoolDep
) -> dict[str, Any]:
    return asdict(await service.diagnostics(db, cipher, pool, viewer, server_id))


@router.get("/{server_id}/suggested-ports")
async def suggested_ports(
    server_id: int, db: DbDep, viewer: ViewerDep, cipher: CipherDep, pool: PoolDep
) -> SuggestedPorts:
    ports, listening = await service.suggested_ports(db, cipher, pool, viewer, server_id)
    return SuggestedPorts(ports=ports, listening=listening)
