"""The HTTP edge: health, error shapes, bad input, roles and security headers."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from deploymate.core.config import Settings
from deploymate.core.db import make_engine
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import audit_rows, create_user, login
from tests.support.deploy import wait_job


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


HUGE = "99999999999999999999999"  # beyond 64 bits
ARABIC, FULL_WIDTH, SUPERSCRIPT = "\u0661\u0662\u0663", "\uff11\uff12", "\u00b2"
FOREIGN_DIGITS = (ARABIC, FULL_WIDTH, SUPERSCRIPT)  # str.isdigit() says yes to every one


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    found: list[APIRoute] = []
    for route in routes:
        if hasattr(route, "original_router"):
            found += _api_routes(route.original_router.routes)
        elif isinstance(route, APIRoute):
            found.append(route)
    return found


def _routes(app: Any) -> list[tuple[str, str]]:
    return [
        (method, route.path)
        for route in _api_routes(app.routes)
        if "{" in route.path
        for method in sorted(route.methods or ())
    ]


def test_ids_out_of_range_or_in_other_scripts_are_never_a_500(client: TestClient) -> None:
    """Every route with an id in its path, every method, as an admin (finding 18)."""
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    routes = _routes(client.app)
    assert len(routes) > 40
    for method, path in routes:
        for bad in (HUGE, "2147483648", "-1", *FOREIGN_DIGITS):
            url = re.sub(r"\{[^}]+\}", bad, path)
            res = client.request(method, url, json={} if method in ("POST", "PATCH") else None)
            assert res.status_code in (404, 405, 422), (method, url, res.status_code, res.text)
            assert "Traceback" not in res.text


def test_ids_in_queries_bodies_and_headers_are_checked(client: TestClient) -> None:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    checks = [
        ("GET", f"/api/deployments?offset={HUGE}", None),
        ("GET", f"/api/deployments?limit={ARABIC}", None),
        ("GET", f"/api/admin/audit?page={HUGE}", None),
        ("GET", f"/api/admin/webhook-deliveries?webhook={ARABIC}", None),
        ("POST", "/api/deployments", {"name": "x", "server_id": int(HUGE), "image": "a:1"}),
        ("POST", "/api/deployments", {"name": "x", "template_id": 2**31, "image": "a:1"}),
        ("POST", "/api/admin/users/bulk", {"action": "disable", "ids": [int(HUGE)]}),
        ("POST", "/api/admin/upgrade-requests/bulk", {"decision": "approve", "ids": [2**63]}),
    ]
    for method, url, body in checks:
        res = client.request(method, url, json=body)
        assert res.status_code == 422, (method, url, res.text)
    for page in (f"/deployments/{HUGE}", f"/deployments/{FULL_WIDTH}", f"/app/audit?page={HUGE}"):
        res = client.get(page)
        assert res.status_code in (200, 404, 422) and "Traceback" not in res.text, page


def test_a_last_event_id_that_is_no_number_replays_from_the_start(client: TestClient) -> None:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    res = client.post(
        "/api/deployments",
        json={
            "name": "sse",
            "server_id": None,
            "image": "registry.invalid/dm-test/not-there:v0",
            "internal_port": 80,
        },
    )
    job_id = res.json()["job_id"]
    wait_job(client, job_id, timeout=60)
    for header in (HUGE, SUPERSCRIPT, "-3", "x" * 20):  # a header is Latin-1
        raw = header.encode("latin-1")
        stream = client.get(f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": raw})
        assert stream.status_code == 200, (header, stream.text)
        assert "event: log" in stream.text and "event: end" in stream.text
    too_long = client.get(f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": "1" * 40})
    assert too_long.status_code == 422


def test_head_answers_wherever_get_does(client: TestClient) -> None:
    for path, status in (("/api/health", 200), ("/login", 200), ("/app", 303), ("/", 303)):
        res = client.head(path, follow_redirects=False)
        assert res.status_code == status and res.content == b"", path
    get = client.get("/api/health")
    head = client.head("/api/health")
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-security-policy"] == get.headers["content-security-policy"]
    assert client.head("/static/app.css").status_code == 200


def test_api_docs_page_is_gone_and_the_openapi_document_stays(client: TestClient) -> None:
    """The interactive docs loaded scripts from a CDN that our CSP refuses (finding 20)."""
    assert client.get("/api/docs").status_code == 404
    spec = client.get("/api/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "DeployMate"


def test_control_characters_are_refused_in_names(client: TestClient) -> None:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    for name in ("c\ni", "bell\x07", "nul\x00x", "esc\x1b[31m", "del\x7f"):
        res = client.post("/api/auth/tokens", json={"name": name})
        assert res.status_code == 422, (name, res.text)
        res = client.post("/api/admin/users", json={"username": name})
        assert res.status_code == 422, (name, res.text)
        hook = {"name": name, "url": "https://hooks.example.com/x", "events": ["deploy.failed"]}
        res = client.post("/api/admin/webhooks", json=hook)
        assert res.status_code == 422 and res.json()["field"] == "name", (name, res.text)
    body = {
        "name": "tpl",
        "server_id": None,
        "image": "registry.invalid/dm-test/not-there:v0",
        "internal_port": 80,
    }
    dep = client.post("/api/deployments", json=body).json()
    wait_job(client, dep["job_id"], timeout=60)
    for name in ("web\ttemplate", "web\x00", "\x1b[2J"):
        res = client.post(f"/api/deployments/{dep['id']}/template", json={"name": name})
        assert res.status_code == 422, (name, res.text)
    assert client.get("/api/auth/tokens").json() == []
    assert client.get("/api/templates").json() == []


def test_the_database_and_data_dir_are_readable_by_the_owner_only(
    client: TestClient, settings: Settings
) -> None:
    data = settings.data_dir
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    private = [data / "server-credentials.key"]
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        db_file = Path(url.split(":///", 1)[1])
        private += [p for p in db_file.parent.iterdir() if p.name.startswith(db_file.name)]
        assert len(private) >= 3  # the database with its -wal and -shm files
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
