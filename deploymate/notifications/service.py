"""Notifications: in-app messages and outgoing webhooks, sent in the background.

`publish` is called by the modules where something happens (deploy outcome, failed server check,
upgrade decision). It never raises into the caller and never waits for a webhook: every delivery
is recorded as `pending`, then sent by an asyncio task that updates the row.

Outgoing requests are guarded against SSRF (docs: ../shared/SECURITY-RELIABILITY.md item 15):
only http(s); the host is resolved and every address checked, at creation and again before each
attempt (DNS can change); the request goes to the checked address (the name is kept for the
Host header and TLS), no redirects are followed and no proxy from the environment is used.
Webhook URLs may hold tokens (Slack), so they are shown masked and never logged or audited.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from deploymate import __version__
from deploymate.audit import service as audit
from deploymate.audit.service import Actor
from deploymate.auth.models import Role, User
from deploymate.config import Settings
from deploymate.db import utcnow
from deploymate.errors import NotFound, ValidationFailed
from deploymate.notifications.models import Notification, Webhook, WebhookDelivery

if TYPE_CHECKING:
    from deploymate.services import Services

log = logging.getLogger("deploymate.notifications")

EVENTS: dict[str, str] = {
    "deploy.succeeded": "Deploy succeeded",
    "deploy.failed": "Deploy failed",
    "deploy.rolled_back": "Deploy rolled back",
    "server.unreachable": "Server unreachable",
    "upgrade_request.decided": "Upgrade request decided",
    "webhook.test": "Webhook test",
}
# Events a webhook can subscribe to; `webhook.test` is only ever sent by the test action.
SUBSCRIBABLE: tuple[str, ...] = tuple(e for e in EVENTS if e != "webhook.test")

TIMEOUT = 3.0  # seconds, for each attempt as a whole (resolve, connect, send, response head)
BACKOFF = (0.5, 1.0)  # waits between attempts: three attempts in all
ATTEMPTS = len(BACKOFF) + 1
MAX_TEXT = 1900  # Discord refuses `content` over 2000 characters
MAX_URL = 2048

# Refused whatever the settings say: "this network", link-local (cloud metadata lives at
# 169.254.169.254) and the metadata addresses that sit in other ranges (AWS IPv6, Alibaba).
ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "169.254.0.0/16",
        "100.100.100.200/32",
        "::/128",
        "fe80::/10",
        "fd00:ec2::254/128",
    )
)
# Refused unless DEPLOYMATE_WEBHOOK_ALLOW_PRIVATE is on (other non-global ranges count too).
PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Context(Protocol):
    """What sending needs from the application: `Services` fits, so does `SessionContext`."""

    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...


@dataclass(frozen=True)
class SessionContext:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]


class RefusedUrl(Exception):
    """A webhook URL that must not be called; the message names the host, never the path."""


# --- URLs: parsing, masking, SSRF checks ------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A checked URL: the request goes to `address`, with the original name for Host and TLS."""

    url: httpx.URL
    address: IPAddress

    @property
    def request_url(self) -> httpx.URL:
        return self.url.copy_with(host=str(self.address))

    @property
    def host_header(self) -> str:
        return self.url.netloc.decode("ascii")


