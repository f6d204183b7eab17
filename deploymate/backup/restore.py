"""Applying a backup bundle: only after its dry-run finds no error, every section in one
transaction, so a restore that fails half-way changes nothing.

Ids are not kept. Every record gets a new id here and every reference to it (owners, servers,
apps, releases, an app release's parts) is rewritten, so a bundle restores into an instance
whatever ids it already used, on SQLite or PostgreSQL alike.

Rules (docs/backup.md "Restore"):
- an instance is empty when it holds users only (its first admin); a restore into one that is
  not needs `merge`: what exists here by name (a server, an app, a template, a webhook, a live
  deployment on the same target) is kept as it is here and the bundle's record is skipped with
  everything that hangs on it; the rest is added;
- a user whose username exists here is always kept as it is here (the restoring admin keeps
  their password);
- users restored without a password hash get a temporary password, shown once to the
  restoring admin, and must change it at first sign-in;
- sealed values (server credentials, secret env, app secrets, webhook URLs) are re-sealed with
  this instance's current key.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from deploymate.apps.models import App, AppRelease, AppSecret
from deploymate.audit import service as audit
from deploymate.auth.models import User
from deploymate.backup import analysis, service
from deploymate.backup import format as bundle
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.crypto import Cipher
from deploymate.core.db import Base, UTCDateTime
from deploymate.core.errors import Conflict, DeployMateError, ValidationFailed
from deploymate.core.passwords import hash_password
from deploymate.deployments.models import Deployment, DeploymentTemplate, Release
from deploymate.notifications.models import Webhook
from deploymate.servers.models import Server

CONFIRM_WORD = "restore"
# Tables that must be empty for a restore without merge rules (users may exist).
OCCUPYING: dict[str, type[Base]] = {
    "servers": Server,
    "deployments": Deployment,
    "templates": DeploymentTemplate,
    "apps": App,
    "webhooks": Webhook,
}


class RestoreFailed(DeployMateError):
    """A record passed the dry-run but the database refused it: everything was undone."""

    code = "restore_failed"
    status = 422


class BundleRefused(DeployMateError):
    """The dry-run found errors (or could not read the bundle): nothing is applied."""

    code = "bundle_refused"
    status = 422

    def __init__(self, report: analysis.DryRunReport) -> None:
        if report.fatal is not None:
            message = f"the bundle cannot be read: {report.fatal.message}; nothing was changed"
            super().__init__(message, code=report.fatal.code)
            self.status = report.http_status
        else:
            failing = [s.section for s in report.sections if s.status == "error"]
            first = next(
                r.message for s in report.sections for r in s.reasons if r.severity == "error"
            )
            super().__init__(
                f"the dry-run found errors in {', '.join(failing)} ({first}); fix them, or run "
                "`deploymate backup dry-run FILE` for every reason; nothing was changed"
            )
        self.report = report


@dataclass
class RestoreResult:
    restored: dict[str, int] = field(default_factory=dict)
    kept: dict[str, list[str]] = field(default_factory=dict)  # merge: kept as they are here
    # Users restored without a hash: username -> temporary password (shown once, never stored).
    passwords: dict[str, str] = field(default_factory=dict)
    merge: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "restored": self.restored,
            "kept": self.kept,
            "merge": self.merge,
            "temporary_passwords": [
                {"username": name, "password": pw} for name, pw in self.passwords.items()
            ],
        }

    @property
    def summary(self) -> str:
        added = ", ".join(f"{n} {name}" for name, n in self.restored.items() if n) or "nothing"
        kept = sum(len(v) for v in self.kept.values())
        if not kept:
            return f"restored {added}"
        return f"restored {added}; kept {kept} " + (
            "record as it is here" if kept == 1 else "records as they are here"
        )


def check_confirmation(confirm: str | None) -> None:
    if (confirm or "").strip() != CONFIRM_WORD:
        raise ValidationFailed(
            f"a restore writes to this instance: type {CONFIRM_WORD} to confirm",
            field="confirm",
            code="confirmation_required",
        )


async def occupied(db: AsyncSession) -> dict[str, int]:
    """What this instance already holds beyond its users."""
    counts = {}
    for name, model in OCCUPYING.items():
        n = int((await db.execute(select(func.count()).select_from(model))).scalar_one())
        if n:
            counts[name] = n
    return counts


async def restore(
    db: AsyncSession,
    *,
    settings: Settings,
    cipher: Cipher,
    caller: Caller,
    data: bytes,
    merge: bool = False,
) -> RestoreResult:
    """Apply a bundle whose dry-run has no error; all or nothing."""
    report = await service.analyse(db, settings=settings, cipher=cipher, data=data)
    if report.fatal is not None or report.status == "error":
        await _record_refusal(db, caller, report, merge)
        raise BundleRefused(report)
    held = await occupied(db)
    if held and not merge:
        what = ", ".join(f"{n} {name}" for name, n in held.items())
        raise Conflict(
            f"this instance is not empty ({what}): restore into an empty instance, or choose "
            "the merge rules (--merge, merge=true: what exists here by name is kept, the rest "
            "is added; docs/backup.md)",
            code="instance_not_empty",
        )
    sections = json.loads(data.decode("utf-8-sig"))["sections"]
    result = RestoreResult(merge=merge)
    try:
        await _Apply(db, cipher, sections, result).run()
        await audit.record(
            db,
            caller=caller,
            action="backup.restore",
            target_type="backup",
            details={
                **service.report_details(report),
                "merge": merge,
                "restored": result.restored,
                "kept": {k: len(v) for k, v in result.kept.items()},
                "temporary_passwords": len(result.passwords),  # how many, never which
            },
        )
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return result


async def _record_refusal(
    db: AsyncSession, caller: Caller, report: analysis.DryRunReport, merge: bool
) -> None:
    await audit.record(
        db,
        caller=caller,
        action="backup.restore",
        target_type="backup",
        outcome="failure",
        details={**service.report_details(report), "merge": merge},
    )
    await db.commit()


def _parse_time(value: Any) -> Any:
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def _columns(model: type[Base], record: dict[str, Any], *skip: str) -> dict[str, Any]:
    """The record's values for the model's columns, times parsed; ids and `skip` left out."""
    values: dict[str, Any] = {}
    for column in model.__table__.columns:
        key = column.key
        if key == "id" or key in skip or key not in record:
            continue
        value = record[key]
        values[key] = _parse_time(value) if isinstance(column.type, UTCDateTime) else value
    return values


class _Apply:
    """One restore's inserts; `ids[section]` maps a bundle id to the id of the row here."""

    def __init__(
        self,
        db: AsyncSession,
        cipher: Cipher,
        sections: dict[str, Any],
        result: RestoreResult,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.sections = sections
        self.result = result
        self.ids: dict[str, dict[int, int]] = {name: {} for name in bundle.RECORD_SECTIONS}
        self.skipped: dict[str, set[int]] = {name: set() for name in bundle.RECORD_SECTIONS}

    def _records(self, name: str) -> list[dict[str, Any]]:
        value = self.sections.get(name)
        return value if isinstance(value, list) else []

    def _keep(self, name: str, bundle_id: int, here_id: int | None, label: str) -> None:
        if here_id is not None:
            self.ids[name][bundle_id] = here_id
        self.skipped[name].add(bundle_id)
        self.result.kept.setdefault(name, []).append(label)

    def _reseal(self, token: str | None) -> str | None:
        return None if token is None else self.cipher.rotate(token)

    def _user(self, bundle_id: Any) -> int | None:
        return self.ids["users"].get(bundle_id) if isinstance(bundle_id, int) else None

    async def _add(self, name: str, record: dict[str, Any], row: Base) -> None:
        self.db.add(row)
        try:
            await self.db.flush()
        except (DBAPIError, StatementError) as exc:
            label = record.get("name") or record.get("username") or f"#{record['id']}"
            cause = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            raise RestoreFailed(
                f"{name} record {label} could not be stored ({cause}); the restore was undone: "
                "nothing was changed"
            ) from None
        self.ids[name][record["id"]] = int(row.id)  # type: ignore[attr-defined]
        self.result.restored[name] = self.result.restored.get(name, 0) + 1

    async def _existing(self, stmt: Any) -> int | None:
        found = (await self.db.execute(stmt)).scalars().first()
        return None if found is None else int(found)

    async def run(self) -> None:
        for name in bundle.RECORD_SECTIONS:
            self.result.restored[name] = 0
        await self._users()
        await self._servers()
        await self._apps()
        await self._templates()
        await self._deployments()
        await self._releases()
        await self._app_secrets()
        await self._app_releases()
        await self._webhooks()
        await self._links()

    async def _users(self) -> None:
        for r in self._records("users"):
            here = await self._existing(select(User.id).where(User.username == r["username"]))
            if here is not None:
                self._keep("users", r["id"], here, r["username"])
                continue
            values = _columns(User, r, "password_hash")
            stored = r.get("password_hash")
            if isinstance(stored, str) and stored.startswith("$argon2"):
                values["password_hash"] = stored
            else:
                temporary = secrets.token_urlsafe(15)
                self.result.passwords[r["username"]] = temporary
                values["password_hash"] = await asyncio.to_thread(hash_password, temporary)
                values["must_change_password"] = True
            await self._add("users", r, User(**values))

    async def _servers(self) -> None:
        for r in self._records("servers"):
            here = await self._existing(select(Server.id).where(Server.name == r["name"]))
            if here is not None:
                self._keep("servers", r["id"], here, r["name"])
                continue
            values = _columns(Server, r, "owner_id", "credentials")
            row = Server(
                **values,
                owner_id=self._user(r.get("owner_id")),
                credentials=self._reseal(r["credentials"]),
            )
            await self._add("servers", r, row)

    async def _apps(self) -> None:
        for r in self._records("apps"):
            here = await self._existing(select(App.id).where(App.name == r["name"]))
            if here is not None:
                self._keep("apps", r["id"], here, r["name"])
                continue
            values = _columns(App, r, "owner_id")
            await self._add("apps", r, App(**values, owner_id=self._user(r.get("owner_id"))))

    async def _templates(self) -> None:
        for r in self._records("templates"):
            owner = self._user(r.get("owner_id"))
            here = await self._existing(
                select(DeploymentTemplate.id).where(
                    DeploymentTemplate.name == r.get("name"), DeploymentTemplate.owner_id == owner
                )
            )
            if here is not None:
                self._keep("templates", r["id"], here, str(r.get("name")))
                continue
            values = _columns(DeploymentTemplate, r, "owner_id")
            await self._add("templates", r, DeploymentTemplate(**values, owner_id=owner))

    def _server_here(self, bundle_id: Any) -> int | None:
        if bundle_id is None:
            return None
        return self.ids["servers"].get(bundle_id, bundle_id)  # else a server id of this instance

    async def _deployments(self) -> None:
        for r in self._records("deployments"):
            server_id = self._server_here(r["server_id"])
            live = r.get("status") != "deleted" and not r.get("deleted_at")
            if live:
                here = await self._existing(
                    select(Deployment.id).where(
                        Deployment.name == r["name"],
                        Deployment.server_id.is_(None)
                        if server_id is None
                        else Deployment.server_id == server_id,
                        Deployment.status != "deleted",
                        Deployment.deleted_at.is_(None),
                    )
                )
                if here is not None:
                    self._keep("deployments", r["id"], here, r["name"])
                    continue
            app_id = r.get("app_id")
            values = _columns(
                Deployment, r, "server_id", "owner_id", "app_id", "secret_env", "current_release_id"
            )
            row = Deployment(
                **values,
                server_id=server_id,
                owner_id=self._user(r.get("owner_id")),
                app_id=None if app_id is None else self.ids["apps"].get(app_id),
                secret_env=self._reseal(r.get("secret_env")),
            )
            await self._add("deployments", r, row)

    async def _releases(self) -> None:
        for r in self._records("releases"):
            if r["deployment_id"] in self.skipped["deployments"]:
                self.skipped["releases"].add(r["id"])
                continue  # a deployment kept as it is here keeps its own history
            config = dict(r["config"])
            if isinstance(config.get("secret_env"), str):
                config["secret_env"] = self._reseal(config["secret_env"])
            values = _columns(Release, r, "deployment_id", "config", "rollback_of", "log")
            row = Release(
                **values,
                deployment_id=self.ids["deployments"][r["deployment_id"]],
                config=config,
                log={"lines": []},
            )
            await self._add("releases", r, row)

    async def _app_secrets(self) -> None:
        for r in self._records("app_secrets"):
            if r["app_id"] in self.skipped["apps"]:
                continue
            values = _columns(AppSecret, r, "app_id", "value")
            row = AppSecret(
                **values, app_id=self.ids["apps"][r["app_id"]], value=self._reseal(r["value"])
            )
            await self._add("app_secrets", r, row)

    def _parts(self, parts: dict[str, Any]) -> dict[str, Any]:
        """service -> server -> {deployment_id, release_id, ...} with this instance's ids."""
        mapped: dict[str, Any] = {}
        for service_name, servers in parts.items():
            if not isinstance(servers, dict):
                continue
            mapped[service_name] = {}
            for server, part in servers.items():
                if not isinstance(part, dict):
                    continue
                part = dict(part)
                for key, section in (("deployment_id", "deployments"), ("release_id", "releases")):
                    if isinstance(part.get(key), int):
                        part[key] = self.ids[section].get(part[key])
                mapped[service_name][server] = part
        return mapped

    async def _app_releases(self) -> None:
        for r in self._records("app_releases"):
            if r["app_id"] in self.skipped["apps"]:
                self.skipped["app_releases"].add(r["id"])
                continue
            values = _columns(AppRelease, r, "app_id", "parts", "shipped_from", "job_id")
            row = AppRelease(
                **values, app_id=self.ids["apps"][r["app_id"]], parts=self._parts(r["parts"])
            )
            await self._add("app_releases", r, row)

    async def _webhooks(self) -> None:
        for r in self._records("webhooks"):
            here = await self._existing(select(Webhook.id).where(Webhook.name == r["name"]))
            if here is not None:
                self._keep("webhooks", r["id"], here, r["name"])
                continue
            values = _columns(Webhook, r, "url")
            row = Webhook(**values, url=self.cipher.decrypt(r["url"]))
            await self._add("webhooks", r, row)

    async def _links(self) -> None:
        """References between records of one section, set once every record has its id."""
        await self._relink(
            "deployments", Deployment, "current_release_id", self.ids["releases"].get
        )
        await self._relink("releases", Release, "rollback_of", self.ids["releases"].get)
        await self._relink("app_releases", AppRelease, "shipped_from", self.ids["app_releases"].get)
        await self.db.flush()

    async def _relink(
        self, name: str, model: type[Base], column: str, lookup: Callable[[int], int | None]
    ) -> None:
        for r in self._records(name):
            target, here = r.get(column), self.ids[name].get(r["id"])
            if r["id"] in self.skipped[name] or here is None or not isinstance(target, int):
                continue
            row = await self.db.get(model, here)
            if row is None:
                continue
            setattr(row, column, lookup(target))
            if hasattr(row, "updated_at"):  # a link set by the restore is not an update
                flag_modified(row, "updated_at")
