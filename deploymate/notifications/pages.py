"""Console pages: /app/notifications (everyone) and /app/webhooks (admins)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.config import Settings
from deploymate.deps import AdminPrincipal, CurrentPrincipal, DbDep, Principal, SettingsDep
from deploymate.errors import DeployMateError
from deploymate.notifications import service
from deploymate.notifications.models import WebhookDelivery
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)
NOTIFICATIONS = "/app/notifications"
WEBHOOKS = "/app/webhooks"


def _safe_link(link: str | None) -> str | None:
    """Only same-site paths become links."""
    if link and link.startswith("/") and not link.startswith(("//", "/\\")):
        return link
    return None


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


# --- notifications ------------------------------------------------------------------------------


@router.get(NOTIFICATIONS, response_class=HTMLResponse)
async def notifications_page(request: Request, principal: CurrentPrincipal, db: DbDep) -> Response:
    only_unread = _truthy(request.query_params.get("unread"))
    rows = await service.list_for(db, principal.user.id, unread=only_unread, limit=200)
    items = [
        {
            "id": r.id,
            "event": r.event,
            "title": r.title,
            "body": r.body,
            "link": _safe_link(r.link),
            "created_at": r.created_at,
            "read": r.read_at is not None,
        }
        for r in rows
    ]
    return render(
        request,
        "notifications.html",
        {
            "items": items,
            "unread_count": await service.unread_count(db, principal.user.id),
            "only_unread": only_unread,
        },
        principal=principal,
    )


def _back(only_unread: str) -> RedirectResponse:
    return RedirectResponse(
        f"{NOTIFICATIONS}?unread=1" if _truthy(only_unread) else NOTIFICATIONS, status_code=303
    )


@router.post(f"{NOTIFICATIONS}/read-all")
async def read_all(
    principal: CurrentPrincipal,
    db: DbDep,
    unread: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    await service.mark_all_read(db, principal.user.id)
    return _back(unread)


@router.post(f"{NOTIFICATIONS}/{{notification_id}}/read")
async def read_one(
    notification_id: int,
    principal: CurrentPrincipal,
    db: DbDep,
    unread: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    await service.mark_read(db, principal.user.id, notification_id)
    return _back(unread)


# --- webhooks -----------------------------------------------------------------------------------


def _delivery(row: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "url": service.mask_url(row.url),
        "event": row.event,
        "status": row.status,
        "attempts": row.attempts,
        "response_status": row.response_status,
        "error": row.error,
        "created_at": row.created_at,
        "finished_at": row.finished_at,
    }


async def _webhooks_page(
    request: Request,
    principal: Principal,
    db: AsyncSession,
    settings: Settings,
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    last = await service.last_deliveries(db)
    hooks = [
        {
            "id": h.id,
            "name": h.name,
            "url": service.mask_url(h.url),
            "events": list(h.events or []),
            "enabled": h.enabled,
            "created_by": h.created_by,
            "created_at": h.created_at,
            "last": _delivery(last[h.id]) if h.id in last else None,
        }
        for h in await service.list_webhooks(db)
    ]
    default_url = (settings.notification_webhook or "").strip()
    history = str(context.pop("history", None) or request.query_params.get("history", ""))
    deliveries: list[dict[str, Any]] | None = None
    history_name = None
    if history == "default":
        rows = await service.list_deliveries(db, default_only=True, limit=100)
        deliveries, history_name = [_delivery(r) for r in rows], "the default endpoint"
    elif history.isdigit():
        match = next((h for h in hooks if h["id"] == int(history)), None)
        if match is not None:
            rows = await service.list_deliveries(db, webhook_id=int(history), limit=100)
            deliveries, history_name = [_delivery(r) for r in rows], str(match["name"])
    created = request.query_params.get("created", "")
    base: dict[str, Any] = {
        "hooks": hooks,
        "events": service.SUBSCRIBABLE,
        "titles": service.EVENTS,
        "default_url": service.mask_url(default_url) if default_url else None,
        "default_last": _delivery(last[None]) if None in last else None,
        "allow_private": settings.webhook_allow_private,
        "deliveries": deliveries,
        "history": history,
        "history_name": history_name,
        "form": {"events": []},
        "error": None,
        "message": "Webhook created." if created.isdigit() else None,
        "test_result": None,
    }
    return render(request, "webhooks.html", {**base, **context}, principal=principal, status=status)


@router.get(WEBHOOKS, response_class=HTMLResponse)
async def webhooks_page(
    request: Request, principal: AdminPrincipal, db: DbDep, settings: SettingsDep
) -> Response:
    return await _webhooks_page(request, principal, db, settings)


@router.post(WEBHOOKS, response_class=HTMLResponse)
async def create(
    request: Request, principal: AdminPrincipal, db: DbDep, settings: SettingsDep
) -> Response:
    raw = await request.form()
    name, url = str(raw.get("name") or ""), str(raw.get("url") or "")
    events = [str(e) for e in raw.getlist("events") if isinstance(e, str)]
    enabled = _truthy(str(raw.get("enabled") or ""))
    form = {"name": name, "url": url, "events": events, "enabled": enabled}
    try:
        hook = await service.create_webhook(
            db, settings, principal.actor, name=name, url=url, events=events, enabled=enabled
        )
    except DeployMateError as exc:
        return await _webhooks_page(
            request, principal, db, settings, status=exc.status, form=form, error=exc.detail
        )
    return RedirectResponse(f"{WEBHOOKS}?created={hook.id}", status_code=303)


@router.post(f"{WEBHOOKS}/{{webhook_id}}/enabled", response_class=HTMLResponse)
async def set_enabled(
    webhook_id: int,
    request: Request,
    principal: AdminPrincipal,
    db: DbDep,
    settings: SettingsDep,
    enabled: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        hook = await service.update_webhook(
            db, settings, principal.actor, webhook_id, enabled=_truthy(enabled)
        )
    except DeployMateError as exc:
        return await _webhooks_page(
            request, principal, db, settings, status=exc.status, error=exc.detail
        )
    state = "enabled" if hook.enabled else "disabled"
    return await _webhooks_page(
        request, principal, db, settings, message=f"Webhook {hook.name} {state}."
    )


@router.post(f"{WEBHOOKS}/{{webhook_id}}/test", response_class=HTMLResponse)
async def send_test(
    webhook_id: int,
    request: Request,
    principal: AdminPrincipal,
    db: DbDep,
    settings: SettingsDep,
) -> Response:
    try:
        delivery = await service.send_test(
            request.app.state.services, db, principal.actor, webhook_id
        )
    except DeployMateError as exc:
        return await _webhooks_page(
            request, principal, db, settings, status=exc.status, error=exc.detail
        )
    return await _webhooks_page(
        request,
        principal,
        db,
        settings,
        test_result=_delivery(delivery),
        history=str(webhook_id),
    )


@router.post(f"{WEBHOOKS}/{{webhook_id}}/delete", response_class=HTMLResponse)
async def delete(
    webhook_id: int,
    request: Request,
    principal: AdminPrincipal,
    db: DbDep,
    settings: SettingsDep,
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirm != "yes":
        return await _webhooks_page(
            request,
            principal,
            db,
            settings,
            status=422,
            error="Tick the confirmation box to delete a webhook.",
        )
    try:
        await service.delete_webhook(db, principal.actor, webhook_id)
    except DeployMateError as exc:
        return await _webhooks_page(
            request, principal, db, settings, status=exc.status, error=exc.detail
        )
    return await _webhooks_page(request, principal, db, settings, message="Webhook deleted.")
