"""Preparing the database at start-up: migrate, check the credentials key, first admin."""

from __future__ import annotations

import logging
import sys

from deploymate import db
from deploymate.auth import service as auth_service
from deploymate.config import Settings
from deploymate.errors import ConfigurationError, ValidationFailed
from deploymate.servers import service as servers_service
from deploymate.servers.credentials import cipher_from_settings

log = logging.getLogger("deploymate")


def announce_bootstrap_password(username: str, password: str) -> None:
    """Shown once on the terminal, never logged: the only copy of the first admin's password."""
    print(
        f"\nDeployMate created the first admin account.\n  username: {username}\n"
        f"  password: {password}\nYou will be asked to change it at first sign-in.\n",
        file=sys.stderr,
        flush=True,
    )


async def prepare_database(settings: Settings, *, bootstrap: bool = True) -> None:
    """Migrate; with `bootstrap`, also refuse a wrong key and create the first admin."""
    engine = db.make_engine(settings.resolved_database_url)
    try:
        await db.upgrade(engine)
        if not bootstrap:
            return
        cipher = cipher_from_settings(settings)
        async with db.session_factory(engine)() as session:
            states = await servers_service.credential_states(session, cipher)
            unreadable = [s.server.name for s in states if s.state == "undecryptable"]
            if unreadable:
                raise ConfigurationError(
                    f"invalid configuration: DEPLOYMATE_SERVER_CREDENTIALS_KEY cannot decrypt the "
                    f"credentials of {len(unreadable)} server(s) ({', '.join(unreadable[:5])}); "
                    "wrong key? `deploymate credentials audit` lists them"
                )
            try:
                generated = await auth_service.bootstrap_admin(session, settings)
            except ValidationFailed as exc:
                problem = exc.detail.split(": ", 1)[-1]
                raise ConfigurationError(
                    f"invalid configuration: DEPLOYMATE_ADMIN_PASSWORD {problem}"
                ) from None
            encrypted = await servers_service.encrypt_plaintext(session, cipher)
        if generated:
            announce_bootstrap_password(settings.admin_username, generated)
        if encrypted:
            log.warning("encrypted %d plaintext server credential record(s)", encrypted)
    finally:
        await engine.dispose()
