"""Notifications react to other domains' events: in-app messages and webhook deliveries.

Registered in wiring.py for every event of `service.EVENTS` that other domains emit. An event's
payload carries `text`, `link` and `user_ids` (the people concerned); every active admin is
told as well.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploymate.auth.models import Role, User
from deploymate.core.config import Settings
from deploymate.core.events import Event
from deploymate.notifications.models import Notification, Webhook, WebhookDelivery
from deploymate.notifications.outbox import Sender, payload_for
from deploymate.notifications.service import EVENTS


class NotifyOnEvent:
    """The subscriber: records the notifications and deliveries, then sends in the background."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.sender = Sender(settings, sessions)

    async def __call__(self, event: Event) -> None:
        text = str(event.payload.get("text", ""))
        link = event.payload.get("link")
        wanted = {int(u) for u in event.payload.get("user_ids", []) if u is not None}
        async with self.sessions() as db:
            who = or_(User.role == Role.admin.value, User.id.in_(wanted))
            recipients = (await db.execute(select(User.id).where(User.is_active, who))).scalars()
            title = EVENTS.get(event.name, event.name)
            for user_id in sorted(set(recipients)):
                db.add(
                    Notification(
                        user_id=user_id, event=event.name, title=title, body=text[:4000], link=link
                    )
                )
            payload = payload_for(event.name, text, link)
            rows: list[WebhookDelivery] = []
            hooks = (await db.execute(select(Webhook).where(Webhook.enabled))).scalars()
            for hook in hooks:
                if event.name in (hook.events or []):
                    rows.append(
                        WebhookDelivery(
                            webhook_id=hook.id, url=hook.url, event=event.name, payload=payload
                        )
                    )
            default = (self.settings.notification_webhook or "").strip()
            if default:
                rows.append(
                    WebhookDelivery(webhook_id=None, url=default, event=event.name, payload=payload)
                )
            db.add_all(rows)
            await db.commit()
            deliveries = [row.id for row in rows]
        for delivery_id in deliveries:
            self.sender.spawn(delivery_id)

    def __repr__(self) -> str:
        return "notifications"
