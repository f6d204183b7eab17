"""The server-rendered console without JavaScript: forms, CSRF, redirects and escaping."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.support.api import create_user, login, second_client


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


def test_list_pages_show_state_target_and_release_with_links(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/app/deployments")
    assert page.status_code == 200 and "No deployments yet" in page.text
    servers = client.get("/app/servers")
    assert servers.status_code == 200 and "No server yet" in servers.text
    nav = client.get("/app").text
    assert 'href="/app/deployments"' in nav and 'href="/app/servers"' in nav
    # the old paths keep working
    assert client.get("/app/server-review").status_code == 200
    assert client.get("/app/deployment-workflow").status_code == 200


def test_unknown_console_paths_get_a_page_and_the_api_gets_json(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/app/no-such-thing")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Not found" in page.text and 'href="/app"' in page.text
    api = client.get("/api/no-such-thing")
    assert api.status_code == 404 and api.json()["code"] == "not_found"
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert 'rel="icon"' in client.get("/app").text


def test_the_getting_started_steps_link_and_can_be_dismissed(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    home = client.get("/app").text
    assert 'href="/app/server-review#add-server"' in home
    assert 'href="/app/deployment-workflow"' in home
    res = client.post(
        "/app/steps/dismiss", data={"csrf_token": _form_csrf(home)}, follow_redirects=False
    )
    assert res.status_code == 303 and res.headers["location"] == "/app"
    assert 'data-testid="step"' not in client.get("/app").text


def test_the_tokens_page_creates_shows_once_and_revokes(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/app/tokens")
    assert page.status_code == 200 and "No token yet" in page.text
    made = client.post("/app/tokens", data={"csrf_token": _form_csrf(page.text), "name": "laptop"})
    token = re.search(r"<code>(dmt_[^<]+)</code>", made.text)
    assert made.status_code == 200 and token, made.text
    listed = client.get("/app/tokens").text
    assert "laptop" in listed and token.group(1) not in listed  # shown once
    bearer = {"Authorization": f"Bearer {token.group(1)}"}
    assert client.get("/api/auth/me", headers=bearer).status_code == 200
    bad = client.post("/app/tokens", data={"csrf_token": _form_csrf(listed), "name": "x\x07"})
    assert bad.status_code == 422 and 'data-field="name"' in bad.text
    token_id = re.search(r"/app/tokens/(\d+)/revoke", listed)
    assert token_id
    res = client.post(
        f"/app/tokens/{token_id.group(1)}/revoke",
        data={"csrf_token": _form_csrf(listed)},
        follow_redirects=False,
    )
    assert res.status_code == 303
    assert "revoked" in client.get("/app/tokens").text
    assert second_client(client).get("/api/auth/me", headers=bearer).status_code == 401
