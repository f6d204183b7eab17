"""Backup use cases: build a bundle from the database, and dry-run a bundle against it.

A dry-run only reads; the one row it writes is its audit event. Applying a bundle is in
backup.restore.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate import __version__
from deploymate.apps.models import App
from deploymate.audit import service as audit
from deploymate.auth.models import User
from deploymate.backup import analysis
from deploymate.backup import format as bundle
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.crypto import Cipher
from deploymate.deployments.models import Deployment
from deploymate.notifications.models import Webhook
from deploymate.servers.models import Server


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _rows(records: Sequence[Any], fields: Sequence[str]) -> list[dict[str, Any]]:
    return [{f: _value(getattr(r, f)) for f in fields} for r in records]


def settings_snapshot(settings: Settings) -> dict[str, Any]:
    """The non-secret settings named in bundle.SETTINGS_KEYS (`local_docker` is the effective
    value)."""
    return {key: getattr(settings, key) for key in bundle.SETTINGS_KEYS}


async def build(
    db: AsyncSession,
    *,
    settings: Settings,
    cipher: Cipher,
    include_password_hashes: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The whole bundle (manifest and sections) as a JSON-ready object."""
    sections: dict[str, Any] = {}
    for name, model in bundle.MODELS.items():
        fields = bundle.FIELDS[name]
        if name == "users" and include_password_hashes:
            fields = (*fields, "password_hash")
        stmt = select(model).order_by(model.__table__.c.id)
        sections[name] = _rows((await db.execute(stmt)).scalars().all(), fields)
    for hook in sections["webhooks"]:
        hook["url"] = cipher.encrypt(hook["url"])  # a URL may hold a token (Slack, Discord)
    sections["settings"] = settings_snapshot(settings)
    created = (now or datetime.now(UTC)).replace(microsecond=0)
    return bundle.make_bundle(
        sections,
        app_version=__version__,
        created_at=created.isoformat().replace("+00:00", "Z"),
        key_fingerprint=cipher.fingerprint,
        sensitive=include_password_hashes,
    )


async def download(
    db: AsyncSession,
    *,
    settings: Settings,
    cipher: Cipher,
    caller: Caller,
    include_password_hashes: bool = False,
) -> tuple[bytes, dict[str, int]]:
    """Build the bundle and record who downloaded it; returns the bytes and the counts."""
    made = await build(
        db, settings=settings, cipher=cipher, include_password_hashes=include_password_hashes
    )
    data = bundle.dumps(made)
    counts: dict[str, int] = made["manifest"]["counts"]
    await audit.record(
        db,
        caller=caller,
        action="backup.download",
        target_type="backup",
        details={
            "bytes": len(data),
            "counts": counts,
            "password_hashes": include_password_hashes,
        },
    )
    await db.commit()
    return data, counts


async def current_state(
    db: AsyncSession, *, settings: Settings, cipher: Cipher
) -> analysis.CurrentState:
    usernames = (await db.execute(select(User.username))).scalars().all()
    servers = {
        int(sid): str(name) for sid, name in (await db.execute(select(Server.id, Server.name)))
    }
    live = await db.execute(
        select(Deployment.name, Deployment.server_id).where(
            Deployment.status != "deleted", Deployment.deleted_at.is_(None)
        )
    )
    deployments = frozenset(
        (str(name), None if sid is None else servers.get(int(sid), f"#{sid}")) for name, sid in live
    )
    apps = (await db.execute(select(App.name))).scalars().all()
    webhooks = (await db.execute(select(Webhook.name))).scalars().all()
    return analysis.CurrentState(
        apps=frozenset(apps),
        webhooks=frozenset(webhooks),
        key_fingerprints=cipher.fingerprints,
        usernames=frozenset(usernames),
        servers=servers,
        deployments=deployments,
        settings=settings_snapshot(settings),
    )


async def analyse(
    db: AsyncSession, *, settings: Settings, cipher: Cipher, data: bytes
) -> analysis.DryRunReport:
    """The dry-run's report; reads only."""
    current = await current_state(db, settings=settings, cipher=cipher)
    # Parsing and checking a bundle of several MiB is CPU work: off the event loop.
    return await asyncio.to_thread(
        functools.partial(
            analysis.analyse,
            data,
            current=current,
            can_decrypt=cipher.can_decrypt,
            max_bytes=settings.max_upload_bytes,
        )
    )


def report_details(report: analysis.DryRunReport) -> dict[str, Any]:
    """What the audit trail keeps of a report: statuses and reason codes, no record content."""
    manifest = report.manifest or {}
    return {
        "bytes": report.size,
        "status": report.status,
        "readable": report.readable,
        "error_code": report.fatal.code if report.fatal else None,
        "format_version": manifest.get("format_version")
        if isinstance(manifest.get("format_version"), int)
        else None,
        "sections": {
            s.section: s.status
            for s in report.sections
            if s.section in bundle.SECTIONS or s.section == "bundle"
        },
        "reasons": sorted({r.code for s in report.sections for r in s.reasons}),
    }


async def dry_run(
    db: AsyncSession, *, settings: Settings, cipher: Cipher, caller: Caller, data: bytes
) -> analysis.DryRunReport:
    """Analyse a bundle against this instance. Reads only; writes nothing but the audit event."""
    report = await analyse(db, settings=settings, cipher=cipher, data=data)
    await audit.record(
        db,
        caller=caller,
        action="backup.restore_dry_run",
        target_type="backup",
        outcome="success" if report.readable else "failure",
        details=report_details(report),
    )
    await db.commit()
    return report
