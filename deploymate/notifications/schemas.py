"""Shapes of the notifications and webhooks API; webhook URLs are only ever shown masked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from deploymate.notifications.guard import MAX_URL, mask_url
from deploymate.notifications.models import Notification, Webhook, WebhookDelivery
from deploymate.notifications.service import SUBSCRIBABLE


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
            url=mask_url(row.url),
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
            url=mask_url(row.url),
            events=list(row.events or []),
            enabled=row.enabled,
            created_by=row.created_by,
            created_at=row.created_at,
            last_delivery=DeliveryOut.of(last) if last is not None else None,
        )


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=1, max_length=MAX_URL)
    events: list[str] = Field(min_length=1, max_length=len(SUBSCRIBABLE))
    enabled: bool = True


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL)
    events: list[str] | None = Field(default=None, min_length=1, max_length=20)
    enabled: bool | None = None


class DefaultEndpoint(BaseModel):
    """DEPLOYMATE_NOTIFICATION_WEBHOOK: set in the environment, receives every event."""

    configured: bool
    url: str | None = Field(description="masked")
    events: list[str]
    last_delivery: DeliveryOut | None = None