def _parse(url: str) -> httpx.URL:
    if not url or not url.strip():
        raise RefusedUrl("a URL is required")
    if len(url) > MAX_URL:
        raise RefusedUrl(f"at most {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise RefusedUrl("must not contain spaces or control characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise RefusedUrl("not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise RefusedUrl("only http:// and https:// URLs are allowed")
    if not parsed.host:
        raise RefusedUrl("the URL needs a host")
    return parsed


def _embedded_v4(ip: IPAddress) -> IPAddress:
    """IPv4 addresses hidden in IPv6 forms (mapped, 6to4, NAT64) are checked as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_problem(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why a webhook must not be sent to this address ("a ... address"), or None when it may."""
    ip = _embedded_v4(ip)
    if any(ip in net for net in ALWAYS_REFUSED):
        return "a link-local, cloud-metadata or unspecified address (always refused)"
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "not a unicast address (always refused)"
    private = ip.is_loopback or any(ip in net for net in PRIVATE)
    if not private and ip.is_reserved:
        return "a reserved address (always refused)"
    if private or not ip.is_global:
        if allow_private:
            return None
        kind = "loopback" if ip.is_loopback else "private"
        return f"a {kind} address (allowed only with DEPLOYMATE_WEBHOOK_ALLOW_PRIVATE=true)"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


async def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.wait_for(
            asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM),
            timeout=TIMEOUT,
        )
    except (OSError, TimeoutError, UnicodeError):
        raise RefusedUrl(f"the host {host} does not resolve") from None
    found: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone index
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:
            continue
        if ip not in found:
            found.append(ip)
    if not found:
        raise RefusedUrl(f"the host {host} does not resolve")
    return found


async def check_url(url: str, *, allow_private: bool) -> Target:
    """Parse, resolve and check every address the host resolves to; raises RefusedUrl."""
    parsed = _parse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await _resolve(parsed.host, port)
    literal = len(addresses) == 1 and _literal(parsed.host) == addresses[0]
    for ip in addresses:
        problem = address_problem(ip, allow_private=allow_private)
        if problem is not None:
            if literal:
                raise RefusedUrl(f"{ip} is {problem}")
            raise RefusedUrl(f"{parsed.host} resolves to {ip}, which is {problem}")
    return Target(url=parsed, address=addresses[0])


async def validate_url(url: str, settings: Settings) -> str:
    """The URL as stored, or ValidationFailed("url: ...") naming the problem."""
    try:
        await check_url(url, allow_private=settings.webhook_allow_private)
    except RefusedUrl as exc:
        raise ValidationFailed(f"url: {exc}") from None
    return url.strip()


def mask_url(url: str) -> str:
    """scheme://host[:port]/…last4 — enough to recognise an endpoint, never its token."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "…"
    if not parsed.host:
        return "…"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    if parsed.port is not None:
        host = f"{host}:{parsed.port}"
    tail = parsed.raw_path.decode("ascii", "replace") + (
        f"#{parsed.fragment}" if parsed.fragment else ""
    )
    if tail in ("", "/"):
        return f"{parsed.scheme}://{host}/"
    return f"{parsed.scheme}://{host}/…" + (tail[-4:] if len(tail) >= 12 else "")


def url_host(url: str) -> str:
    try:
        return httpx.URL(url).host or "?"
    except (httpx.InvalidURL, ValueError, TypeError):
        return "?"


# --- publishing ---------------------------------------------------------------------------------


def payload_for(event: str, text: str, link: str | None) -> dict[str, Any]:
    """One body that Slack (`text`) and Discord (`content`) both accept."""
    short = text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"
    return {"text": short, "content": short, "event": event, "link": link}


async def publish(
    services: Services | _Context,
    *,
    event: str,
    text: str,
    link: str | None = None,
    user_ids: Iterable[int] = (),
) -> None:
    """Notify the users and every active admin in-app; queue the webhooks for the event.

    Never raises and never waits for a webhook: deliveries are sent by background tasks."""
    try:
        deliveries = await _record_event(services, event, text, link, user_ids)
    except Exception:
        log.exception("publishing %s failed", event)
        return
    for delivery_id in deliveries:
        _spawn(services, delivery_id)


async def publish_from_session(
    db: AsyncSession,
    settings: Settings,
    *,
    event: str,
    text: str,
    link: str | None = None,
    user_ids: Iterable[int] = (),
) -> None:
    """`publish` for code that holds a request's session but not the Services object."""
    try:
        bind = db.bind
        if not isinstance(bind, AsyncEngine):
            log.warning("publishing %s skipped: the session is not bound to an engine", event)
            return
        context = SessionContext(settings, async_sessionmaker(bind, expire_on_commit=False))
    except Exception:
        log.exception("publishing %s failed", event)
        return
    await publish(context, event=event, text=text, link=link, user_ids=user_ids)


async def _record_event(
    services: _Context, event: str, text: str, link: str | None, user_ids: Iterable[int]
) -> list[int]:
    wanted = {int(u) for u in user_ids if u is not None}
    async with services.sessions() as db:
        who = or_(User.role == Role.admin.value, User.id.in_(wanted))
        recipients = (await db.execute(select(User.id).where(User.is_active, who))).scalars()
        title = EVENTS.get(event, event)
        for user_id in sorted(set(recipients)):
            db.add(
                Notification(user_id=user_id, event=event, title=title, body=text[:4000], link=link)
            )
        payload = payload_for(event, text, link)
        rows: list[WebhookDelivery] = []
        hooks = (await db.execute(select(Webhook).where(Webhook.enabled))).scalars()
        for hook in hooks:
            if event in (hook.events or []):
                rows.append(
                    WebhookDelivery(webhook_id=hook.id, url=hook.url, event=event, payload=payload)
                )
        default = (services.settings.notification_webhook or "").strip()
        if default:
            rows.append(WebhookDelivery(webhook_id=None, url=default, event=event, payload=payload))
        db.add_all(rows)
        await db.commit()
        return [row.id for row in rows]


# --- sending ------------------------------------------------------------------------------------

_tasks: set[asyncio.Task[None]] = set()  # strong references: a bare task may be collected


def _spawn(services: _Context, delivery_id: int) -> None:
    task = asyncio.create_task(deliver(services, delivery_id), name=f"webhook-{delivery_id}")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def drain(wait_seconds: float = 15.0) -> None:
    """Wait for this event loop's deliveries still in flight (shutdown, tests)."""
    loop = asyncio.get_running_loop()
    pending = [t for t in _tasks if not t.done() and t.get_loop() is loop]
    if pending:
        await asyncio.wait(pending, timeout=wait_seconds)


@dataclass
class _Attempt:
    ok: bool
    retry: bool
    response_status: int | None = None
    error: str | None = None


def _describe(exc: BaseException, target: Target) -> str:
    """A short error text without the URL (it may hold a token)."""
    text = str(exc).strip() or type(exc).__name__
    for secret in (str(target.url), str(target.request_url)):
        text = text.replace(secret, mask_url(secret))
    return f"{type(exc).__name__}: {text}"[:300]


async def _post(target: Target, payload: dict[str, Any]) -> _Attempt:
    headers = {
        "Host": target.host_header,
        "User-Agent": f"DeployMate/{__version__}",
        "Content-Type": "application/json",
    }
    extensions = {"sni_hostname": target.url.host} if target.url.scheme == "https" else {}
    try:
        async with asyncio.timeout(TIMEOUT):
            async with (
                httpx.AsyncClient(
                    timeout=TIMEOUT, follow_redirects=False, trust_env=False
                ) as client,
                client.stream(
                    "POST",
                    target.request_url,
                    json=payload,
                    headers=headers,
                    extensions=extensions,
                ) as res,
            ):
                status = res.status_code  # the body is never read
    except TimeoutError:
        return _Attempt(False, True, error=f"no answer within {TIMEOUT:g}s")
    except httpx.TimeoutException:
        return _Attempt(False, True, error=f"no answer within {TIMEOUT:g}s")
    except httpx.HTTPError as exc:
        return _Attempt(False, True, error=_describe(exc, target))
    except OSError as exc:
        return _Attempt(False, True, error=_describe(exc, target))
    if 200 <= status < 300:
        return _Attempt(True, False, status)
    if 300 <= status < 400:
        return _Attempt(False, False, status, f"HTTP {status}: redirect not followed")
    retry = status >= 500 or status in (408, 425, 429)
    return _Attempt(False, retry, status, f"HTTP {status}")


async def _save(services: _Context, delivery_id: int, **values: Any) -> None:
    async with services.sessions() as db:
        await db.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
        )
        await db.commit()


