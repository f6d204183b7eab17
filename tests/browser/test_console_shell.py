"""A person signing in, seeing the overview, changing a forced password and signing out."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from tests.support.server import RunningServer


def sign_in(page: Page, server: RunningServer, username: str, password: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_and_see_the_overview(page: Page, running_server: RunningServer) -> None:
    page.goto(f"{running_server.url}/app")
    expect(page).to_have_url(f"{running_server.url}/login")
    sign_in(page, running_server, "admin", running_server.admin_password)
    expect(page).to_have_url(f"{running_server.url}/app")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    steps = page.get_by_test_id("step")
    expect(steps).to_have_count(3)
    expect(steps.nth(1)).to_contain_text("Add a server")
    expect(steps.nth(1)).to_contain_text("To do")
    expect(page.get_by_test_id("current-user")).to_contain_text("admin")


def test_wrong_password_shows_an_error(page: Page, running_server: RunningServer) -> None:
    sign_in(page, running_server, "admin", "not-the-right-password")
    expect(page.get_by_role("alert")).to_have_text("Invalid username or password.")
    expect(page).to_have_url(f"{running_server.url}/login")
    expect(page.get_by_label("Username")).to_have_value("admin")


def _new_member(server: RunningServer, username: str) -> str:
    with httpx.Client(base_url=server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": server.admin_password}
        ).json()["csrf_token"]
        res = http.post(
            "/api/admin/users",
            json={"username": username, "role": "member"},
            headers={"X-CSRF-Token": csrf},
        )
        assert res.status_code == 201, res.text
        return str(res.json()["temporary_password"])


def test_forced_password_change_then_sign_out(page: Page, running_server: RunningServer) -> None:
    temp = _new_member(running_server, "browser.member")
    sign_in(page, running_server, "browser.member", temp)
    expect(page).to_have_url(f"{running_server.url}/app/change-password")
    expect(page.get_by_role("status")).to_contain_text("You must choose a new password")
    page.goto(f"{running_server.url}/app")  # cannot skip the change
    expect(page).to_have_url(f"{running_server.url}/app/change-password")
    page.get_by_label("Current password").fill(temp)
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("Repeat the new password").fill("short")
    page.locator("#new_password").evaluate("el => el.removeAttribute('minlength')")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_contain_text("at least 12 characters")
    page.get_by_label("Current password").fill(temp)
    page.get_by_label("New password", exact=True).fill("member-chose-a-good-one")
    page.get_by_label("Repeat the new password").fill("member-chose-a-good-one")
    page.get_by_role("button", name="Change password").click()
    expect(page).to_have_url(f"{running_server.url}/app?notice=password-changed")
    expect(page.get_by_role("status")).to_contain_text("Your password was changed")
    expect(page.get_by_role("link", name="Users")).to_have_count(0)  # members see no admin pages
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{running_server.url}/login")
    page.goto(f"{running_server.url}/app")
    expect(page).to_have_url(f"{running_server.url}/login")
