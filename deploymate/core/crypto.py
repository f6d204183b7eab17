"""Secrets at rest: Fernet (MultiFernet: the first key encrypts, every key decrypts).

Server credentials and secret environment values are sealed with the same cipher.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from deploymate.core.config import Settings
from deploymate.core.errors import ConfigurationError

log = logging.getLogger("deploymate.crypto")

KEY_FILE_NAME = "server-credentials.key"
FERNET_PREFIX = "gAAAAA"  # every Fernet token starts with the version byte 0x80, base64url-encoded


class Cipher:
    """Encrypts with the first configured key, decrypts with any of them."""

    def __init__(self, keys: list[str]) -> None:
        try:
            self._fernets = [Fernet(k.strip().encode()) for k in keys if k.strip()]
        except ValueError:
            raise ConfigurationError(
                "invalid configuration: DEPLOYMATE_SERVER_CREDENTIALS_KEY must hold Fernet keys "
                "(32 url-safe base64-encoded bytes), comma-separated"
            ) from None
        if not self._fernets:
            raise ConfigurationError(
                "invalid configuration: DEPLOYMATE_SERVER_CREDENTIALS_KEY is empty"
            )
        self._multi = MultiFernet(self._fernets)
        self.fingerprints = tuple(fingerprint(k) for k in keys if k.strip())

    @property
    def fingerprint(self) -> str:
        """The key that encrypts: what a bundle or a restore names, never the key itself."""
        return self.fingerprints[0]

    def encrypt(self, plaintext: str) -> str:
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        return self._multi.decrypt(token.encode()).decode()

    def can_decrypt(self, token: str) -> bool:
        try:
            self.decrypt(token)
        except (InvalidToken, ValueError):
            return False
        return True

    def rotate(self, token: str) -> str:
        """Re-encrypt with the first key (raises InvalidToken when no key fits)."""
        return self._multi.rotate(token.encode()).decode()


def fingerprint(key: str) -> str:
    """A short, one-way name for a key, to tell keys apart in messages."""
    return "sha256:" + hashlib.sha256(key.strip().encode()).hexdigest()[:16]


def looks_encrypted(value: str) -> bool:
    return value.startswith(FERNET_PREFIX)


def generate_key() -> str:
    return Fernet.generate_key().decode()


def cipher_from_settings(settings: Settings) -> Cipher:
    """The configured keys; in development without one, a key file in the data dir (0600)."""
    if settings.server_credentials_key is not None:
        return Cipher(settings.server_credentials_key.get_secret_value().split(","))
    if settings.env == "production":
        raise ConfigurationError("DEPLOYMATE_SERVER_CREDENTIALS_KEY is required in production")
    path = settings.data_dir / KEY_FILE_NAME
    if not path.exists():
        _write_key_file(path)
        log.warning(
            "no DEPLOYMATE_SERVER_CREDENTIALS_KEY set; generated a development key in %s. "
            "Back it up: without it, stored server credentials cannot be read.",
            path,
        )
    return Cipher([path.read_text(encoding="utf-8").strip()])


def _write_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(generate_key() + "\n")
