"""Apps: a spec stored after validation (servers named must be ones the caller may use), and
secrets per environment, sealed, write-only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.apps import spec as app_spec
from deploymate.apps.models import App, AppSecret
from deploymate.audit import service as audit
from deploymate.core import scopes
from deploymate.core.caller import Caller
from deploymate.core.crypto import Cipher
from deploymate.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from deploymate.servers.models import Server

MAX_SECRET = 32_768


def refusal(exc: app_spec.SpecInvalid) -> ValidationFailed:
    """A refused spec as the API says it: the first problem in words, all of them as data."""
    first = exc.problems[0].render(exc.filename) if exc.problems else "invalid spec"
    more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
    return ValidationFailed(
        f"{first}{more}",
        field="spec",
        code="spec_invalid",
        problems=[p.as_dict() for p in exc.problems],
    )


async def _server_names(db: AsyncSession, caller: Caller) -> set[str]:
    """The servers an app of this caller may name (members: their own)."""
    stmt = select(Server.name)
    if not caller.is_admin:
        stmt = stmt.where(Server.owner_id == caller.user_id)
    return set((await db.execute(stmt)).scalars())


async def get(db: AsyncSession, *, caller: Caller, name: str) -> App:
    found = (await db.execute(select(App).where(App.name == name))).scalar_one_or_none()
    if found is None or not caller.owns(found.owner_id):
        raise NotFound(
            f"no app named {name}; store its spec first: `deploymate app save` in its repository"
        )
    return found


async def list_for(db: AsyncSession, *, caller: Caller) -> list[App]:
    stmt = select(App).order_by(App.name)
    if not caller.is_admin:
        stmt = stmt.where(App.owner_id == caller.user_id)
    return list((await db.execute(stmt)).scalars())


async def save(
    db: AsyncSession, *, caller: Caller, text: str, commit: bool = True
) -> tuple[App, bool]:
    """Create the app the spec names, or store a new spec for it; (app, created).

    With commit=False the caller commits (a deploy stores the spec with its release, or not
    at all when the deploy is refused)."""
    scopes.require_any_deploy(caller.scopes, "change an app's spec")
    try:
        found = app_spec.load(text, servers=await _server_names(db, caller))
    except app_spec.SpecInvalid as exc:
        raise refusal(exc) from None
    existing = (await db.execute(select(App).where(App.name == found.name))).scalar_one_or_none()
    if existing is not None and not caller.owns(existing.owner_id):
        raise Conflict(f"app: the name {found.name} is taken", code="name_taken")
    created = existing is None
    app = existing or App(name=found.name, owner_id=caller.user_id)
    app.spec_text, app.spec = text, found.data
    db.add(app)
    await db.flush()
    await audit.record(
        db,
        caller=caller,
        action="app.create" if created else "app.update",
        target_type="app",
        target_id=app.id,
        details={"name": app.name, "environments": sorted(found.data["environments"])},
    )
    if commit:
        await db.commit()
    return app, created


def environment_of(
    app_name: str, spec: dict[str, Any], environment: str, caller: Caller, what: str
) -> str:
    """The kind of an environment the spec names, once the caller's token may `what` there;
    a name the spec does not have is refused with the names it has."""
    if environment not in spec["environments"]:
        known = ", ".join(sorted(spec["environments"]))
        raise ValidationFailed(
            f"{app_name} has no environment {environment} ({known})", field="environment"
        )
    kind = app_spec.environment_kind(environment, spec["environments"][environment])
    scopes.require(caller.scopes, scopes.for_environment(kind), f"{what} {environment}")
    return kind


async def set_secret(
    db: AsyncSession,
    *,
    caller: Caller,
    cipher: Cipher,
    name: str,
    environment: str,
    secret: str,
    value: str,
) -> bool:
    """Store one secret of one environment; True when it replaced a value."""
    app = await get(db, caller=caller, name=name)
    # Previews share the values stored under "preview" (only the names preview.secrets lists).
    if environment == "preview" and "preview" in app.spec:
        kind = "preview"
        scopes.require(caller.scopes, "deploy:preview", "set secrets of preview")
    else:
        kind = environment_of(app.name, app.spec, environment, caller, "set secrets of")
    if kind == "production" and not caller.is_admin:
        raise PermissionDenied(
            "production is protected: members do not set its secrets; ask an admin",
            code="production_protected",
        )
    if secret not in (app.spec.get("secrets") or []) and secret not in (
        (app.spec.get("preview") or {}).get("secrets") or []
    ):
        raise ValidationFailed(
            f"{secret} is not among the secrets deploymate.yaml names; add it under secrets: first",
            field="name",
        )
    if not value or len(value) > MAX_SECRET or any(c in value for c in "\n\r\x00"):
        raise ValidationFailed(
            f"give a value of 1 to {MAX_SECRET} characters on one line", field="value"
        )
    row = (
        await db.execute(
            select(AppSecret).where(
                AppSecret.app_id == app.id,
                AppSecret.environment == environment,
                AppSecret.name == secret,
            )
        )
    ).scalar_one_or_none()
    replaced = row is not None
    if row is None:
        row = AppSecret(app_id=app.id, environment=environment, name=secret, value="")
        db.add(row)
    row.value, row.updated_by = cipher.encrypt(value), caller.username
    await audit.record(
        db,
        caller=caller,
        action="app.secret_set",
        target_type="app",
        target_id=app.id,
        details={"app": app.name, "environment": environment, "name": secret},
    )
    await db.commit()
    return replaced


async def secret_names(db: AsyncSession, *, app: App) -> dict[str, list[str]]:
    """Per environment, the secrets that have a value (never the values)."""
    rows = await db.execute(
        select(AppSecret.environment, AppSecret.name).where(AppSecret.app_id == app.id)
    )
    out: dict[str, list[str]] = {e: [] for e in app.spec["environments"]}
    for environment, name in rows:
        out.setdefault(environment, []).append(name)
    return {e: sorted(n) for e, n in out.items()}
