"""Console pages: /app/notifications (everyone) and /app/webhooks (admins)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.errors import DeployMateError
from deploymate.core.ids import parse_id
from deploymate.deps import AdminDep, CallerDep, ContextDep, DbDep, IdPath, SettingsDep
from deploymate.notifications import service
from deploymate.notifications.guard import mask_url
from deploymate.notifications.models import WebhookDelivery
from deploymate.web import flash
from deploymate.web.forms import refused, truthy
from deploymate.web.render import render

router = APIRouter(include_in_schema=False)
NOTIFICATIONS = "/app/notifications"
WEBHOOKS = "/app/webhooks"


def _safe_link(link: str | None) -> str | None:
    """Only same-site paths become links."""
    if link and link.startswith("/") and not link.startswith(("//", "/\\")):
        return link
    return None


# --- notifications ------------------------------------------------------------------------------


@router.get(NOTIFICATIONS, response_class=HTMLResponse)
async def notifications_page(request: Request, me: CallerDep, db: DbDep) -> Response:
    only_unread = truthy(request.query_params.get("unread"))
    rows = await service.list_for(db, caller=me, unread=only_unread, limit=200)
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
            "unread_count": await service.unread_count(db, caller=me),
            "only_unread": only_unread,
        },
        me=me,
    )


def _back(only_unread: str) -> RedirectResponse:
    return RedirectResponse(
        f"{NOTIFICATIONS}?unread=1" if truthy(only_unread) else NOTIFICATIONS, status_code=303
    )


@router.post(f"{NOTIFICATIONS}/read-all")
async def read_all(
    me: CallerDep,
    db: DbDep,
    unread: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    await service.mark_all_read(db, caller=me)
    return _back(unread)


@router.post(f"{NOTIFICATIONS}/{{notification_id}}/read")
async def read_one(
    notification_id: IdPath,
    me: CallerDep,
    db: DbDep,
    unread: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    await service.mark_read(db, caller=me, notification_id=notification_id)
    return _back(unread)


# --- webhooks -----------------------------------------------------------------------------------


def _delivery(row: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "url": mask_url(row.url),
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
    me: Caller,
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
            "url": mask_url(h.url),
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
    elif (history_id := parse_id(history)) is not None:
        match = next((h for h in hooks if h["id"] == history_id), None)
        if match is not None:
            rows = await service.list_deliveries(db, webhook_id=history_id, limit=100)
            deliveries, history_name = [_delivery(r) for r in rows], str(match["name"])
    editing = parse_id(str(context.pop("editing", None) or request.query_params.get("edit", "")))
    if editing is not None and not any(h["id"] == editing for h in hooks):
        editing = None
    base: dict[str, Any] = {
        "hooks": hooks,
        "events": service.SUBSCRIBABLE,
        "titles": service.EVENTS,
        "default_url": mask_url(default_url) if default_url else None,
        "default_last": _delivery(last[None]) if None in last else None,
        "allow_private": settings.webhook_allow_private,
        "deliveries": deliveries,
        "history": history,
        "history_name": history_name,
        "form": {"events": []},
        "error": None,
        "message": None,
        "test_result": None,
        "editing": editing,
        "edit_form": None,
    }
    return render(request, "webhooks.html", {**base, **context}, me=me, status=status)


@router.get(WEBHOOKS, response_class=HTMLResponse)
async def webhooks_page(
    request: Request, me: AdminDep, db: DbDep, settings: SettingsDep
) -> Response:
    return await _webhooks_page(request, me, db, settings)


@router.post(WEBHOOKS, response_class=HTMLResponse)
async def create(request: Request, me: AdminDep, db: DbDep, settings: SettingsDep) -> Response:
    raw = await request.form()
    name, url = str(raw.get("name") or ""), str(raw.get("url") or "")
    events = [str(e) for e in raw.getlist("events") if isinstance(e, str)]
    enabled = truthy(str(raw.get("enabled") or ""))
    form = {"name": name, "url": url, "events": events, "enabled": enabled}
    try:
        hook = await service.create_webhook(
            db, settings=settings, caller=me, name=name, url=url, events=events, enabled=enabled
        )
    except DeployMateError as exc:
        return await refused(db, exc, partial(_webhooks_page, request, me, db, settings), form=form)
    return flash.redirect(WEBHOOKS, f"Webhook {hook.name} created.")


@router.post(f"{WEBHOOKS}/{{webhook_id}}", response_class=HTMLResponse)
async def edit(
    webhook_id: IdPath, request: Request, me: AdminDep, db: DbDep, settings: SettingsDep
) -> Response:
    """Name, events and state; the URL only when a new one is typed (the stored one is never
    sent back, it may hold a token)."""
    raw = await request.form()
    name, url = str(raw.get("name") or ""), str(raw.get("url") or "").strip()
    events = [str(e) for e in raw.getlist("events") if isinstance(e, str)]
    enabled = truthy(str(raw.get("enabled") or ""))
    form = {"name": name, "url": url, "events": events, "enabled": enabled}
    try:
        hook = await service.update_webhook(
            db,
            settings=settings,
            caller=me,
            webhook_id=webhook_id,
            name=name,
            url=url or None,
            events=events,
            enabled=enabled,
        )
    except DeployMateError as exc:
        page = partial(_webhooks_page, request, me, db, settings)
        return await refused(db, exc, page, editing=webhook_id, edit_form=form)
    return flash.redirect(WEBHOOKS, f"Webhook {hook.name} saved.")


@router.post(f"{WEBHOOKS}/{{webhook_id}}/enabled", response_class=HTMLResponse)
async def set_enabled(
    webhook_id: IdPath,
    request: Request,
    me: AdminDep,
    db: DbDep,
    settings: SettingsDep,
    enabled: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        hook = await service.update_webhook(
            db, settings=settings, caller=me, webhook_id=webhook_id, enabled=truthy(enabled)
        )
    except DeployMateError as exc:
        return await refused(db, exc, partial(_webhooks_page, request, me, db, settings))
    state = "enabled" if hook.enabled else "disabled"
    return flash.redirect(WEBHOOKS, f"Webhook {hook.name} {state}.")


@router.post(f"{WEBHOOKS}/{{webhook_id}}/test", response_class=HTMLResponse)
async def send_test(
    webhook_id: IdPath,
    request: Request,
    me: AdminDep,
    db: DbDep,
    settings: SettingsDep,
    context: ContextDep,
) -> Response:
    try:
        delivery = await service.send_test(db, context=context, caller=me, webhook_id=webhook_id)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_webhooks_page, request, me, db, settings))
    return await _webhooks_page(
        request,
        me,
        db,
        settings,
        test_result=_delivery(delivery),
        history=str(webhook_id),
    )


@router.post(f"{WEBHOOKS}/{{webhook_id}}/delete", response_class=HTMLResponse)
async def delete(
    webhook_id: IdPath,
    request: Request,
    me: AdminDep,
    db: DbDep,
    settings: SettingsDep,
    confirm: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    if confirm != "yes":
        return await _webhooks_page(
            request,
            me,
            db,
            settings,
            status=422,
            error="Tick the confirmation box to delete a webhook.",
        )
    try:
        await service.delete_webhook(db, caller=me, webhook_id=webhook_id)
    except DeployMateError as exc:
        return await refused(db, exc, partial(_webhooks_page, request, me, db, settings))
    return flash.redirect(WEBHOOKS, "Webhook deleted.")
