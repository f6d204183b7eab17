"""Regressions found in review: throttle races, foreign origins, nulls, console validation."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.support.api import login


def test_a_successful_login_resets_the_per_user_count(client: TestClient) -> None:
    for _ in range(4):
        client.post("/api/auth/login", json={"username": "admin", "password": "wrong-password-1"})
    login(client, "admin", ADMIN_PASSWORD)
    for _ in range(4):
        res = client.post(
            "/api/auth/login", json={"username": "admin", "password": "wrong-password-2"}
        )
        assert res.status_code == 401
    login(client, "admin", ADMIN_PASSWORD)


def test_a_foreign_origin_is_refused_even_with_the_token(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    res = client.post(
        "/api/auth/tokens",
        json={"name": "x"},
        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    )
    assert res.status_code == 403 and res.json()["code"] == "csrf_failed"
    same = client.post(
        "/api/auth/tokens",
        json={"name": "x"},
        headers={"X-CSRF-Token": csrf, "Origin": "http://testserver"},
    )
    assert same.status_code == 201


def test_console_form_validation_answers_with_a_page(client: TestClient) -> None:
    page = client.get("/login")
    res = client.post("/login", data={"username": "u" * 300, "password": "x", "csrf_token": "t"})
    assert res.status_code == 422 and res.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in res.text and page.status_code == 200


def test_nul_and_control_characters_in_a_login_name_are_refused(client: TestClient) -> None:
    res = client.post("/api/auth/login", json={"username": "adm\u0000in", "password": "x" * 12})
    assert res.status_code == 422 and "username" in res.json()["detail"]


def test_null_fields_in_a_server_update_are_refused(client: TestClient) -> None:
    login(client, "admin", ADMIN_PASSWORD)
    res = client.patch(
        "/api/servers/1",
        json={"host": None},
        headers={"X-CSRF-Token": client.get("/api/auth/me").json()["csrf_token"]},
    )
    assert res.status_code == 422 and "host" in res.json()["detail"]