async def deliver(services: _Context, delivery_id: int) -> None:
    """Send one recorded delivery with retries and record the result; never raises."""
    try:
        async with services.sessions() as db:
            row = await db.get(WebhookDelivery, delivery_id)
            if row is None or row.status != "pending":
                return
            url, payload, hook_id = row.url, dict(row.payload), row.webhook_id
        result = _Attempt(False, False, error="not sent")
        attempts = 0
        for attempt in range(1, ATTEMPTS + 1):
            try:  # checked before every attempt: DNS can change between attempts
                target = await check_url(url, allow_private=services.settings.webhook_allow_private)
            except RefusedUrl as exc:
                result = _Attempt(False, False, error=f"refused: {exc}")
                break
            attempts = attempt
            result = await _post(target, payload)
            if result.ok or not result.retry or attempt == ATTEMPTS:
                break
            await _save(
                services,
                delivery_id,
                attempts=attempts,
                response_status=result.response_status,
                error=result.error,
            )
            await asyncio.sleep(BACKOFF[attempt - 1])
        await _save(
            services,
            delivery_id,
            status="succeeded" if result.ok else "failed",
            attempts=attempts,
            response_status=result.response_status,
            error=None if result.ok else result.error,
            finished_at=utcnow(),
        )
        if not result.ok:
            log.warning(
                "webhook delivery %s (%s, host %s) failed after %s attempt(s): %s",
                delivery_id,
                f"webhook {hook_id}" if hook_id else "default endpoint",
                url_host(url),
                attempts,
                result.error,
            )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("webhook delivery %s: unexpected error", delivery_id)
        try:
            await _save(
                services,
                delivery_id,
                status="failed",
                error="internal error; see the server log",
                finished_at=utcnow(),
            )
        except Exception:
            log.exception("webhook delivery %s: could not record the failure", delivery_id)


