"""The auth API contract: login, sessions, CSRF, throttling, password change and tokens."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from deploymate.app import create_app
from deploymate.auth.models import AuthSession
from deploymate.core.db import utcnow
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.support.api import audit_rows, create_user, login, run_in_app, second_client

NEW_PASSWORD = "a-much-Better-passphrase-7"


def test_login_returns_user_csrf_and_a_hardened_cookie(client: TestClient) -> None:
    res = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert res.status_code == 200
    body = res.json()
    assert body["user"]["username"] == "admin" and body["user"]["role"] == "admin"
    assert body["csrf_token"]
    cookie = res.headers["set-cookie"]
    assert cookie.startswith("deploymate_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    me = client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["csrf_token"] == body["csrf_token"]
    assert me.json()["user"]["last_login_at"] is not None


def test_unknown_user_and_wrong_password_get_the_same_answer(client: TestClient) -> None:
    wrong = client.post("/api/auth/login", json={"username": "admin", "password": "x" * 14})
    unknown = client.post("/api/auth/login", json={"username": "nobody", "password": "x" * 14})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"detail": "invalid username or password", "code": "invalid_credentials"}
    )
    assert "set-cookie" not in wrong.headers


def test_login_is_throttled_per_username_even_with_the_right_password(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, login_max_failures_per_user=3)
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert (
                client.post(
                    "/api/auth/login", json={"username": "admin", "password": "wrong-password-1"}
                ).status_code
                == 401
            )
        res = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert res.status_code == 429
        assert res.json()["code"] == "rate_limited" and int(res.headers["retry-after"]) > 0


def test_login_is_throttled_per_client_address(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, login_max_failures_per_address=4)
    with TestClient(create_app(settings)) as client:
        for i in range(4):
            client.post(
                "/api/auth/login", json={"username": f"guess{i}", "password": "wrong-password-1"}
            )
        res = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert res.status_code == 429


def test_logout_ends_the_session_and_a_replayed_cookie_is_refused(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    stolen = client.cookies.get("deploymate_session")
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/auth/me").status_code == 401
    client.cookies.set("deploymate_session", stolen)
    res = client.get("/api/auth/me")
    assert res.status_code == 401 and res.json()["code"] == "not_authenticated"


def test_every_login_issues_a_new_session_id(client: TestClient) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    first = client.cookies.get("deploymate_session")
    login(client, "admin", ADMIN_PASSWORD)
    second = client.cookies.get("deploymate_session")
    assert first and second and first != second
    client.cookies.set("deploymate_session", first)
    assert client.get("/api/auth/me").status_code == 401  # the presented session was replaced


def test_unsafe_requests_with_a_cookie_need_the_csrf_token(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    missing = client.post("/api/auth/tokens", json={"name": "ci"})
    wrong = client.post("/api/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": "nope"})
    assert missing.status_code == wrong.status_code == 403
    assert missing.json()["code"] == "csrf_failed"
    assert client.get("/api/auth/tokens").json() == []  # nothing was created
    ok = client.post("/api/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 201


def test_sessions_expire_when_idle_and_at_their_absolute_limit(client: TestClient) -> None:
    async def age(db, column: str) -> None:  # type: ignore[no-untyped-def]
        values = (
            {"last_seen_at": utcnow() - timedelta(days=1)}
            if column == "idle"
            else {"expires_at": utcnow() - timedelta(seconds=1)}
        )
        await db.execute(update(AuthSession).values(**values))
        await db.commit()

    for column in ("idle", "absolute"):
        login(client, "admin", ADMIN_PASSWORD)
        assert client.get("/api/auth/me").status_code == 200
        run_in_app(client, age, column)
        assert client.get("/api/auth/me").status_code == 401, column

    async def count(db) -> int:  # type: ignore[no-untyped-def]
        return len((await db.execute(select(AuthSession))).scalars().all())

    assert run_in_app(client, count) == 0  # expired sessions are deleted


def test_change_password_ends_other_sessions_and_keeps_this_one(
    client: TestClient, settings
) -> None:  # type: ignore[no-untyped-def]
    csrf = login(client, "admin", ADMIN_PASSWORD)
    other = second_client(client)
    login(other, "admin", ADMIN_PASSWORD)
    res = client.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert res.status_code == 200, res.text
    assert other.get("/api/auth/me").status_code == 401
    new_csrf = res.json()["csrf_token"]
    assert client.get("/api/auth/me").json()["csrf_token"] == new_csrf
    client.cookies.clear()
    assert (
        client.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).status_code
        == 401
    )
    login(client, "admin", NEW_PASSWORD)


def test_password_policy_and_wrong_current_password(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    headers = {"X-CSRF-Token": csrf}
    cases = {
        "short-pass1": "at least 12",
        "Password1234": "too common",
        "y" * 257: "at most 256",
    }
    for new, message in cases.items():
        res = client.post(
            "/api/auth/change-password",
            headers=headers,
            json={"current_password": ADMIN_PASSWORD, "new_password": new},
        )
        assert res.status_code == 422, new
        assert "new password" in res.json()["detail"] and message in res.json()["detail"]
    res = client.post(
        "/api/auth/change-password",
        headers=headers,
        json={"current_password": "not-my-password", "new_password": NEW_PASSWORD},
    )
    assert res.status_code == 422 and res.json()["code"] == "wrong_password"
    # 128-character passwords are accepted whole: no truncation
    long_pw = "Zq9-" * 32
    res = client.post(
        "/api/auth/change-password",
        headers=headers,
        json={"current_password": ADMIN_PASSWORD, "new_password": long_pw},
    )
    assert res.status_code == 200
    client.cookies.clear()
    truncated = client.post("/api/auth/login", json={"username": "admin", "password": long_pw[:72]})
    assert truncated.status_code == 401
    login(client, "admin", long_pw)


def test_a_new_user_must_change_the_temporary_password_first(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    created = create_user(client, csrf, "dana")
    temp = created["temporary_password"]
    assert created["user"]["must_change_password"] is True
    client.cookies.clear()
    csrf = login(client, "dana", temp)
    blocked = client.post("/api/auth/tokens", json={"name": "x"}, headers={"X-CSRF-Token": csrf})
    assert blocked.status_code == 403 and blocked.json()["code"] == "password_change_required"
    assert client.get("/api/auth/me").status_code == 200
    res = client.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": temp, "new_password": NEW_PASSWORD},
    )
    assert res.status_code == 200 and res.json()["user"]["must_change_password"] is False
    ok = client.post(
        "/api/auth/tokens", json={"name": "x"}, headers={"X-CSRF-Token": res.json()["csrf_token"]}
    )
    assert ok.status_code == 201


def test_api_tokens_are_shown_once_work_as_bearer_and_stop_when_revoked(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    res = client.post("/api/auth/tokens", json={"name": "laptop"}, headers={"X-CSRF-Token": csrf})
    token, token_id = res.json()["token"], res.json()["id"]
    listed = client.get("/api/auth/tokens").json()
    assert [t["name"] for t in listed] == ["laptop"] and token not in str(listed)
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/auth/me", headers=bearer).json()["user"]["username"] == "admin"
    # a bearer request needs no CSRF token
    assert client.post("/api/auth/tokens", json={"name": "2"}, headers=bearer).status_code == 201
    # never accepted from the URL
    for param in ("token", "access_token", "api_token"):
        assert client.get(f"/api/auth/me?{param}={token}").status_code == 401
    assert client.delete(f"/api/auth/tokens/{token_id}", headers=bearer).status_code == 204
    res = client.get("/api/auth/me", headers=bearer)
    assert res.status_code == 401 and res.json()["code"] == "invalid_token"


def test_audit_records_auth_events_without_secrets(client: TestClient) -> None:
    client.post("/api/auth/login", json={"username": "admin", "password": "wrong-password-9"})
    csrf = login(client, "admin", ADMIN_PASSWORD)
    res = client.post("/api/auth/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf})
    token = res.json()["token"]
    client.delete(f"/api/auth/tokens/{res.json()['id']}", headers={"X-CSRF-Token": csrf})
    res = client.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD},
    )
    client.post("/api/auth/logout", headers={"X-CSRF-Token": res.json()["csrf_token"]})
    rows = audit_rows(client)
    seen = [(r["action"], r["outcome"]) for r in rows]
    for expected in [
        ("auth.login", "failure"),
        ("auth.login", "success"),
        ("token.create", "success"),
        ("token.revoke", "success"),
        ("auth.change_password", "success"),
        ("auth.logout", "success"),
    ]:
        assert expected in seen
    failure = next(r for r in rows if r["outcome"] == "failure")
    assert failure["actor"] == "admin" and failure["address"] == "testclient"
    dump = repr(rows)
    for secret in (ADMIN_PASSWORD, NEW_PASSWORD, "wrong-password-9", token):
        assert secret not in dump


def test_secure_cookie_mode_uses_the_host_prefix(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, secure_cookies=True)
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        res = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        cookie = res.headers["set-cookie"]
        assert cookie.startswith("__Host-deploymate_session=") and "Secure" in cookie
        assert client.get("/api/auth/me").status_code == 200
        for path in ("/api/health", "/login", "/api/nothing-here"):
            hsts = client.get(path).headers["strict-transport-security"]
            assert hsts == "max-age=31536000; includeSubDomains", path


def test_plain_http_mode_sends_no_hsts(client: TestClient) -> None:
    assert "strict-transport-security" not in client.get("/api/health").headers


def test_api_tokens_end_when_their_owner_changes_the_password(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    token = client.post(
        "/api/auth/tokens", json={"name": "ci"}, headers={"X-CSRF-Token": csrf}
    ).json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert second_client(client).get("/api/auth/me", headers=bearer).status_code == 200
    res = client.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": ADMIN_PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert res.status_code == 200, res.text
    res = second_client(client).get("/api/auth/me", headers=bearer)
    assert res.status_code == 401 and res.json()["code"] == "invalid_token"
    assert all(t["revoked_at"] for t in client.get("/api/auth/tokens").json())


def _attempt(client: TestClient, address: str, password: str) -> tuple[int, float]:
    started = time.monotonic()
    res = second_client(client, address).post(
        "/api/auth/login", json={"username": "admin", "password": password}
    )
    return res.status_code, time.monotonic() - started


def test_failures_elsewhere_slow_a_user_down_but_never_lock_them_out(client: TestClient) -> None:
    guesser, owner, other = "198.51.100.7", "203.0.113.20", "192.0.2.99"
    for _ in range(5):  # the per-user limit, from one address
        assert _attempt(client, guesser, "wrong-password-1")[0] == 401
    assert _attempt(client, guesser, "wrong-password-2")[0] == 429  # that address is refused
    assert _attempt(client, guesser, ADMIN_PASSWORD)[0] == 429  # even with the right password
    status, seconds = _attempt(client, owner, ADMIN_PASSWORD)
    assert status == 200 and seconds >= 0.5  # the owner gets in, after a short wait
    # A success resets the per-user count; more guesses from a third address back off again.
    for _ in range(5):
        _attempt(client, other, "wrong-password-3")
    status, seconds = _attempt(client, other, "wrong-password-4")
    assert status == 429
    status, seconds = _attempt(client, "203.0.113.21", "wrong-password-5")
    assert status == 401 and seconds >= 0.5


def test_forwarded_for_counts_only_behind_a_trusted_proxy(client: TestClient) -> None:
    settings = client.app.state.context.settings  # type: ignore[attr-defined]
    settings.trusted_proxies = "10.0.0.0/8"
    settings.__dict__.pop("trusted_proxy_networks", None)
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
    for peer in ("10.1.2.3", "192.0.2.50"):
        res = second_client(client, peer).post(
            "/api/auth/login",
            json={"username": "nobody", "password": "wrong-password-1"},
            headers=forwarded,
        )
        assert res.status_code == 401
    addresses = [r["address"] for r in audit_rows(client) if r["action"] == "auth.login"]
    # Behind the proxy: the client it names (the right-most address not a proxy itself);
    # anywhere else the header is anybody's to forge, and the peer counts.
    assert addresses[-2:] == ["203.0.113.9", "192.0.2.50"]
