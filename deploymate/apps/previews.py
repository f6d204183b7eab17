"""Preview environments: one per branch, `preview-<slug>`, made from the spec's `preview:`
section (its servers, its domain, its env with `{slug}`, only the secrets it names), alive
while deploys keep coming, removed with their volumes when they expire or are destroyed."""

from __future__ import annotations

import copy
import hashlib
import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.apps.models import App, AppPreview
from deploymate.apps.spec import environment_kind
from deploymate.audit import service as audit
from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.db import utcnow
from deploymate.core.errors import Conflict, NotFound, ValidationFailed
from deploymate.deployments import service as deployments
from deploymate.deployments.models import Deployment

PREFIX = "preview-"
SECRETS_OF = "preview"  # the environment name preview secrets are stored under
SLUG_MAX = 40
DEFAULT_TTL_HOURS = 72.0
BRANCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


def check_branch(branch: str) -> str:
    """A branch name as git and a shell can both take at face value."""
    if not BRANCH.match(branch) or ".." in branch or branch.endswith((".", "/", ".lock")):
        shown = branch if len(branch) <= 60 else branch[:57] + "..."
        raise ValidationFailed(
            f"{shown!r} is not a branch name DeployMate accepts: 1 to 200 characters, letters, "
            "digits and . _ / - only, starting with a letter or digit",
            field="branch",
        )
    return branch


def slugify(branch: str) -> str:
    """Lower-cased, every run of other characters one `-`, trimmed, at most 40 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", branch.lower()).strip("-")[:SLUG_MAX].strip("-")
    return slug or "branch"


def _hashed(branch: str) -> str:
    """The slug with a short hash of the branch, for a branch whose slug another one holds."""
    tail = hashlib.sha256(branch.encode()).hexdigest()[:6]
    return f"{slugify(branch)[: SLUG_MAX - 7].strip('-')}-{tail}"


def environment_for(spec: dict[str, Any], preview: AppPreview) -> dict[str, Any]:
    """The preview's environment as the release flow reads one."""
    section = spec.get("preview") or {}
    servers = section.get("servers") or next(
        (
            env["servers"]
            for name, env in spec["environments"].items()
            if environment_kind(name, env) == "staging"
        ),
        None,
    )
    if not servers:
        raise ValidationFailed(
            "previews need servers: give preview.servers (or a staging environment)",
            field="spec",
        )
    domains: dict[str, list[str]] = {}
    if section.get("domain"):
        routed = [name for name, svc in spec["services"].items() if svc.get("domains")]
        for index, name in enumerate(routed):
            host = f"{preview.slug}.{section['domain']}"
            domains[name] = [host if index == 0 else f"{name}-{host}"]
    env = {k: str(v).replace("{slug}", preview.slug) for k, v in (section.get("env") or {}).items()}
    return {"kind": "preview", "servers": list(servers), "domains": domains, "env": env}


def hosts(spec: dict[str, Any], preview: AppPreview) -> dict[str, list[str]]:
    """The preview's domains per service under the spec as it is now (none when the spec no
    longer says where previews go)."""
    try:
        domains: dict[str, list[str]] = environment_for(spec, preview)["domains"]
    except ValidationFailed:
        return {}
    return domains


def with_environment(spec: dict[str, Any], preview: AppPreview) -> dict[str, Any]:
    """The spec with the preview's environment in it (what its release records)."""
    out = copy.deepcopy(spec)
    out["environments"][preview.environment] = environment_for(spec, preview)
    return out


async def ensure(db: AsyncSession, *, app: App, branch: str, caller: Caller) -> AppPreview:
    """The branch's preview (made on its first deploy), its expiry pushed back by the TTL."""
    check_branch(branch)
    if not app.spec.get("preview") and not any(
        environment_kind(n, e) == "staging" for n, e in app.spec["environments"].items()
    ):
        raise ValidationFailed(
            f"{app.name} has no preview: section and no staging servers to put previews on",
            field="environment",
        )
    ttl = float((app.spec.get("preview") or {}).get("ttl_hours", DEFAULT_TTL_HOURS))
    rows = list((await db.execute(select(AppPreview).where(AppPreview.app_id == app.id))).scalars())
    mine = next((p for p in rows if p.branch == branch and p.status == "active"), None)
    if mine is None:
        taken = {p.slug for p in rows if p.status == "active" or p.branch != branch}
        old = next((p for p in rows if p.branch == branch), None)
        slug = slugify(branch)
        if slug in taken and (old is None or old.slug != slug):
            slug = _hashed(branch)
        mine = old or AppPreview(app_id=app.id, branch=branch, slug=slug)
        mine.slug, mine.environment = slug, PREFIX + slug
        mine.status, mine.removed_at = "active", None
        mine.created_by, mine.created_at = caller.username, utcnow()
        db.add(mine)
    mine.updated_at = utcnow()
    mine.expires_at = utcnow() + timedelta(hours=ttl)
    await db.flush()
    return mine


async def list_for(db: AsyncSession, *, app: App, active_only: bool = True) -> list[AppPreview]:
    stmt = select(AppPreview).where(AppPreview.app_id == app.id).order_by(AppPreview.id)
    if active_only:
        stmt = stmt.where(AppPreview.status == "active")
    return list((await db.execute(stmt)).scalars())


async def destroy(
    db: AsyncSession, *, context: AppContext, caller: Caller, app: App, branch: str, why: str
) -> AppPreview:
    """Remove the branch's preview: every deployment of it with its volumes (delete jobs)."""
    preview = next((p for p in await list_for(db, app=app) if p.branch == branch), None)
    if preview is None:
        raise NotFound(f"{app.name} has no preview of the branch {branch}")
    live = (
        await db.execute(
            select(Deployment.id).where(
                Deployment.app_id == app.id,
                Deployment.app_environment == preview.environment,
                Deployment.status != "deleted",
            )
        )
    ).scalars()
    for deployment_id in list(live):
        try:
            await deployments.operate(
                db,
                context=context,
                caller=caller,
                deployment_id=deployment_id,
                kind="delete",
                extra={"volumes": True},
            )
        except Conflict:
            raise Conflict(
                f"a release of {preview.environment} is running; destroy it when it ends",
                code="busy",
            ) from None
    preview.status, preview.removed_at = "removed", utcnow()
    await audit.record(
        db,
        caller=caller,
        action="app.preview_destroy",
        target_type="app",
        target_id=app.id,
        details={"app": app.name, "branch": branch, "environment": preview.environment, "why": why},
    )
    await db.commit()
    return preview


async def reap(context: AppContext) -> list[str]:
    """Destroy the previews past their expiry; the environments removed."""
    caller = Caller.system("preview-expiry")
    gone: list[str] = []
    async with context.sessions() as db:
        expired = list(
            (
                await db.execute(
                    select(AppPreview, App)
                    .join(App, App.id == AppPreview.app_id)
                    .where(AppPreview.status == "active", AppPreview.expires_at <= utcnow())
                )
            ).all()
        )
        for preview, app in expired:
            try:
                await destroy(
                    db,
                    context=context,
                    caller=caller,
                    app=app,
                    branch=preview.branch,
                    why="expired",
                )
                gone.append(preview.environment)
            except Conflict:
                await db.rollback()  # busy: the next round takes it
    return gone
