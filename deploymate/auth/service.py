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
from deploymate.auth.models import ApiToken, AuthSession, Role, User
from deploymate.core import tokens
from deploymate.core.caller import Caller
from deploymate.core.config import Settings
from deploymate.core.db import utcnow
from deploymate.core.errors import (
    Conflict,
    NotAuthenticated,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from deploymate.core.passwords import hash_password, password_problem, verify_password

INVALID_LOGIN = "invalid username or password"
LOGIN = "auth.login"
# Once a username has had too many failures (from anywhere), every further attempt for it
# waits this long, doubling per failure up to the cap: guessing slows down, the owner still
# gets in from an address that never failed.
BACKOFF_START = 0.5
BACKOFF_MAX = 8.0


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
        raise ValidationFailed(problem, field=field)


async def get_by_name(db: AsyncSession, *, username: str) -> User | None:
    return (await db.execute(select(User).where(User.username == username))).scalar_one_or_none()


async def get(db: AsyncSession, *, user_id: int) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise NotFound(f"no such user: {user_id}")
    return user


async def count(db: AsyncSession) -> int:
    return int((await db.execute(select(func.count()).select_from(User))).scalar_one())


async def create_user(
    db: AsyncSession,
    *,
    caller: Caller,
    username: str,
    role: Role,
    password: str | None,
    must_change_password: bool,
) -> tuple[User, str | None]:
    """Create a user; without a password a temporary one is generated and returned once."""
    if await get_by_name(db, username=username) is not None:
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
        caller=caller,
        action="user.create",
        target_type="user",
        target_id=user.id,
        details={"username": username, "role": role.value},
    )
    await db.commit()
    return user, generated


