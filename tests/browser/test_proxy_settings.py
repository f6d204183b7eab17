"""Domains, TLS, volumes, required env, smoke checks and drain from the console, on a phone."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_console_shell import sign_in
from tests.support.server import RunningServer

# A registry that does not resolve: the deployment is recorded and its job fails fast.
IMAGE = "registry.invalid/team/shop:1"


def test_proxy_settings_are_entered_shown_and_refused_by_line(
    page: Page, running_server: RunningServer
) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    sign_in(page, running_server, "admin", running_server.admin_password)
    page.goto(f"{running_server.url}/app/deployment-workflow")
    form = page.get_by_test_id("create-form")
    form.get_by_label("Target").select_option("local")
    form.get_by_label("Name").fill("shop")
    form.get_by_label("Image").fill(IMAGE)
    form.get_by_label("Internal port").fill("8080")
    form.get_by_label("Domains").fill("shop.example.com, www.shop.example.com")
    form.get_by_label("TLS").select_option("internal")
    form.get_by_label("Environment (KEY=VALUE, one per line)", exact=True).fill("MODE=blue")
    form.get_by_test_id("release-checks").locator("summary").click()
    form.get_by_label("Volumes").fill("data:/var/lib/shop\n/srv/shop:/srv:ro")
    form.get_by_label("Required environment").fill("MODE")
    form.get_by_label("Smoke checks").fill("GET /health 200 ok\ncmd: sh -c 'test -f /ready'")
    form.get_by_label("Drain period (s)").fill("5")
    form.get_by_role("button", name="Create and deploy").click()

    # An admin may mount a host directory only under the allowed roots: said next to the field.
    expect(page.get_by_test_id("form-error")).to_contain_text("bind mounts")
    form = page.get_by_test_id("create-form")
    expect(form.locator('[data-field="volumes"]')).to_contain_text("outside the directories")
    expect(form.get_by_label("Domains")).to_have_value("shop.example.com, www.shop.example.com")
    form.get_by_label("Volumes").fill("data:/var/lib/shop")
    form.get_by_role("button", name="Create and deploy").click()

    expect(page).to_have_url(re.compile(r"/deployments/\d+\?job=\d+$"))
    expect(page.get_by_test_id("status")).to_have_text("failed", timeout=60_000)
    summary = page.get_by_test_id("summary")
    link = summary.get_by_role("link", name="shop.example.com", exact=True)
    expect(link).to_have_attribute("href", "https://shop.example.com/")
    expect(summary.get_by_test_id("tls")).to_contain_text("internal")
    expect(summary.get_by_test_id("ports")).to_contain_text("through the proxy")
    expect(summary.get_by_test_id("volumes")).to_contain_text("data → /var/lib/shop")
    expect(summary.get_by_test_id("required-env")).to_have_text("MODE")
    expect(summary.get_by_test_id("smoke")).to_contain_text("cmd: sh -c 'test -f /ready'")
    expect(summary.get_by_test_id("drain")).to_contain_text("5s")

    # The settings form shows the same text back; a line it cannot read is named.
    page.get_by_test_id("settings").locator("summary").first.click()
    settings = page.get_by_test_id("settings-form")
    expect(settings.get_by_label("Smoke checks")).to_have_value(
        "GET /health 200 ok\ncmd: sh -c 'test -f /ready'"
    )
    width = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert width <= 0, f"{width}px wider than a phone"
    page.screenshot(path=str(ARTIFACTS / "proxy_settings_detail.png"), full_page=True)
    settings.get_by_label("Smoke checks").fill("FETCH /x")
    settings.get_by_role("button", name="Save and deploy").click()
    error = page.get_by_test_id("settings-form").locator('[data-field="smoke"]')
    expect(error).to_contain_text("line 1 (FETCH /x)")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_test_id("summary").screenshot(path=str(ARTIFACTS / "proxy_settings_summary.png"))
