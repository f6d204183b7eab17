"""JSON API: my in-app notifications; outgoing webhooks and their deliveries (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from deploymate.deps import AdminPrincipal, CurrentPrincipal, DbDep, SettingsDep
from deploymate.errors import ValidationFailed
from deploymate.notifications import service
from deploymate.notifications.models import Notification, Webhook, WebhookDelivery

router = APIRouter(tags=["notifications"])


class NotificationOut(BaseModel):
    id: int
    event: str
    title: str
    body: str
    link: str | None
    created_at: datetime
    read_at: datetime | None
    read: bool

    @classmethod
    def of(cls, row: Notification) -> NotificationOut:
        return cls(
            id=row.id,
            event=row.event,
            title=row.title,
            body=row.body,
            link=row.link,
            created_at=row.created_at,
            read_at=row.read_at,
            read=row.read_at is not None,
        )


class UnreadCount(BaseModel):
    unread: int


class MarkedRead(BaseModel):
    marked: int


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int | None
    url: str = Field(description="masked: scheme://host/…last4")
    event: str
    payload: dict[str, Any]
    status: str
    attempts: int
    response_status: int | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=row.id,
            webhook_id=row.webhook_id,
            url=service.mask_url(row.url),
            event=row.event,
            payload=row.payload,
            status=row.status,
            attempts=row.attempts,
            response_status=row.response_status,
            error=row.error,
            created_at=row.created_at,
            finished_at=row.finished_at,
        )


class WebhookOut(BaseModel):
    id: int
    name: str
    url: str = Field(description="masked: scheme://host/…last4; the full URL is never returned")
    events: list[str]
    enabled: bool
    created_by: str | None
    created_at: datetime
    last_delivery: DeliveryOut | None = None

    @classmethod
    def of(cls, row: Webhook, last: WebhookDelivery | None = None) -> WebhookOut:
        return cls(
            id=row.id,
            name=row.name,
            url=service.mask_url(row.url),
            events=list(row.events or []),
            enabled=row.enabled,
            created_by=row.created_by,
            created_at=row.created_at,
            last_delivery=DeliveryOut.of(last) if last is not None else None,
        )


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=1, max_length=service.MAX_URL)
    events: list[str] = Field(min_length=1, max_length=len(service.SUBSCRIBABLE))
    enabled: bool = True


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    url: str | None = Field(default=None, min_length=1, max_length=service.MAX_URL)
    events: list[str] | None = Field(default=None, min_length=1, max_length=20)
    enabled: bool | None = None


class DefaultEndpoint(BaseModel):
    """DEPLOYMATE_NOTIFICATION_WEBHOOK: set in the environment, receives every event."""

    configured: bool
    url: str | None = Field(description="masked")
    events: list[str]
    last_delivery: DeliveryOut | None = None


# --- my notifications -------------------------------------------------------------------------


@router.get("/api/notifications")
async def list_notifications(
    db: DbDep,
    principal: CurrentPrincipal,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[NotificationOut]:
    """My notifications, newest first; `?unread=true` for the unread ones only."""
    rows = await service.list_for(db, principal.user.id, unread=unread, limit=limit)
    return [NotificationOut.of(r) for r in rows]


@router.get("/api/notifications/unread-count")
async def unread_count(db: DbDep, principal: CurrentPrincipal) -> UnreadCount:
    return UnreadCount(unread=await service.unread_count(db, principal.user.id))


@router.post("/api/notifications/read-all")
async def read_all(db: DbDep, principal: CurrentPrincipal) -> MarkedRead:
    return MarkedRead(marked=await service.mark_all_read(db, principal.user.id))


@router.post("/api/notifications/{notification_id}/read")
async def read_one(notification_id: int, db: DbDep, principal: CurrentPrincipal) -> NotificationOut:
    return NotificationOut.of(await service.mark_read(db, principal.user.id, notification_id))


# --- webhooks (admins) --------------------------------------------------------------------------


@router.get("/api/admin/webhooks")
async def list_webhooks(db: DbDep, principal: AdminPrincipal) -> list[WebhookOut]:
    """Every webhook with its newest delivery; URLs are masked."""
    last = await service.last_deliveries(db)
    return [WebhookOut.of(h, last.get(h.id)) for h in await service.list_webhooks(db)]


@router.get("/api/admin/webhooks/default")
async def default_endpoint(
    db: DbDep, settings: SettingsDep, principal: AdminPrincipal
) -> DefaultEndpoint:
    default = (settings.notification_webhook or "").strip()
    last = (await service.last_deliveries(db)).get(None)
    return DefaultEndpoint(
        configured=bool(default),
        url=service.mask_url(default) if default else None,
        events=list(service.SUBSCRIBABLE),
        last_delivery=DeliveryOut.of(last) if last is not None else None,
    )


@router.post("/api/admin/webhooks", status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookCreate, db: DbDep, settings: SettingsDep, principal: AdminPrincipal
) -> WebhookOut:
    hook = await service.create_webhook(
        db,
        settings,
        principal.actor,
        name=body.name,
        url=body.url,
        events=body.events,
        enabled=body.enabled,
    )
    return WebhookOut.of(hook)


@router.get("/api/admin/webhooks/{webhook_id}")
async def get_webhook(webhook_id: int, db: DbDep, principal: AdminPrincipal) -> WebhookOut:
    hook = await service.get_webhook(db, webhook_id)
    return WebhookOut.of(hook, (await service.last_deliveries(db)).get(hook.id))


@router.patch("/api/admin/webhooks/{webhook_id}")
async def update_webhook(
    webhook_id: int,
    body: WebhookUpdate,
    db: DbDep,
    settings: SettingsDep,
    principal: AdminPrincipal,
) -> WebhookOut:
    hook = await service.update_webhook(
        db,
        settings,
        principal.actor,
        webhook_id,
        name=body.name,
        url=body.url,
        events=body.events,
        enabled=body.enabled,
    )
    return WebhookOut.of(hook)


@router.delete("/api/admin/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: int, db: DbDep, principal: AdminPrincipal) -> None:
    await service.delete_webhook(db, principal.actor, webhook_id)


@router.post("/api/admin/webhooks/{webhook_id}/test")
async def test_webhook(
    webhook_id: int, request: Request, db: DbDep, principal: AdminPrincipal
) -> DeliveryOut:
    """Send a `webhook.test` event now and answer with the delivery's result."""
    delivery = await service.send_test(request.app.state.services, db, principal.actor, webhook_id)
    return DeliveryOut.of(delivery)


@router.get("/api/admin/webhooks/{webhook_id}/deliveries")
async def webhook_deliveries(
    webhook_id: int,
    db: DbDep,
    principal: AdminPrincipal,
    status: Literal["pending", "succeeded", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """The webhook's delivery history, newest first."""
    await service.get_webhook(db, webhook_id)
    rows = await service.list_deliveries(db, webhook_id=webhook_id, status=status, limit=limit)
    return [DeliveryOut.of(r) for r in rows]


@router.get("/api/admin/webhook-deliveries")
async def all_deliveries(
    db: DbDep,
    principal: AdminPrincipal,
    webhook: Annotated[str | None, Query(description="a webhook ID, or `default`")] = None,
    status: Literal["pending", "succeeded", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """Every delivery, newest first; `?webhook=default` for DEPLOYMATE_NOTIFICATION_WEBHOOK."""
    webhook_id: int | None = None
    if webhook and webhook != "default":
        if not webhook.isdigit():
            raise ValidationFailed("webhook: a webhook ID or `default`")
        webhook_id = int(webhook)
    rows = await service.list_deliveries(
        db, webhook_id=webhook_id, default_only=webhook == "default", status=status, limit=limit
    )
    return [DeliveryOut.of(r) for r in rows]