async def bootstrap_admin(db: AsyncSession, *, settings: Settings) -> str | None:
    """On an empty database create the first admin; returns a generated password to print once."""
    if await count(db) > 0:
        return None
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    _, generated = await create_user(
        db,
        caller=Caller.system(),
        username=settings.admin_username,
        role=Role.admin,
        password=password,
        must_change_password=password is None,
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


@dataclass(frozen=True)
class _Failures:
    by_user: int  # for this username from anywhere, since its last success
    by_user_here: int  # for this username from this address, since its last success
    by_address: int  # from this address, any username, in the window


async def _failures(
    db: AsyncSession, settings: Settings, username: str, address: str | None
) -> _Failures:
    window_start = utcnow() - timedelta(minutes=settings.login_failure_window_minutes)
    last_ok = await audit.last_success(db, action=LOGIN, username=username)
    since_user = max(window_start, last_ok) if last_ok else window_start
    by_user = await audit.count_failures(db, action=LOGIN, since=since_user, username=username)
    by_user_here = (
        await audit.count_failures(
            db, action=LOGIN, since=since_user, username=username, address=address
        )
        if by_user and address is not None
        else by_user
    )
    by_address = (
        await audit.count_failures(db, action=LOGIN, since=window_start, address=address)
        if address
        else 0
    )
    return _Failures(by_user, by_user_here, by_address)


def backoff_seconds(failures: int, limit: int) -> float:
    """The wait before an attempt for a username with `failures` since its last success."""
    if failures < limit:
        return 0.0
    return min(BACKOFF_START * 2 ** (failures - limit), BACKOFF_MAX)


async def _backoff(db: AsyncSession, settings: Settings, username: str) -> None:
    """Per username from everywhere: slowed down, never refused, so failures elsewhere cannot
    lock the owner out. The wait holds no lock and no database connection."""
    seen = await _failures(db, settings, username, None)
    await db.rollback()  # hand the connection back to the pool before waiting
    delay = backoff_seconds(seen.by_user, settings.login_max_failures_per_user)
    if delay:
        await asyncio.sleep(delay)


async def _refuse_if_over(
    db: AsyncSession, settings: Settings, username: str, address: str | None
) -> None:
    """Per address (any username), and per username from this address: refused past the limit."""
    seen = await _failures(db, settings, username, address)
    if (
        seen.by_address >= settings.login_max_failures_per_address
        or seen.by_user_here >= settings.login_max_failures_per_user
    ):
        retry = int(timedelta(minutes=settings.login_failure_window_minutes).total_seconds())
        raise RateLimited("too many failed logins; try again later", retry_after=retry)


async def login(
    db: AsyncSession,
    *,
    settings: Settings,
    username: str,
    password: str,
    client_address: str | None,
    user_agent: str | None,
    previous_secret: str | None = None,
) -> NewSession:
    """Check credentials and open a new session (a new id every time: no fixation)."""
    name = username[:64]
    await _backoff(db, settings, name)
    async with _attempt_lock(f"addr:{client_address}"), _attempt_lock(f"user:{name}"):
        await _refuse_if_over(db, settings, name, client_address)
        user = await get_by_name(db, username=username)
        ok = await _verify(user.password_hash if user else None, password)
        if not ok or user is None or not user.is_active:
            reason = "bad credentials" if user is None or not ok else "account disabled"
            await audit.record(
                db,
                caller=Caller.anonymous(name, client_address),
                action=LOGIN,
                outcome="failure",
                details={"reason": reason},
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
        caller=Caller.of(user, via="session", client_address=client_address),
        action=LOGIN,
        target_type="user",
        target_id=user.id,
    )
    return await issue_session(
        db, settings=settings, user=user, client_address=client_address, user_agent=user_agent
    )


async def issue_session(
    db: AsyncSession,
    *,
    settings: Settings,
    user: User,
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


async def user_for_session(db: AsyncSession, *, settings: Settings, secret: str) -> User | None:
    """The user behind a session cookie, enforcing idle and absolute expiry (one query)."""
    found = (
        await db.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_hash == tokens.digest(secret))
        )
    ).first()
    if found is None:
        return None
    row, user = found
    now = utcnow()
    idle_limit = row.last_seen_at + timedelta(minutes=settings.session_idle_minutes)
    if now >= row.expires_at or now >= idle_limit:
        await db.delete(row)
        await db.commit()
        return None
    if not user.is_active:
        return None
    if (now - row.last_seen_at).total_seconds() > 30:  # avoid a write on every request
        row.last_seen_at = now
        await db.commit()
    return user


async def holder_of_api_token(db: AsyncSession, *, token: str) -> tuple[User, ApiToken] | None:
    """The active user holding a token that was not revoked, and the token (one query).

    Raises NotAuthenticated for a token past its expiry, saying so (a CI job then knows to
    make a new one rather than hunt for a typo)."""
    found = (
        await db.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(
                ApiToken.token_hash == tokens.digest(token),
                ApiToken.revoked_at.is_(None),
                User.is_active.is_(True),
            )
        )
    ).first()
    if found is None:
        return None
    row, user = found
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        raise NotAuthenticated(
            f"this API token ({row.name}) expired on {row.expires_at:%Y-%m-%d %H:%M} UTC; "
            "create a new one on the API tokens page",
            code="token_expired",
        )
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 30:
        row.last_used_at = now  # at most one write per half minute, as for sessions
        await db.commit()
    return user, row


async def identify(
    db: AsyncSession,
    *,
    settings: Settings,
    api_token: str | None,
    session_secret: str | None,
    client_address: str | None,
) -> Caller | None:
    """Who a request comes from: its API token (tried first), else its session cookie."""
    if api_token is not None:
        held = await holder_of_api_token(db, token=api_token)
        if held is None:
            raise NotAuthenticated("invalid or revoked API token", code="invalid_token")
        holder, row = held
        return Caller.of(holder, via="token", client_address=client_address, scopes=row.scope_list)
    if session_secret is None:
        return None
    user = await user_for_session(db, settings=settings, secret=session_secret)
    if user is None:
        return None
    return Caller.of(
        user, via="session", client_address=client_address, session_secret=session_secret
    )


