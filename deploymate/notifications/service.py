"""Notifications: in-app messages for users, and the outgoing webhooks admins set up.

What gets announced comes from other domains as events (see subscriber.py); this module holds
the records: a user's notifications, and the webhooks with their delivery history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.context import AppContext
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.db import utcnow
from deploymate.core.errors import NotFound, ValidationFailed
from deploymate.notifications import outbox
from deploymate.notifications.guard import url_host, validate_url
from deploymate.notifications.models import Notification, Webhook, WebhookDelivery

EVENTS: dict[str, str] = {
    "deploy.succeeded": "Deploy succeeded",
    "deploy.failed": "Deploy failed",
    "deploy.rolled_back": "Deploy rolled back",
    "server.unreachable": "Server unreachable",
    "server.docker_down": "Docker not answering on a server",
    "server.disk_full": "Server disk almost full",
    "server.proxy_down": "Server proxy not running",
    "server.recovered": "Server recovered",
    "deployment.exited": "Deployment not running",
    "deployment.restarting": "Deployment restarting in a loop",
    "deployment.unhealthy": "Deployment unhealthy",
    "deployment.recovered": "Deployment recovered",
    "upgrade_request.decided": "Upgrade request decided",
    "webhook.test": "Webhook test",
}
# Events a webhook can subscribe to; `webhook.test` is only ever sent by the test action.
SUBSCRIBABLE: tuple[str, ...] = tuple(e for e in EVENTS if e != "webhook.test")


# --- in-app notifications -----------------------------------------------------------------------


async def list_for(
    db: AsyncSession, *, caller: Caller, unread: bool = False, limit: int = 50
) -> list[Notification]:
    stmt = select(Notification).where(Notification.user_id == caller.user_id)
    if unread:
        stmt = stmt.where(Notification.read_at.is_(None))
    stmt = stmt.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return list((await db.execute(stmt)).scalars())


async def unread_count(db: AsyncSession, *, caller: Caller) -> int:
    stmt = (
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == caller.user_id, Notification.read_at.is_(None))
    )
    return int((await db.execute(stmt)).scalar_one())


async def mark_read(db: AsyncSession, *, caller: Caller, notification_id: int) -> Notification:
    row = await db.get(Notification, notification_id)
    if row is None or row.user_id != caller.user_id:
        raise NotFound(f"notification {notification_id} not found")
    if row.read_at is None:
        row.read_at = utcnow()
        await db.commit()
    return row


async def mark_all_read(db: AsyncSession, *, caller: Caller) -> int:
    result = await db.execute(
        update(Notification)
        .where(Notification.user_id == caller.user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    await db.commit()
    return int(getattr(result, "rowcount", 0) or 0)


# --- webhooks (admins) --------------------------------------------------------------------------


def _name(value: str) -> str:
    name = (value or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed("between 1 and 100 characters", field="name")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValidationFailed("must not contain control characters", field="name")
    return name


def _events(values: Sequence[str]) -> list[str]:
    events = list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    unknown = [e for e in events if e not in SUBSCRIBABLE]
    if unknown:
        raise ValidationFailed(
            f"unknown event {unknown[0]!r}; choose from {', '.join(SUBSCRIBABLE)}",
            field="events",
        )
    if not events:
        raise ValidationFailed("choose at least one event", field="events")
    return events


async def _checked_url(
    db: AsyncSession,
    settings: Settings,
    caller: Caller,
    action: str,
    url: str,
    target_id: int | None = None,
) -> str:
    """A refused URL is audited as a failure (host and reason only) before the 422."""
    try:
        return await validate_url(url, settings)
    except ValidationFailed as exc:
        await audit.record(
            db,
            caller=caller,
            action=action,
            target_type="webhook",
            target_id=target_id,
            outcome="failure",
            details={"host": url_host(url), "reason": exc.detail},
        )
        await db.commit()
        raise


async def list_webhooks(db: AsyncSession) -> list[Webhook]:
    return list((await db.execute(select(Webhook).order_by(Webhook.id))).scalars())


async def get_webhook(db: AsyncSession, *, webhook_id: int) -> Webhook:
    hook = await db.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return hook


async def last_deliveries(db: AsyncSession) -> dict[int | None, WebhookDelivery]:
    """The newest delivery of each webhook (key None: the default endpoint)."""
    newest = select(func.max(WebhookDelivery.id)).group_by(WebhookDelivery.webhook_id)
    rows = (
        await db.execute(select(WebhookDelivery).where(WebhookDelivery.id.in_(newest)))
    ).scalars()
    return {row.webhook_id: row for row in rows}


async def create_webhook(
    db: AsyncSession,
    *,
    settings: Settings,
    caller: Caller,
    name: str,
    url: str,
    events: Sequence[str],
    enabled: bool = True,
) -> Webhook:
    clean_name, clean_events = _name(name), _events(events)
    clean_url = await _checked_url(db, settings, caller, "webhook.create", url)
    hook = Webhook(
        name=clean_name,
        url=clean_url,
        events=clean_events,
        enabled=enabled,
        created_by=caller.username,
    )
    db.add(hook)
    await db.flush()
    await audit.record(
        db,
        caller=caller,
        action="webhook.create",
        target_type="webhook",
        target_id=hook.id,
        details={
            "name": clean_name,
            "host": url_host(clean_url),
            "events": clean_events,
            "enabled": enabled,
        },
    )
    await db.commit()
    return hook


async def update_webhook(
    db: AsyncSession,
    *,
    settings: Settings,
    caller: Caller,
    webhook_id: int,
    name: str | None = None,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
) -> Webhook:
    hook = await get_webhook(db, webhook_id=webhook_id)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _name(name)
    if events is not None:
        changes["events"] = _events(events)
    if enabled is not None:
        changes["enabled"] = enabled
    if url is not None:
        changes["url"] = await _checked_url(
            db, settings, caller, "webhook.update", url, target_id=webhook_id
        )
    changed = [k for k, v in changes.items() if getattr(hook, k) != v]
    for key in changed:
        setattr(hook, key, changes[key])
    details: dict[str, Any] = {"name": hook.name, "changed": changed}
    if "url" in changed:
        details["host"] = url_host(hook.url)
    if "events" in changed:
        details["events"] = hook.events
    if "enabled" in changed:
        details["enabled"] = hook.enabled
    await audit.record(
        db,
        caller=caller,
        action="webhook.update",
        target_type="webhook",
        target_id=hook.id,
        details=details,
    )
    await db.commit()
    return hook


async def delete_webhook(db: AsyncSession, *, caller: Caller, webhook_id: int) -> None:
    """Deletes the webhook and its delivery history."""
    hook = await get_webhook(db, webhook_id=webhook_id)
    details = {"name": hook.name, "host": url_host(hook.url)}
    await db.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
    await db.delete(hook)
    await audit.record(
        db,
        caller=caller,
        action="webhook.delete",
        target_type="webhook",
        target_id=webhook_id,
        details=details,
    )
    await db.commit()


async def send_test(
    db: AsyncSession, *, context: AppContext, caller: Caller, webhook_id: int
) -> WebhookDelivery:
    """Send a `webhook.test` event now (not in the background) and return the delivery."""
    hook = await get_webhook(db, webhook_id=webhook_id)
    text = f"Test message from DeployMate for the webhook {hook.name!r}."
    delivery = WebhookDelivery(
        webhook_id=hook.id,
        url=hook.url,
        event="webhook.test",
        payload=outbox.payload_for("webhook.test", text, "/app/webhooks"),
    )
    db.add(delivery)
    await db.commit()
    await outbox.Sender(context.settings, context.sessions).deliver(delivery.id)
    await db.refresh(delivery)
    await audit.record(
        db,
        caller=caller,
        action="webhook.test",
        target_type="webhook",
        target_id=hook.id,
        outcome="success" if delivery.status == "succeeded" else "failure",
        details={
            "name": hook.name,
            "host": url_host(hook.url),
            "delivery_id": delivery.id,
            "status": delivery.status,
            "response_status": delivery.response_status,
        },
    )
    await db.commit()
    return delivery


async def list_deliveries(
    db: AsyncSession,
    *,
    webhook_id: int | None = None,
    default_only: bool = False,
    status: str | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    stmt = select(WebhookDelivery)
    if default_only:
        stmt = stmt.where(WebhookDelivery.webhook_id.is_(None))
    elif webhook_id is not None:
        stmt = stmt.where(WebhookDelivery.webhook_id == webhook_id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    stmt = stmt.order_by(WebhookDelivery.id.desc()).limit(limit)
    return list((await db.execute(stmt)).scalars())
