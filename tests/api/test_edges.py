"""The HTTP edge: health, error shapes, bad input, roles and security headers."""

from __future__ import annotations

from fastapi.testclient import TestClient

from deploymate.core.db import make_engine
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import audit_rows, create_user, login


def test_health_reports_the_database(client: TestClient) -> None:
    res = client.get("/api/health")
    assert res.status_code == 200
    assert res.json()["status"] == "ok" and res.json()["database"] == "ok" and res.json()["version"]


def test_health_is_503_naming_the_database_when_it_is_unreachable(client: TestClient) -> None:
    app = client.app
    good = app.state.context.engine  # type: ignore[attr-defined]
    app.state.context.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # type: ignore[attr-defined]
    try:
        res = client.get("/api/health")
    finally:
        app.state.context.engine = good  # type: ignore[attr-defined]
    assert res.status_code == 503
    assert res.json()["database"] == "unreachable" and "Traceback" not in res.text


def test_anonymous_api_gets_401_json_and_console_redirects(client: TestClient) -> None:
    res = client.get("/api/admin/users")
    assert res.status_code == 401 and res.json()["code"] == "not_authenticated"
    page = client.get("/app", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"


def test_member_gets_403_on_admin_routes(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    create_user(client, csrf, "mia", password="mia-has-a-long-secret-1")
    client.cookies.clear()
    csrf = login(client, "mia", "mia-has-a-long-secret-1")
    res = client.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={
            "current_password": "mia-has-a-long-secret-1",
            "new_password": "mia-now-has-another-2",
        },
    )
    csrf = res.json()["csrf_token"]
    assert client.get("/api/admin/users").status_code == 403
    res = client.post(
        "/api/admin/users",
        json={"username": "eve", "role": "admin"},
        headers={"X-CSRF-Token": csrf},
    )
    assert res.status_code == 403 and res.json()["code"] == "admin_required"


def test_admin_creates_users_with_roles_and_duplicates_conflict(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    created = create_user(client, csrf, "ops.lead", role="admin")
    assert created["user"]["role"] == "admin" and len(created["temporary_password"]) >= 12
    res = client.post(
        "/api/admin/users", json={"username": "ops.lead"}, headers={"X-CSRF-Token": csrf}
    )
    assert res.status_code == 409 and res.json()["code"] == "username_taken"
    users = [u["username"] for u in client.get("/api/admin/users").json()]
    assert users == ["admin", "ops.lead"]
    assert created["temporary_password"] not in repr(audit_rows(client))


def test_bad_usernames_are_refused_with_the_field_named(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    for bad in ["", "x" * 65, "<script>alert(1)</script>", "-rf", "a b", "bob;rm"]:
        res = client.post(
            "/api/admin/users", json={"username": bad}, headers={"X-CSRF-Token": csrf}
        )
        assert res.status_code == 422, bad
        assert res.json()["code"] == "validation_error" and "username" in res.json()["detail"]
    assert len(client.get("/api/admin/users").json()) == 1


def test_bad_login_input_gets_clear_errors(client: TestClient) -> None:
    cases = [
        ({"username": "", "password": "x"}, 422, "username"),
        ({"username": "admin", "password": ""}, 422, "password"),
        ({"username": "u" * 65, "password": "x"}, 422, "username"),
        ({"username": "admin", "password": "p" * 300}, 422, "password"),
        ({"username": "admin"}, 422, "password"),
    ]
    for body, status, field in cases:
        res = client.post("/api/auth/login", json=body)
        assert res.status_code == status, body
        assert field in res.json()["detail"]


def test_malformed_bodies_never_produce_a_stack_trace(client: TestClient) -> None:
    url = "/api/auth/login"
    malformed = client.post(
        url, content=b'{"username": "admin", ', headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422 and malformed.json()["code"] == "validation_error"
    non_utf8 = client.post(
        url,
        content=b'{"username": "\xff\xfe", "password": "\xc3"}',
        headers={"content-type": "application/json"},
    )
    assert non_utf8.status_code in (400, 422) and "code" in non_utf8.json()
    wrong_type = client.post(url, content=b"username=admin", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415 and wrong_type.json()["code"] == "unsupported_media_type"
    huge = client.post(
        url, content=b"x" * (10 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413 and huge.json()["code"] == "payload_too_large"
    for res in (malformed, non_utf8, wrong_type, huge):
        assert "Traceback" not in res.text and 'File "' not in res.text


def test_chunked_oversized_body_is_refused(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 100_000

    res = client.post(
        "/api/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert res.status_code == 413


def test_security_headers_on_pages_and_api(client: TestClient) -> None:
    for path in ("/login", "/api/health", "/api/nothing-here"):
        res = client.get(path)
        csp = res.headers["content-security-policy"]
        assert (
            "frame-ancestors 'none'" in csp
            and "script-src 'self'" in csp
            and "unsafe-inline" not in csp
        )
        assert res.headers["x-content-type-options"] == "nosniff"
        assert res.headers["referrer-policy"] == "no-referrer"
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_no_state_changes_through_get(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    assert client.get("/logout").status_code == 405
    assert client.get("/api/auth/logout").status_code == 405
    assert client.get("/api/auth/me").json()["csrf_token"] == csrf  # still signed in
