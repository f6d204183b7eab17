"""An admin downloads a backup bundle from /app/backup and checks it with a restore dry-run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import asyncssh
import httpx
from playwright.sync_api import Page, expect

from tests.browser.test_console_shell import sign_in
from tests.support.server import RunningServer

SERVER_PASSWORD = "browser-srv-pass-canary-5"


def _add_server(server: RunningServer, name: str) -> None:
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with httpx.Client(base_url=server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": server.admin_password}
        ).json()["csrf_token"]
        res = http.post(
            "/api/servers",
            json={
                "name": name,
                "host": "127.0.0.1",
                "port": 2202,
                "username": "deploy",
                "auth_type": "password",
                "password": SERVER_PASSWORD,
                "host_key": host_key,
            },
            headers={"X-CSRF-Token": csrf},
        )
        assert res.status_code in (201, 409), res.text


def _download(page: Page, server: RunningServer, folder: Path) -> Path:
    sign_in(page, server, "admin", server.admin_password)
    page.get_by_role("link", name="Backup", exact=True).click()
    expect(page).to_have_url(f"{server.url}/app/backup")
    expect(page.get_by_role("heading", name="Backup", exact=True)).to_be_visible()
    with page.expect_download() as info:
        page.get_by_test_id("download-bundle").click()
    download = info.value
    assert re.fullmatch(r"deploymate-backup-\d{8}T\d{6}Z\.json", download.suggested_filename)
    path = folder / download.suggested_filename
    download.save_as(path)
    return path


def _upload(page: Page, path: Path) -> None:
    page.locator("#bundle").set_input_files(str(path))
    page.get_by_role("button", name="Run dry-run").click()


def test_download_a_bundle_and_dry_run_it(
    page: Page, running_server: RunningServer, tmp_path: Path
) -> None:
    _add_server(running_server, "browser-web")
    path = _download(page, running_server, tmp_path)
    text = path.read_text()
    doc = json.loads(text)
    assert doc["manifest"]["format"] == "deploymate-backup"
    assert SERVER_PASSWORD not in text and running_server.admin_password not in text

    _upload(page, path)
    expect(page).to_have_url(f"{running_server.url}/app/backup/dry-run")
    table = page.get_by_test_id("dry-run-results")
    expect(table).to_be_visible()
    rows = page.get_by_test_id("dry-run-row")
    expect(rows).to_have_count(11)
    for section in (
        "bundle",
        "deployments",
        "templates",
        "releases",
        "apps",
        "webhooks",
        "settings",
    ):
        expect(page.locator(f'[data-section="{section}"]')).to_have_attribute("data-status", "ok")
    # the bundle comes from this very instance: its names exist here already
    users = page.locator('[data-section="users"]')
    expect(users).to_have_attribute("data-status", "warn")
    expect(users).to_contain_text("name_clash")
    expect(page.locator('[data-section="servers"]')).to_contain_text("browser-web")
    expect(page.get_by_test_id("dry-run-summary")).to_contain_text("nothing was changed")
    expect(page.get_by_test_id("dry-run-status")).to_have_text("warn")


def test_a_tampered_bundle_shows_a_checksum_error(
    page: Page, running_server: RunningServer, tmp_path: Path
) -> None:
    path = _download(page, running_server, tmp_path)
    doc = json.loads(path.read_text())
    doc["sections"]["users"][0]["role"] = "member"  # one field changed after the fact
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc, indent=2))
    _upload(page, tampered)
    bundle_row = page.locator('[data-section="bundle"]')
    expect(bundle_row).to_have_attribute("data-status", "error")
    expect(bundle_row).to_contain_text("checksum")
    expect(page.get_by_test_id("dry-run-status")).to_have_text("error")
    expect(page.get_by_test_id("dry-run-summary")).to_contain_text("refused")

    # a file that is not a bundle at all: a clear message, still on the page
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not a bundle")
    _upload(page, garbage)
    expect(page.get_by_role("alert")).to_contain_text("not valid JSON")
    expect(page.locator('[data-section="bundle"]')).to_have_attribute("data-status", "error")
    # leave the tampered result on screen for the screenshot
    _upload(page, tampered)
    expect(page.locator('[data-section="bundle"]')).to_contain_text("checksum")


def test_a_restore_into_this_instance_needs_the_merge_rules(
    page: Page, running_server: RunningServer, tmp_path: Path
) -> None:
    _add_server(running_server, "browser-restore")
    path = _download(page, running_server, tmp_path)
    form = page.get_by_test_id("restore-form")

    def restore(merge: bool) -> None:
        form.locator("#restore-bundle").set_input_files(str(path))
        form.get_by_label("Merge into what is here").set_checked(merge)
        form.get_by_label("Type restore to confirm").fill("restore")
        form.get_by_role("button", name="Restore").click()

    restore(merge=False)
    expect(page.locator(".error")).to_contain_text("not empty")
    expect(page.locator(".error")).to_contain_text("--merge")
    restore(merge=True)
    result = page.get_by_test_id("restore-result")
    expect(result).to_contain_text("restored nothing")
    expect(result).to_contain_text("browser-restore")  # kept as it is here
