"""Users admin with a bulk action, and the upgrade-request inbox, in Chromium."""

from __future__ import annotations

from contextlib import closing

import httpx
from playwright.sync_api import Page, expect

from tests.browser.test_console_shell import sign_in
from tests.support.server import RunningServer


def _api(server: RunningServer) -> httpx.Client:
    http = httpx.Client(base_url=server.url)
    csrf = http.post(
        "/api/auth/login", json={"username": "admin", "password": server.admin_password}
    ).json()
    http.headers["X-CSRF-Token"] = csrf["csrf_token"]
    return http


def test_bulk_disable_from_the_users_page(page: Page, running_server: RunningServer) -> None:
    with closing(_api(running_server)) as http:
        for name in ("bulk.one", "bulk.two", "bulk.keep"):
            http.post("/api/admin/users", json={"username": name})
    sign_in(page, running_server, "admin", running_server.admin_password)
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Search").fill("bulk.")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("user-row")).to_have_count(3)
    page.get_by_label("Select bulk.one").check()
    page.get_by_label("Select bulk.two").check()
    page.get_by_label("With the selected users").select_option("disable")
    page.get_by_role("button", name="Apply").click()
    results = page.get_by_test_id("bulk-results")
    expect(results).to_contain_text("bulk.one")
    expect(results).to_contain_text("changed")
    page.get_by_placeholder("Name this view").fill("bulk users")
    page.get_by_role("button", name="Save view").click()
    page.goto(f"{running_server.url}/app/users?status=disabled")
    expect(page.get_by_test_id("user-row")).to_have_count(2)
    page.goto(f"{running_server.url}/app/users")
    page.get_by_role("link", name="bulk users").click()
    expect(page.get_by_test_id("user-row")).to_have_count(3)


def test_a_member_asks_and_the_admin_approves(page: Page, running_server: RunningServer) -> None:
    with closing(_api(running_server)) as http:
        http.post("/api/admin/users", json={"username": "asker", "password": "asker-first-pass-1"})
    sign_in(page, running_server, "asker", "asker-first-pass-1")
    page.get_by_label("Current password").fill("asker-first-pass-1")
    page.get_by_label("New password", exact=True).fill("asker-second-pass-2")
    page.get_by_label("Repeat the new password").fill("asker-second-pass-2")
    page.get_by_role("button", name="Change password").click()
    page.get_by_role("link", name="Upgrade requests").click()
    page.get_by_label("I need").select_option("local_deployments")
    page.get_by_label("Why").fill("to try builds on the control host")
    page.get_by_role("button", name="Send request").click()
    expect(page.get_by_role("status")).to_contain_text("Request sent")
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, running_server, "admin", running_server.admin_password)
    page.goto(f"{running_server.url}/app/upgrade-requests?status=pending")
    row = page.get_by_test_id("request-row").filter(has_text="asker")
    row.get_by_role("checkbox").check()
    page.get_by_label("Note to the requester").fill("approved for a month")
    page.get_by_role("button", name="Approve selected").click()
    expect(page.get_by_test_id("decision-results")).to_contain_text("approved")
    with closing(_api(running_server)) as http:
        asker = http.get("/api/admin/users?q=asker").json()[0]
    assert asker["can_deploy_local"] is True
