"""A newcomer fixes things from the console alone: a health check that never passes, and API
tokens made and revoked without the API."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Page, expect

from tests.browser.test_console_shell import sign_in
from tests.browser.test_deployment_console import JOB_TIMEOUT, _register
from tests.support.deploy import fetch, wait_job
from tests.support.lab import LabHost
from tests.support.server import RunningServer


def test_editing_the_health_check_in_the_console_fixes_a_failing_deployment(
    page: Page, running_server: RunningServer, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    server_id = _register(running_server, lab_host, "lab-fix")
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login",
            json={"username": "admin", "password": running_server.admin_password},
        ).json()["csrf_token"]
        body = {
            "name": "wrong-path",
            "server_id": server_id,
            "image": "dm-test/web:v1",
            "internal_port": 80,
            "health_check": {"path": "/healthz", "interval": 0.3, "retries": 20},
        }
        res = http.post("/api/deployments", json=body, headers={"X-CSRF-Token": csrf})
        assert res.status_code == 201, res.text
        dep = res.json()
        assert wait_job(http, dep["job_id"])["status"] == "failed"

    sign_in(page, running_server, "admin", running_server.admin_password)
    page.goto(f"{running_server.url}/deployments/{dep['id']}")
    expect(page.get_by_test_id("status")).to_have_text("failed")
    expect(page.get_by_test_id("job-error")).to_contain_text("HTTP 404 on /healthz 3 times")
    settings = page.get_by_test_id("settings-form")
    expect(settings).to_be_hidden()  # folded until asked for
    page.get_by_test_id("fix-settings").click()
    expect(settings).to_be_visible()
    path = settings.get_by_label("Path")
    expect(path).to_have_value("/healthz")
    path.fill("/version")
    settings.get_by_role("button", name="Save and deploy").click()

    expect(page).to_have_url(re.compile(r"/deployments/\d+\?job=\d+$"))
    expect(page.get_by_test_id("status")).to_have_text("running", timeout=JOB_TIMEOUT)
    expect(page.get_by_test_id("serving-release")).to_contain_text("#2")
    expect(page.get_by_test_id("summary")).to_contain_text("/version")
    expect(page.get_by_test_id("activity")).to_contain_text("settings changed (health check)")
    assert fetch(lab_host.address, dep["external_port"]) == "v1"


def test_tokens_are_made_shown_once_and_revoked_in_the_console(
    page: Page, running_server: RunningServer
) -> None:
    sign_in(page, running_server, "admin", running_server.admin_password)
    page.get_by_test_id("current-user").click()  # your account: its API tokens
    expect(page).to_have_url(f"{running_server.url}/app/tokens")
    page.get_by_label("Name").fill("laptop-cli")
    page.get_by_role("button", name="Create token").click()
    shown = page.get_by_test_id("new-token")
    expect(shown).to_contain_text("shown this once")
    token = shown.locator("code").first.inner_text()
    assert token.startswith("dmt_"), token

    def me(value: str) -> int:
        headers = {"Authorization": f"Bearer {value}"}
        return httpx.get(f"{running_server.url}/api/auth/me", headers=headers).status_code

    assert me(token) == 200
    page.goto(f"{running_server.url}/app/tokens")
    assert token not in page.content()  # never shown again
    row = page.locator('[data-testid="token-row"][data-token="laptop-cli"]')
    expect(row).to_contain_text(token[:8])
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.get_by_role("button", name="Revoke").click()
    assert me(token) == 200  # said no: nothing revoked
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_contain_text("revoked")
    assert me(token) == 401
