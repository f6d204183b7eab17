"""Preparing the database at start-up: migrate, check the credentials key, first admin."""

from __future__ import annotations

import logging
import sys

from deploymate.auth import service as auth_service
from deploymate.core import db
from deploymate.core.config import Settings
from deploymate.core.crypto import cipher_from_settings
from deploymate.core.errors import ConfigurationError, ValidationFailed
from deploymate.servers import credentials

log = logging.getLogger("deploymate")


def announce_bootstrap_password(username: str, password: str) -> None:
    """Shown once on the terminal, never logged: the only copy of the first admin's password."""
    print(
        f"\nDeployMate created the first admin account.\n  username: {username}\n"
        f"  password: {password}\nYou will be asked to change it at first sign-in.\n",
        file=sys.stderr,
        flush=True,
    )


def private_data_dir(settings: Settings) -> None:
    """The data dir holds the database and the key file: readable by its owner only."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        settings.data_dir.chmod(0o700)
    except OSError as exc:
        log.warning("cannot make %s private (mode 0700): %s", settings.data_dir, exc.strerror)


async def prepare_database(settings: Settings, *, bootstrap: bool = True) -> None:
    """Migrate; with `bootstrap`, also refuse a wrong key and create the first admin."""
    private_data_dir(settings)
    engine = db.make_engine(settings.resolved_database_url)
    try:
        await db.upgrade(engine)
        if not bootstrap:
            return
        cipher = cipher_from_settings(settings)
        async with db.session_factory(engine)() as session:
            states = await credentials.states(session, cipher=cipher)
            unreadable = [s.server.name for s in states if s.state == "undecryptable"]
            if unreadable:
                raise ConfigurationError(
                    f"invalid configuration: DEPLOYMATE_SERVER_CREDENTIALS_KEY cannot decrypt the "
                    f"credentials of {len(unreadable)} server(s) ({', '.join(unreadable[:5])}); "
                    "wrong key? `deploymate credentials audit` lists them"
                )
            try:
                generated = await auth_service.bootstrap_admin(session, settings=settings)
            except ValidationFailed as exc:
                problem = exc.message
                raise ConfigurationError(
                    f"invalid configuration: DEPLOYMATE_ADMIN_PASSWORD {problem}"
                ) from None
            encrypted = await credentials.encrypt_plaintext(session, cipher=cipher)
        if generated:
            announce_bootstrap_password(settings.admin_username, generated)
        if encrypted:
            log.warning("encrypted %d plaintext server credential record(s)", encrypted)
    finally:
        await engine.dispose()
