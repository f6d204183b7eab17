"""Deployment targets: a server reached over SSH, or the control host's own Docker.

The one rule for the control host lives here: it is a target only when
DEPLOYMATE_LOCAL_DOCKER_ENABLED is on, and for a person only when they are an admin or were
granted local deployments. Every use case that touches the control host asks `control_host`.
"""

from __future__ import annotations

import hashlib

from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.crypto import Cipher
from deploymate.core.errors import PermissionDenied, ValidationFailed
from deploymate.runtime.executor import Executor
from deploymate.runtime.ssh import SSHTarget
from deploymate.servers.credentials import decrypt
from deploymate.servers.models import Server

CONTROL_HOST = "control host"


def control_host_refusal(settings: Settings, caller: Caller | None) -> PermissionDenied | None:
    """Why the control host is not a target (for this caller, when one is given), or None."""
    if not settings.local_docker:
        return PermissionDenied(
            "the control host is not a deployment target here "
            "(DEPLOYMATE_LOCAL_DOCKER_ENABLED=false)",
            code="local_docker_disabled",
        )
    if caller is not None and not (caller.is_admin or caller.can_deploy_local):
        return PermissionDenied(
            "members deploy to their own servers; add a server first, or ask an admin for "
            "local deployments (Upgrade requests)",
            code="local_not_allowed",
        )
    return None


def may_use_control_host(settings: Settings, caller: Caller | None) -> bool:
    return control_host_refusal(settings, caller) is None


def require_control_host(settings: Settings, caller: Caller | None) -> None:
    refusal = control_host_refusal(settings, caller)
    if refusal is not None:
        raise refusal


def target_for(server: Server, cipher: Cipher) -> SSHTarget:
    creds = decrypt(cipher, server)
    if creds is None:
        raise ValidationFailed(
            f"the credentials of server {server.name} cannot be decrypted with the configured "
            "keys; add the key they were sealed with to DEPLOYMATE_SERVER_CREDENTIALS_KEY",
            code="credentials_unreadable",
        )
    digest = hashlib.sha256(
        f"{server.host}|{server.port}|{server.username}|{server.host_key}|"
        f"{server.credentials}".encode()
    ).hexdigest()[:16]
    return SSHTarget(
        key=f"{server.id}:{digest}",
        host=server.host,
        port=server.port,
        username=server.username,
        host_key=server.host_key,
        private_key=creds.private_key,
        passphrase=creds.passphrase,
        password=creds.password,
    )


def executor_for(context: AppContext, server: Server | None) -> Executor:
    """The executor of a target; the control host only while the capability flag is on."""
    if server is None:
        require_control_host(context.settings, None)
        return context.local
    return context.pool.executor(target_for(server, context.cipher))


def describe(server: Server | None) -> str:
    return f"server {server.name}" if server is not None else f"the {CONTROL_HOST}"
