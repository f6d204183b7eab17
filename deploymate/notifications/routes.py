"""JSON API: my in-app notifications; outgoing webhooks and their deliveries (admins only)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from deploymate.core.errors import ValidationFailed
from deploymate.core.ids import parse_id
from deploymate.deps import AdminDep, CallerDep, ContextDep, DbDep, IdPath, SettingsDep
from deploymate.notifications import service
from deploymate.notifications.guard import mask_url
from deploymate.notifications.schemas import (
    DefaultEndpoint,
    DeliveryOut,
    MarkedRead,
    NotificationOut,
    UnreadCount,
    WebhookCreate,
    WebhookOut,
    WebhookUpdate,
)

router = APIRouter(tags=["notifications"])


# --- my notifications -------------------------------------------------------------------------


@router.get("/api/notifications")
async def list_notifications(
    db: DbDep,
    me: CallerDep,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[NotificationOut]:
    """My notifications, newest first; `?unread=true` for the unread ones only."""
    rows = await service.list_for(db, caller=me, unread=unread, limit=limit)
    return [NotificationOut.of(r) for r in rows]


@router.get("/api/notifications/unread-count")
async def unread_count(db: DbDep, me: CallerDep) -> UnreadCount:
    return UnreadCount(unread=await service.unread_count(db, caller=me))


@router.post("/api/notifications/read-all")
async def read_all(db: DbDep, me: CallerDep) -> MarkedRead:
    return MarkedRead(marked=await service.mark_all_read(db, caller=me))


@router.post("/api/notifications/{notification_id}/read")
async def read_one(notification_id: IdPath, db: DbDep, me: CallerDep) -> NotificationOut:
    return NotificationOut.of(
        await service.mark_read(db, caller=me, notification_id=notification_id)
    )


# --- webhooks (admins) --------------------------------------------------------------------------


@router.get("/api/admin/webhooks")
async def list_webhooks(db: DbDep, me: AdminDep) -> list[WebhookOut]:
    """Every webhook with its newest delivery; URLs are masked."""
    last = await service.last_deliveries(db)
    return [WebhookOut.of(h, last.get(h.id)) for h in await service.list_webhooks(db)]


@router.get("/api/admin/webhooks/default")
async def default_endpoint(db: DbDep, settings: SettingsDep, me: AdminDep) -> DefaultEndpoint:
    default = (settings.notification_webhook or "").strip()
    last = (await service.last_deliveries(db)).get(None)
    return DefaultEndpoint(
        configured=bool(default),
        url=mask_url(default) if default else None,
        events=list(service.SUBSCRIBABLE),
        last_delivery=DeliveryOut.of(last) if last is not None else None,
    )


@router.post("/api/admin/webhooks", status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookCreate, db: DbDep, settings: SettingsDep, me: AdminDep
) -> WebhookOut:
    hook = await service.create_webhook(
        db,
        settings=settings,
        caller=me,
        name=body.name,
        url=body.url,
        events=body.events,
        enabled=body.enabled,
    )
    return WebhookOut.of(hook)


@router.get("/api/admin/webhooks/{webhook_id}")
async def get_webhook(webhook_id: IdPath, db: DbDep, me: AdminDep) -> WebhookOut:
    hook = await service.get_webhook(db, webhook_id=webhook_id)
    return WebhookOut.of(hook, (await service.last_deliveries(db)).get(hook.id))


@router.patch("/api/admin/webhooks/{webhook_id}")
async def update_webhook(
    webhook_id: IdPath,
    body: WebhookUpdate,
    db: DbDep,
    settings: SettingsDep,
    me: AdminDep,
) -> WebhookOut:
    hook = await service.update_webhook(
        db,
        settings=settings,
        caller=me,
        webhook_id=webhook_id,
        name=body.name,
        url=body.url,
        events=body.events,
        enabled=body.enabled,
    )
    return WebhookOut.of(hook)


@router.delete("/api/admin/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: IdPath, db: DbDep, me: AdminDep) -> None:
    await service.delete_webhook(db, caller=me, webhook_id=webhook_id)


@router.post("/api/admin/webhooks/{webhook_id}/test")
async def test_webhook(
    webhook_id: IdPath, db: DbDep, me: AdminDep, context: ContextDep
) -> DeliveryOut:
    """Send a `webhook.test` event now and answer with the delivery's result."""
    delivery = await service.send_test(db, context=context, caller=me, webhook_id=webhook_id)
    return DeliveryOut.of(delivery)


@router.get("/api/admin/webhooks/{webhook_id}/deliveries")
async def webhook_deliveries(
    webhook_id: IdPath,
    db: DbDep,
    me: AdminDep,
    status: Literal["pending", "succeeded", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """The webhook's delivery history, newest first."""
    await service.get_webhook(db, webhook_id=webhook_id)
    rows = await service.list_deliveries(db, webhook_id=webhook_id, status=status, limit=limit)
    return [DeliveryOut.of(r) for r in rows]


@router.get("/api/admin/webhook-deliveries")
async def all_deliveries(
    db: DbDep,
    me: AdminDep,
    webhook: Annotated[str | None, Query(description="a webhook ID, or `default`")] = None,
    status: Literal["pending", "succeeded", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """Every delivery, newest first; `?webhook=default` for DEPLOYMATE_NOTIFICATION_WEBHOOK."""
    webhook_id: int | None = None
    if webhook and webhook != "default":
        webhook_id = parse_id(webhook)
        if webhook_id is None:
            raise ValidationFailed("a webhook ID or `default`", field="webhook")
    rows = await service.list_deliveries(
        db, webhook_id=webhook_id, default_only=webhook == "default", status=status, limit=limit
    )
    return [DeliveryOut.of(r) for r in rows]
