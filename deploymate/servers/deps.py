"""Dependencies shared by the server API and console pages."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from deploymate.deps import CurrentPrincipal
from deploymate.runtime.ssh import SSHPool
from deploymate.servers.credentials import Cipher
from deploymate.servers.service import Viewer


def get_cipher(request: Request) -> Cipher:
    cipher: Cipher = request.app.state.cipher
    return cipher


def get_pool(request: Request) -> SSHPool:
    pool: SSHPool = request.app.state.ssh_pool
    return pool


def get_viewer(principal: CurrentPrincipal) -> Viewer:
    return Viewer(user=principal.user, actor=principal.actor)


CipherDep = Annotated[Cipher, Depends(get_cipher)]
PoolDep = Annotated[SSHPool, Depends(get_pool)]
ViewerDep = Annotated[Viewer, Depends(get_viewer)]
