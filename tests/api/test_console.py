"""The server-rendered console without JavaScript: forms, CSRF, redirects and escaping."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.support.api import create_user, login


def _form_csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "form has no CSRF field"
    return match.group(1)


def _console_login(client: TestClient, username: str, password: str) -> str:
    page = client.get("/login")
    res = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": _form_csrf(page.text)},
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    return str(res.headers["location"])


def test_login_form_signs_in_and_shows_the_first_steps(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert '<label for="username">' in page.text and '<label for="password">' in page.text
    assert _console_login(client, "admin", ADMIN_PASSWORD) == "/app"
    overview = client.get("/app")
    assert overview.status_code == 200
    assert "Add a server" in overview.text and "Create a deployment" in overview.text
    assert overview.text.count('data-testid="step"') == 3


def test_login_form_without_the_csrf_field_is_refused(client: TestClient) -> None:
    client.get("/login")
    res = client.post(
        "/login", data={"username": "admin", "password": ADMIN_PASSWORD}, follow_redirects=False
    )
    assert res.status_code == 403 and "form expired" in res.text
    assert "deploymate_session" not in res.headers.get("set-cookie", "")
    assert client.get("/app", follow_redirects=False).status_code == 303


def test_wrong_password_shows_an_error_and_escapes_the_username(client: TestClient) -> None:
    page = client.get("/login")
    evil = '<script>alert("x")</script>'
    res = client.post(
        "/login",
        data={
            "username": evil,
            "password": "wrong-password-1",
            "csrf_token": _form_csrf(page.text),
        },
    )
    assert res.status_code == 401
    assert "Invalid username or password." in res.text
    assert evil not in res.text and "&lt;script&gt;" in res.text


def test_forced_password_change_flow(client: TestClient) -> None:
    csrf = login(client, "admin", ADMIN_PASSWORD)
    temp = create_user(client, csrf, "newbie")["temporary_password"]
    client.cookies.clear()
    assert _console_login(client, "newbie", temp) == "/app/change-password"
    assert client.get("/app", follow_redirects=False).headers["location"] == "/app/change-password"
    form = client.get("/app/change-password")
    assert "You must choose a new password" in form.text
    fields = {
        "current_password": temp,
        "new_password": "newbie-picked-this-1",
        "confirm_password": "newbie-picked-this-1",
        "csrf_token": _form_csrf(form.text),
    }
    mismatch = client.post("/app/change-password", data={**fields, "confirm_password": "other"})
    assert mismatch.status_code == 422 and "do not match" in mismatch.text
    res = client.post("/app/change-password", data=fields, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("/app")
    assert "Your password was changed" in client.get("/app?notice=password-changed").text


def test_console_forms_need_the_session_csrf_token(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    res = client.post("/logout", data={}, follow_redirects=False)
    assert res.status_code == 403
    assert client.get("/app").status_code == 200  # still signed in
    page = client.get("/app")
    res = client.post("/logout", data={"csrf_token": _form_csrf(page.text)}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/login"
    assert client.get("/app", follow_redirects=False).status_code == 303


def test_navigation_shows_admin_sections_only_to_admins(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    nav = client.get("/app").text
    assert 'href="/app"' in nav and 'aria-current="page"' in nav