# --- in-app notifications -----------------------------------------------------------------------


async def list_for(
    db: AsyncSession, user_id: int, *, unread: bool = False, limit: int = 50
) -> list[Notification]:
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread:
        stmt = stmt.where(Notification.read_at.is_(None))
    stmt = stmt.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit)
    return list((await db.execute(stmt)).scalars())


async def unread_count(db: AsyncSession, user_id: int) -> int:
    stmt = (
        select(func.count())
        .select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
    )
    return int((await db.execute(stmt)).scalar_one())


async def mark_read(db: AsyncSession, user_id: int, notification_id: int) -> Notification:
    row = await db.get(Notification, notification_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"notification {notification_id} not found")
    if row.read_at is None:
        row.read_at = utcnow()
        await db.commit()
    return row


async def mark_all_read(db: AsyncSession, user_id: int) -> int:
    result = await db.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    await db.commit()
    return int(getattr(result, "rowcount", 0) or 0)


# --- webhooks (admins) --------------------------------------------------------------------------


def _name(value: str) -> str:
    name = (value or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed("name: between 1 and 100 characters")
    return name


def _events(values: Sequence[str]) -> list[str]:
    events = list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))
    unknown = [e for e in events if e not in SUBSCRIBABLE]
    if unknown:
        raise ValidationFailed(
            f"events: unknown event {unknown[0]!r}; choose from {', '.join(SUBSCRIBABLE)}"
        )
    if not events:
        raise ValidationFailed("events: choose at least one event")
    return events


async def _checked_url(
    db: AsyncSession,
    settings: Settings,
    actor: Actor,
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
            actor=actor,
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


async def get_webhook(db: AsyncSession, webhook_id: int) -> Webhook:
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
    settings: Settings,
    actor: Actor,
    *,
    name: str,
    url: str,
    events: Sequence[str],
    enabled: bool = True,
) -> Webhook:
    clean_name, clean_events = _name(name), _events(events)
    clean_url = await _checked_url(db, settings, actor, "webhook.create", url)
    hook = Webhook(
        name=clean_name,
        url=clean_url,
        events=clean_events,
        enabled=enabled,
        created_by=actor.username,
    )
    db.add(hook)
    await db.flush()
    await audit.record(
        db,
        actor=actor,
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
    settings: Settings,
    actor: Actor,
    webhook_id: int,
    *,
    name: str | None = None,
    url: str | None = None,
    events: Sequence[str] | None = None,
    enabled: bool | None = None,
) -> Webhook:
    hook = await get_webhook(db, webhook_id)
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = _name(name)
    if events is not None:
        changes["events"] = _events(events)
    if enabled is not None:
        changes["enabled"] = enabled
    if url is not None:
        changes["url"] = await _checked_url(
            db, settings, actor, "webhook.update", url, target_id=webhook_id
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
        actor=actor,
        action="webhook.update",
        target_type="webhook",
        target_id=hook.id,
        details=details,
    )
    await db.commit()
    return hook


async def delete_webhook(db: AsyncSession, actor: Actor, webhook_id: int) -> None:
    """Deletes the webhook and its delivery history."""
    hook = await get_webhook(db, webhook_id)
    details = {"name": hook.name, "host": url_host(hook.url)}
    await db.execute(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
    await db.delete(hook)
    await audit.record(
        db,
        actor=actor,
        action="webhook.delete",
        target_type="webhook",
        target_id=webhook_id,
        details=details,
    )
    await db.commit()


async def send_test(
    services: Services | _Context, db: AsyncSession, actor: Actor, webhook_id: int
) -> WebhookDelivery:
    """Send a `webhook.test` event now (not in the background) and return the delivery."""
    hook = await get_webhook(db, webhook_id)
    text = f"Test message from DeployMate for the webhook {hook.name!r}."
    delivery = WebhookDelivery(
        webhook_id=hook.id,
        url=hook.url,
        event="webhook.test",
        payload=payload_for("webhook.test", text, "/app/webhooks"),
    )
    db.add(delivery)
    await db.commit()
    await deliver(services, delivery.id)
    await db.refresh(delivery)
    await audit.record(
        db,
        actor=actor,
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
