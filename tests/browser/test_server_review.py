"""An operator adds a lab host in the console: scan, confirm, add, test, diagnose, delete."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.test_console_shell import sign_in
from tests.support.lab import LabHost
from tests.support.server import RunningServer


def test_add_and_check_a_server_in_the_console(
    page: Page, running_server: RunningServer, lab_host: LabHost
) -> None:
    sign_in(page, running_server, "admin", running_server.admin_password)
    page.get_by_role("link", name="Servers").click()
    expect(page).to_have_url(f"{running_server.url}/app/servers")
    expect(page.get_by_text("No server yet.")).to_be_visible()
    page.get_by_role("link", name="Add a server").first.click()
    expect(page).to_have_url(f"{running_server.url}/app/server-review#add-server")
    page.get_by_label("Host").fill(lab_host.address)
    page.get_by_role("button", name="1. Scan host key").click()
    expect(page.get_by_test_id("scanned-fingerprint").first).to_contain_text(
        lab_host.host_key_fingerprint
    )
    form = page.get_by_test_id("create-form")
    form.get_by_label("Name").fill("lab-web")
    form.get_by_label("Private key (for key authentication)").fill(lab_host.client_key.read_text())
    form.get_by_label("Purpose").select_option("staging")
    form.get_by_role("button", name="3. Add server").click()
    row = page.get_by_test_id("server-row").filter(has_text="lab-web")
    expect(row.get_by_test_id("fingerprint")).to_have_text(lab_host.host_key_fingerprint)
    row.get_by_role("button", name="Test").click()
    expect(page.get_by_test_id("test-result")).to_contain_text("Connection test passed.")
    expect(page.get_by_test_id("server-row").first.get_by_test_id("last-check")).to_have_text("ok")
    page.get_by_test_id("server-row").first.get_by_role("link", name="Diagnostics").click()
    expect(page.get_by_test_id("diagnostics")).to_contain_text("Listening ports")
    # the private key is never shown back, even in the edit form
    page.goto(f"{running_server.url}/app/server-review?edit=1")
    expect(page.get_by_label("New private key (one is stored)")).to_have_value("")
    assert "PRIVATE KEY-----\n" not in page.content()
    # a bad host is refused with the field named, and nothing is added
    page.get_by_label("Host", exact=True).last.fill("1.2.3.4 -oProxyCommand=touch")
    page.get_by_role("button", name="1. Scan host key").click()
    expect(page.get_by_role("alert")).to_contain_text("host")
    expect(page.get_by_test_id("server-row")).to_have_count(1)
    # deleting wants the server's name typed
    row = page.get_by_test_id("server-row").first
    name = row.get_attribute("data-server") or ""
    page.once("dialog", lambda dialog: dialog.accept("not-the-name"))
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_test_id("server-row")).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept(name))
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("Server deleted.")
    expect(page.get_by_test_id("server-row")).to_have_count(0)
