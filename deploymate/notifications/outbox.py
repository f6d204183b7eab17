"""Webhook deliveries: the message body, the outbox rows, and sending them with retries.

Every delivery is recorded as `pending` before it is sent, then sent by an asyncio task that
updates the row; a sender never raises into its caller and never blocks a deploy.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from deploymate import __version__
from deploymate.core.config import Settings
from deploymate.core.db import utcnow
from deploymate.notifications.guard import RefusedUrl, Target, check_url, mask_url, url_host
from deploymate.notifications.models import WebhookDelivery

log = logging.getLogger("deploymate.notifications")

TIMEOUT = 3.0  # seconds, for each attempt as a whole (resolve, connect, send, response head)
BACKOFF = (0.5, 1.0)  # waits between attempts: three attempts in all
ATTEMPTS = len(BACKOFF) + 1
MAX_TEXT = 1900  # Discord refuses `content` over 2000 characters

# Text in a message may come from a member (deployment names, container output): it must
# not ping a channel or forge a link. Slack reads `<...>` as commands, mentions and links;
# Discord reads @everyone/@here, <@id>, and markdown links.
_DISCORD_MARKDOWN = re.compile(r"([\\`*_~|>\[\]()])")
_DISCORD_MENTION = re.compile(r"@(?=everyone|here|[!&]?\d)")


def slack_text(text: str) -> str:
    """Slack's own escaping: &, < and > as entities, so no `<!channel>` nor `<url|label>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def discord_text(text: str) -> str:
    """Markdown characters escaped and mentions broken (a zero-width space after @)."""
    return _DISCORD_MENTION.sub("@\u200b", _DISCORD_MARKDOWN.sub(r"\\\1", text))


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def payload_for(event: str, text: str, link: str | None) -> dict[str, Any]:
    """One body that Slack (`text`) and Discord (`content`) both accept, each escaped for its
    reader; Discord is also told to ping nobody (`allowed_mentions`)."""
    short = _shorten(text)
    return {
        "text": slack_text(short),
        "content": _shorten(discord_text(short)),
        "allowed_mentions": {"parse": []},
        "event": event,
        "link": link,
    }


class Sender:
    """Sends recorded deliveries in the background; `drain` waits for those in flight."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: a bare task may go

    def spawn(self, delivery_id: int) -> None:
        task = asyncio.create_task(self.deliver(delivery_id), name=f"webhook-{delivery_id}")
        _in_flight.add(task)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_in_flight.discard)

    async def _save(self, delivery_id: int, **values: Any) -> None:
        async with self.sessions() as db:
            await db.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
            )
            await db.commit()

    async def deliver(self, delivery_id: int) -> None:
        """Send one recorded delivery with retries and record the result; never raises."""
        try:
            async with self.sessions() as db:
                row = await db.get(WebhookDelivery, delivery_id)
                if row is None or row.status != "pending":
                    return
                url, payload, hook_id = row.url, dict(row.payload), row.webhook_id
            result, attempts = await self._attempts(delivery_id, url, payload)
            await self._save(
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
                await self._save(
                    delivery_id,
                    status="failed",
                    error="internal error; see the server log",
                    finished_at=utcnow(),
                )
            except Exception:
                log.exception("webhook delivery %s: could not record the failure", delivery_id)

    async def _attempts(
        self, delivery_id: int, url: str, payload: dict[str, Any]
    ) -> tuple[Attempt, int]:
        result = Attempt(False, False, error="not sent")
        attempts = 0
        for attempt in range(1, ATTEMPTS + 1):
            try:  # checked before every attempt: DNS can change between attempts
                target = await check_url(url, allow_private=self.settings.webhook_allow_private)
            except RefusedUrl as exc:
                return Attempt(False, False, error=f"refused: {exc}"), attempts
            attempts = attempt
            result = await post(target, payload)
            if result.ok or not result.retry or attempt == ATTEMPTS:
                break
            await self._save(
                delivery_id,
                attempts=attempts,
                response_status=result.response_status,
                error=result.error,
            )
            await asyncio.sleep(BACKOFF[attempt - 1])
        return result, attempts


_in_flight: set[asyncio.Task[None]] = set()


async def drain(wait_seconds: float = 15.0) -> None:
    """Wait for this event loop's deliveries still in flight (shutdown, tests)."""
    loop = asyncio.get_running_loop()
    pending = [t for t in _in_flight if not t.done() and t.get_loop() is loop]
    if pending:
        await asyncio.wait(pending, timeout=wait_seconds)


@dataclass
class Attempt:
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


async def post(target: Target, payload: dict[str, Any]) -> Attempt:
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
    except (TimeoutError, httpx.TimeoutException):
        return Attempt(False, True, error=f"no answer within {TIMEOUT:g}s")
    except (httpx.HTTPError, OSError) as exc:
        return Attempt(False, True, error=_describe(exc, target))
    if 200 <= status < 300:
        return Attempt(True, False, status)
    if 300 <= status < 400:
        return Attempt(False, False, status, f"HTTP {status}: redirect not followed")
    retry = status >= 500 or status in (408, 425, 429)
    return Attempt(False, retry, status, f"HTTP {status}")
