"""Every main console page at a phone's width (390 px) and a laptop's (1280 px): nothing wider
than the screen, the navigation folded behind a Menu button on the phone. Screenshots of each
go to test-artifacts/ to be looked at."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_console_shell import sign_in
from tests.support.server import RunningServer

WIDTHS = (390, 1280)
PAGES = (
    "/app",
    "/app/deployments",
    "/app/servers",
    "/app/server-review",
    "/app/deployment-workflow",
    "/deployments/1",
    "/app/users",
    "/app/upgrade-requests",
    "/app/audit",
    "/app/backup",
    "/app/webhooks",
    "/app/registries",
    "/app/notifications",
    "/app/tokens",
    "/app/templates",
    "/app/apps",
    "/app/apps/a-shop-with-a-rather-long-name",
    "/app/approvals",
    "/app/change-password",
    "/app/no-such-page",
)

APP_SPEC = """app: a-shop-with-a-rather-long-name
services:
  web:
    image: registry.a-long-host-name.example.com:5000/team/a-shop-with-a-long-name:2026.12.01-b42
    port: 8000
    health: {path: /up, expect: 200, interval: 2, retries: 30}
    domains: [shop.a-rather-long-domain-name-for-a-shop.example.com]
    volumes: [{name: uploads, path: /srv/a-shop-with-a-rather-long-name/uploads}]
    smoke: [{http: /api/health/with/a/rather/long/path, expect: 200, contains: ok}]
  worker:
    image: registry.a-long-host-name.example.com:5000/team/a-shop-with-a-long-name:2026.12.01-b42
    command: [python, -m, shop.worker, --queue, a-rather-long-queue-name-for-the-worker]
secrets: [DATABASE_URL_FOR_THE_PRIMARY_DATABASE, SECRET_KEY]
environments:
  staging-eu:
    servers: [a-server-with-a-rather-long-name-01]
    domains: {web: [staging.shop.a-rather-long-domain-name-for-a-shop.example.com]}
  production:
    servers: [a-server-with-a-rather-long-name-01]
    rollout: canary
"""


@pytest.fixture(scope="module")
def world(running_server: RunningServer) -> RunningServer:
    """A server, a deployment (whose image exists nowhere: it fails fast), a webhook and a
    registry."""
    with httpx.Client(base_url=running_server.url, timeout=30) as http:
        res = http.post(
            "/api/auth/login",
            json={"username": "admin", "password": running_server.admin_password},
        )
        headers = {"X-CSRF-Token": res.json()["csrf_token"]}
        server = {
            "name": "a-server-with-a-rather-long-name-01",
            "host": "203.0.113.10",
            "username": "deploy",
            "auth_type": "password",
            "password": "server-password-1",
            "labels": {"team": "platform"},
        }
        # An unroutable documentation address: tested, it would wait out the connect timeout.
        res = http.post("/api/servers", params={"test": "false"}, json=server, headers=headers)
        assert res.status_code == 201
        body = {
            "name": "web-with-a-long-name",
            "server_id": None,
            "image": "registry.invalid/team/a-long-image-name:2026.12.01-build.42",
            "internal_port": 8080,
            "env": {"LOG_LEVEL": "info"},
        }
        job = http.post("/api/deployments", json=body, headers=headers).json()["job_id"]
        deadline = time.monotonic() + 60
        while http.get(f"/api/jobs/{job}").json()["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        hook = {"name": "ops", "url": "https://hooks.example.com/x", "events": ["deploy.failed"]}
        http.post("/api/admin/webhooks", json=hook, headers=headers)
        registry = {
            "name": "a-private-registry-with-a-long-name",
            "url": "registry.a-rather-long-host-name.example.com:5000",
            "username": "deploy-bot",
            "password": "registry-password-1",
            "shared": True,
        }
        assert http.post("/api/registries", json=registry, headers=headers).status_code == 201
        res = http.post("/api/apps", json={"spec": APP_SPEC}, headers=headers)
        assert res.status_code == 201, res.text
    return running_server


@pytest.fixture
def signed_in(browser: Browser, world: RunningServer) -> Iterator[tuple[Page, Page]]:
    pages = []
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 800})
        page = context.new_page()
        page.set_default_timeout(10_000)
        sign_in(page, world, "admin", world.admin_password)
        expect(page).to_have_url(f"{world.url}/app")
        pages.append(page)
    yield pages[0], pages[1]
    for page in pages:
        page.context.close()


def _overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the window (0: none)."""
    width: int = page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"
    )
    return width


def test_no_main_page_is_wider_than_a_phone_or_a_laptop(
    signed_in: tuple[Page, Page], world: RunningServer
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    too_wide = []
    for page, width in zip(signed_in, WIDTHS, strict=True):
        for path in PAGES:
            page.goto(f"{world.url}{path}")
            name = path.strip("/").replace("/", "-") or "root"
            page.screenshot(path=str(ARTIFACTS / f"layout-{width}-{name}.png"), full_page=True)
            if (extra := _overflow(page)) > 0:
                too_wide.append((width, path, extra))
    assert too_wide == []


def test_the_phone_menu_folds_and_opens(signed_in: tuple[Page, Page], world: RunningServer) -> None:
    phone, laptop = signed_in
    for page in (phone, laptop):
        page.goto(f"{world.url}/app")
    deployments = phone.get_by_role("navigation").get_by_role("link", name="Deployments")
    expect(deployments).to_be_hidden()
    phone.get_by_test_id("menu-button").click()
    expect(deployments).to_be_visible()
    deployments.click()
    expect(phone).to_have_url(f"{world.url}/app/deployments")
    expect(laptop.get_by_test_id("menu-button")).to_be_hidden()
    expect(laptop.get_by_role("navigation").get_by_role("link", name="Deployments")).to_be_visible()
