"""Accounts, sessions and API tokens: the use cases behind the auth routes and the CLI."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from anyio import to_thread
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.audit import service as audit
from deploymate.audit.service import Actor
from deploymate.auth import tokens
from deploymate.auth.models import ApiToken, AuthSession, Role, User
from deploymate.auth.passwords import hash_password, password_problem, verify_password
from deploymate.config import Settings
from deploymate.db import utcnow
from deploymate.errors import Conflict, NotAuthenticated, NotFound, RateLimited, ValidationFailed

INVALID_LOGIN = "invalid username or password"


@dataclass(frozen=True)
class NewSession:
    """A freshly issued session: the cookie secret leaves the process only in the cookie."""

    secret: str
    csrf_token: str
    user: User
    expires_at: datetime


async def _hash(password: str) -> str:
    return await to_thread.run_sync(hash_password, password)


async def _verify(password_hash: str | None, password: str) -> bool:
    return await to_thread.run_sync(verify_password, password_hash, password)


def check_password_policy(password: str, username: str, field: str = "password") -> None:
    problem = password_problem(password, username)
    if problem:
        raise ValidationFailed(f"{field}: {problem}")


async def get_user_by_name(db: AsyncSession, username: str) -> User | None:
    return (await db.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def count_users(db: AsyncSession) -> int:
    return int((await db.execute(select(func.count()).select_from(User))).scalar_one())


async def create_user(
    db: AsyncSession,
    *,
    actor: Actor,
    username: str,
    role: Role,
    password: str | None,
    must_change_password: bool,
) -> tuple[User, str | None]:
    """Create a user; without a password a temporary one is generated and returned once."""
    if await get_user_by_name(db, username) is not None:
        raise Conflict(f"username already taken: {username}", code="username_taken")
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(15)
    else:
        check_password_policy(password, username)
    user = User(
        username=username,
        password_hash=await _hash(password),
        role=role.value,
        must_change_password=must_change_password,
    )
    db.add(user)
    await db.flush()
    await audit.record(
        db,
        actor=actor,
        action="user.create",
        target_type="user",
        target_id=user.id,
        details={"username": username, "role": role.value},
    )
    await db.commit()
    return user, generated


async def bootstrap_admin(db: AsyncSession, settings: Settings) -> str | None:
    """On an empty database create the first admin; returns a generated password to print once."""
    if await count_users(db) > 0:
        return None
    system = Actor(user_id=None, username="system", client_address=None)
    if settings.admin_password is not None:
        await create_user(
            db,
            actor=system,
            username=settings.admin_username,
            role=Role.admin,
            password=settings.admin_password.get_secret_value(),
            must_change_password=False,
        )
        return None
    _, generated = await create_user(
        db,
        actor=system,
        username=settings.admin_username,
        role=Role.admin,
        password=None,
        must_change_password=True,
    )
    return generated


# Attempts for one username or from one address run one at a time, so concurrent guesses
# cannot all pass the failure count before any of them is recorded.
_attempt_locks: dict[str, asyncio.Lock] = {}


def _attempt_lock(key: str) -> asyncio.Lock:
    if len(_attempt_locks) > 10_000:
        for stale in [k for k, lock in _attempt_locks.items() if not lock.locked()]:
            del _attempt_locks[stale]
    return _attempt_locks.setdefault(key, asyncio.Lock())


async def _throttle(
    db: AsyncSession, settings: Settings, username: str, address: str | None
) -> None:
    window_start = utcnow() - timedelta(minutes=settings.login_failure_window_minutes)
    last_ok = await audit.last_success(db, action="auth.login", username=username)
    since_user = max(window_start, last_ok) if last_ok else window_start
    by_user = await audit.count_failures(
        db, action="auth.login", since=since_user, username=username
    )
    by_addr = (
        await audit.count_failures(db, action="auth.login", since=window_start, address=address)
        if address
        else 0
    )
    if by_user >= settings.login_max_failures_per_user or (
        by_addr >= settings.login_max_failures_per_address
    ):
        retry = int(timedelta(minutes=settings.login_failure_window_minutes).total_seconds())
        raise RateLimited("too many failed logins; try again later", retry_after=retry)


async def login(
    db: AsyncSession,
    settings: Settings,
    *,
    username: str,
    password: str,
    client_address: str | None,
    user_agent: str | None,
    previous_secret: str | None = None,
) -> NewSession:
    """Check credentials and open a new session (a new id every time: no fixation)."""
    async with _attempt_lock(f"addr:{client_address}"), _attempt_lock(f"user:{username[:64]}"):
        return await _login(
            db,
            settings,
            username=username,
            password=password,
            client_address=client_address,
            user_agent=user_agent,
            previous_secret=previous_secret,
        )


async def _login(
    db: AsyncSession,
    settings: Settings,
    *,
    username: str,
    password: str,
    client_address: str | None,
    user_agent: str | None,
    previous_secret: str | None,
) -> NewSession:
    actor = Actor(user_id=None, username=username[:64], client_address=client_address)
    await _throttle(db, settings, username[:64], client_address)
    user = await get_user_by_name(db, username)
    ok = await _verify(user.password_hash if user else None, password)
    if not ok or user is None or not user.is_active:
        reason = "bad credentials" if user is None or not ok else "account disabled"
        await audit.record(
            db, actor=actor, action="auth.login", outcome="failure", details={"reason": reason}
        )
        await db.commit()
        raise NotAuthenticated(INVALID_LOGIN, code="invalid_credentials")
    if previous_secret:
        await db.execute(
            delete(AuthSession).where(AuthSession.token_hash == tokens.digest(previous_secret))
        )
    user.last_login_at = utcnow()
    await audit.record(
        db,
        actor=Actor(user.id, user.username, client_address),
        action="auth.login",
        target_type="user",
        target_id=user.id,
    )
    return await issue_session(
        db, settings, user, client_address=client_address, user_agent=user_agent
    )


async def issue_session(
    db: AsyncSession,
    settings: Settings,
    user: User,
    *,
    client_address: str | None,
    user_agent: str | None,
) -> NewSession:
    """A fresh session for an authenticated user (after login, or after a password change)."""
    now = utcnow()
    secret = tokens.new_secret()
    expires = now + timedelta(hours=settings.session_max_hours)
    db.add(
        AuthSession(
            token_hash=tokens.digest(secret),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=expires,
            client_address=client_address,
            user_agent=(user_agent or "")[:255],
        )
    )
    await db.commit()
    return NewSession(
        secret=secret, csrf_token=tokens.csrf_for(secret), user=user, expires_at=expires
    )


async def user_for_session(db: AsyncSession, settings: Settings, secret: str) -> User | None:
    """The user behind a session cookie, enforcing idle and absolute expiry."""
    row = (
        await db.execute(select(AuthSession).where(AuthSession.token_hash == tokens.digest(secret)))
    ).scalar_one_or_none()
    if row is None:
        return None
    now = utcnow()
    idle_limit = row.last_seen_at + timedelta(minutes=settings.session_idle_minutes)
    if now >= row.expires_at or now >= idle_limit:
        await db.delete(row)
        await db.commit()
        return None
    user = await db.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    if (now - row.last_seen_at).total_seconds() > 30:  # avoid a write on every request
        row.last_seen_at = now
        await db.commit()
    return user


async def user_for_api_token(db: AsyncSession, token: str) -> User | None:
    row = (
        await db.execute(
            select(ApiToken).where(
                ApiToken.token_hash == tokens.digest(token), ApiToken.revoked_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    user = await db.get(User, row.user_id)
    if user is None or not user.is_active:
        return None
    row.last_used_at = utcnow()
    await db.commit()
    return user


async def logout(db: AsyncSession, *, actor: Actor, secret: str | None) -> None:
    """End the browser session (a token-authenticated logout only records the event)."""
    if secret:
        await db.execute(delete(AuthSession).where(AuthSession.token_hash == tokens.digest(secret)))
    await audit.record(
        db, actor=actor, action="auth.logout", target_type="user", target_id=actor.user_id
    )
    await db.commit()


async def end_all_sessions(db: AsyncSession, user_id: int) -> None:
    await db.execute(delete(AuthSession).where(AuthSession.user_id == user_id))


async def change_password(
    db: AsyncSession, *, actor: Actor, user: User, current_password: str, new_password: str
) -> None:
    """Change the password and end every session of the user; the caller issues a new one."""
    if not await _verify(user.password_hash, current_password):
        await audit.record(
            db,
            actor=actor,
            action="auth.change_password",
            target_type="user",
            target_id=user.id,
            outcome="failure",
            details={"reason": "wrong current password"},
        )
        await db.commit()
        raise ValidationFailed("current_password: is not correct", code="wrong_password")
    check_password_policy(new_password, user.username, "new_password")
    if new_password == current_password:
        raise ValidationFailed("new_password: must differ from the current password")
    user.password_hash = await _hash(new_password)
    user.must_change_password = False
    await end_all_sessions(db, user.id)
    await audit.record(
        db, actor=actor, action="auth.change_password", target_type="user", target_id=user.id
    )
    await db.commit()


async def reset_password(
    db: AsyncSession, *, actor: Actor, username: str, new_password: str | None
) -> str | None:
    """Admin reset: sets a password (generated when None), forces a change, ends sessions."""
    user = await get_user_by_name(db, username)
    if user is None:
        raise NotFound(f"no such user: {username}")
    generated = None
    if new_password is None:
        generated = new_password = secrets.token_urlsafe(15)
    else:
        check_password_policy(new_password, username)
    user.password_hash = await _hash(new_password)
    user.must_change_password = True
    await end_all_sessions(db, user.id)
    await db.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await audit.record(
        db, actor=actor, action="user.reset_password", target_type="user", target_id=user.id
    )
    await db.commit()
    return generated


async def create_api_token(
    db: AsyncSession, *, actor: Actor, user: User, name: str
) -> tuple[ApiToken, str]:
    token = tokens.new_api_token()
    row = ApiToken(user_id=user.id, name=name, token_hash=tokens.digest(token), prefix=token[:8])
    db.add(row)
    await db.flush()
    await audit.record(
        db,
        actor=actor,
        action="token.create",
        target_type="api_token",
        target_id=row.id,
        details={"name": name},
    )
    await db.commit()
    return row, token


async def list_api_tokens(db: AsyncSession, *, user: User) -> list[ApiToken]:
    rows = await db.execute(
        select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)
    )
    return list(rows.scalars())


async def revoke_api_token(db: AsyncSession, *, actor: Actor, user: User, token_id: int) -> None:
    row = await db.get(ApiToken, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound("no such token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await audit.record(
            db, actor=actor, action="token.revoke", target_type="api_token", target_id=row.id
        )
        await db.commit()