async def logout(db: AsyncSession, *, caller: Caller) -> None:
    """End the browser session (a token-authenticated logout only records the event)."""
    if caller.session_secret:
        await db.execute(
            delete(AuthSession).where(
                AuthSession.token_hash == tokens.digest(caller.session_secret)
            )
        )
    await audit.record(
        db, caller=caller, action="auth.logout", target_type="user", target_id=caller.user_id
    )
    await db.commit()


async def end_access(db: AsyncSession, *, user_id: int) -> None:
    """Every session and API token of the user ends (in the caller's transaction)."""
    await db.execute(delete(AuthSession).where(AuthSession.user_id == user_id))
    await db.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def change_password(
    db: AsyncSession, *, caller: Caller, current_password: str, new_password: str
) -> User:
    """Change the caller's password; every session and API token of theirs ends (the caller
    issues a new session for the browser that asked)."""
    assert caller.user_id is not None
    user = await get(db, user_id=caller.user_id)
    if not await _verify(user.password_hash, current_password):
        await audit.record(
            db,
            caller=caller,
            action="auth.change_password",
            target_type="user",
            target_id=user.id,
            outcome="failure",
            details={"reason": "wrong current password"},
        )
        await db.commit()
        raise ValidationFailed("is not correct", field="current_password", code="wrong_password")
    check_password_policy(new_password, user.username, "new_password")
    if new_password == current_password:
        raise ValidationFailed("must differ from the current password", field="new_password")
    user.password_hash = await _hash(new_password)
    user.must_change_password = False
    await end_access(db, user_id=user.id)
    await audit.record(
        db, caller=caller, action="auth.change_password", target_type="user", target_id=user.id
    )
    await db.commit()
    return user


async def reset_password(
    db: AsyncSession, *, caller: Caller, username: str, new_password: str | None
) -> str | None:
    """Admin reset: sets a password (generated when None), forces a change, ends access."""
    user = await get_by_name(db, username=username)
    if user is None:
        raise NotFound(f"no such user: {username}")
    generated = None
    if new_password is None:
        generated = new_password = secrets.token_urlsafe(15)
    else:
        check_password_policy(new_password, username)
    user.password_hash = await _hash(new_password)
    user.must_change_password = True
    await end_access(db, user_id=user.id)
    await audit.record(
        db, caller=caller, action="user.reset_password", target_type="user", target_id=user.id
    )
    await db.commit()
    return generated


async def create_api_token(
    db: AsyncSession,
    *,
    caller: Caller,
    name: str,
    scopes: tuple[str, ...] = (),
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    """A new token, shown once. Without scopes it acts with the caller's full rights (a scoped
    token cannot reach this: core.scopes lets it write app operations only)."""
    assert caller.user_id is not None
    token = tokens.new_api_token()
    row = ApiToken(
        user_id=caller.user_id,
        name=name,
        token_hash=tokens.digest(token),
        prefix=token[:8],
        scopes=",".join(scopes) or None,
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    db.add(row)
    await db.flush()
    await audit.record(
        db,
        caller=caller,
        action="token.create",
        target_type="api_token",
        target_id=row.id,
        details={
            "name": name,
            "scopes": list(scopes) or ["full rights"],
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        },
    )
    await db.commit()
    return row, token


async def list_api_tokens(db: AsyncSession, *, caller: Caller) -> list[ApiToken]:
    rows = await db.execute(
        select(ApiToken).where(ApiToken.user_id == caller.user_id).order_by(ApiToken.id)
    )
    return list(rows.scalars())


async def revoke_api_token(db: AsyncSession, *, caller: Caller, token_id: int) -> None:
    row = await db.get(ApiToken, token_id)
    if row is None or row.user_id != caller.user_id:
        raise NotFound("no such token")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await audit.record(
            db, caller=caller, action="token.revoke", target_type="api_token", target_id=row.id
        )
        await db.commit()
