"""An operator deploys from the console: create, watch the job live, redeploy, roll back, stop."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Dialog, Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_console_shell import sign_in
from tests.e2e.conftest import key_server
from tests.support.deploy import fetch
from tests.support.lab import LabHost
from tests.support.server import RunningServer

SECRET = "s3cret-value-never-shown"
JOB_TIMEOUT = 120_000  # ms: an image transfer to a fresh lab host takes a few seconds


def _register(server: RunningServer, host: LabHost, name: str) -> int:
    with httpx.Client(base_url=server.url) as http:
        csrf = http.post(
            "/api/auth/login", json={"username": "admin", "password": server.admin_password}
        ).json()["csrf_token"]
        res = http.post("/api/servers", json=key_server(host, name), headers={"X-CSRF-Token": csrf})
        assert res.status_code == 201, res.text
        return int(res.json()["id"])


def _wait_for_job(page: Page, sse_paths: list[str]) -> None:
    """The page streams the job's log, then swaps in the sections the job changed."""
    expect(page.get_by_test_id("job-log")).to_contain_text("job succeeded", timeout=JOB_TIMEOUT)
    expect(page.locator('[data-testid="job"][data-job-live="false"]')).to_be_attached(
        timeout=JOB_TIMEOUT
    )
    page.wait_for_load_state()
    job_id = page.get_by_test_id("job").get_attribute("data-job-id")
    assert f"/api/jobs/{job_id}/events" in sse_paths, sse_paths  # it was followed live
    expect(page.get_by_test_id("job").locator("[data-job-state]")).to_have_text("succeeded")


def test_deploy_redeploy_roll_back_and_stop_in_the_console(
    page: Page, running_server: RunningServer, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    server_id = _register(running_server, lab_host, "lab-deploy")
    sse_paths: list[str] = []
    page.on(
        "request",
        lambda req: sse_paths.append(httpx.URL(req.url).path) if "/events" in req.url else None,
    )
    sign_in(page, running_server, "admin", running_server.admin_password)
    page.get_by_role("link", name="Deploy", exact=True).click()
    expect(page).to_have_url(f"{running_server.url}/app/deployment-workflow")
    expect(page.get_by_role("heading", name="Create a deployment")).to_be_visible()

    # 1. a free port of the chosen server is filled in
    suggest = page.get_by_test_id("suggest-form")
    suggest.get_by_label("Target").select_option(str(server_id))
    suggest.get_by_role("button", name="Suggest port").click()
    expect(page).to_have_url(re.compile(rf"server_id={server_id}"))
    expect(page.get_by_test_id("suggested")).to_contain_text("Free on this target")
    form = page.get_by_test_id("create-form")
    port = int(form.get_by_label("External port").input_value())
    assert 8000 <= port <= 8999

    # 2. settings, with a secret that must never come back
    form.get_by_label("Target").select_option(str(server_id))
    form.get_by_label("Name").fill("console-web")
    form.get_by_label("Image").fill("dm-test/web:v1")
    form.get_by_label("Internal port").fill("80")
    env_label = "Environment (KEY=VALUE, one per line)"
    form.get_by_label(env_label, exact=True).fill("GREETING=hello world")
    form.get_by_label("Secret environment").fill(f"API_TOKEN={SECRET}")
    form.get_by_label("Path").fill("/version")
    form.get_by_label("Retries").fill("10")
    form.get_by_label("Interval (s)").fill("0.3")
    page.screenshot(path=str(ARTIFACTS / "deployment_workflow.png"), full_page=True)
    form.get_by_role("button", name="Create and deploy").click()

    # 3. the job's log streams live, then the page shows the running deployment
    expect(page).to_have_url(re.compile(r"/deployments/\d+\?job=\d+$"))
    detail_url = page.url.split("?")[0]
    _wait_for_job(page, sse_paths)
    expect(page.get_by_test_id("status")).to_have_text("running")
    expect(page.get_by_test_id("serving-release")).to_contain_text("#1")
    expect(page.get_by_test_id("ports")).to_contain_text(f"{lab_host.address}:{port}")
    expect(page.get_by_test_id("secret-keys")).to_contain_text("API_TOKEN")
    expect(page.get_by_test_id("health")).to_contain_text("healthy")
    expect(page.get_by_test_id("diagnostics")).to_contain_text("running")
    expect(page.get_by_test_id("diagnostics")).to_contain_text(test_images["dm-test/web:v1"])
    assert fetch(lab_host.address, port) == "v1"
    assert SECRET not in page.content()
    follow = page.get_by_role("button", name="Follow")
    follow.click()
    expect(page.get_by_role("button", name="Stop following")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page.get_by_test_id("container-log")).to_contain_text("starting")  # streamed
    page.get_by_role("button", name="Stop following").click()
    page.screenshot(path=str(ARTIFACTS / "deployment_detail.png"), full_page=True)

    # 4. redeploy a new image from the page
    page.get_by_test_id("redeploy-form").get_by_label("New image").fill("dm-test/web:v2")
    page.get_by_role("button", name="Redeploy").click()
    _wait_for_job(page, sse_paths)
    expect(page.get_by_test_id("serving-release")).to_contain_text("#2")
    expect(page.get_by_test_id("serving-release")).to_contain_text("dm-test/web:v2")
    assert fetch(lab_host.address, port) == "v2"

    # 5. roll back to release 1 with its own button, after saying yes to the question
    release_one = page.locator('[data-testid="release-row"][data-release="1"]')
    questions: list[str] = []

    def answer(dialog: Dialog, accept: bool) -> None:
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    release_one.get_by_role("button", name="Roll back").click()
    assert questions and "release #1" in questions[-1]
    expect(page.get_by_test_id("serving-release")).to_contain_text("#2")  # nothing happened
    page.once("dialog", lambda d: answer(d, True))
    release_one.get_by_role("button", name="Roll back").click()
    _wait_for_job(page, sse_paths)
    expect(page.get_by_test_id("serving-release")).to_contain_text("#3")
    expect(page.get_by_test_id("serving-release")).to_contain_text(test_images["dm-test/web:v1"])
    assert fetch(lab_host.address, port) == "v1"
    expect(page.get_by_test_id("activity")).to_contain_text("rollback to release 1")

    # 6. stop asks first; a running deployment offers no Start
    expect(page.get_by_test_id("op-start")).to_have_count(0)
    stop = page.get_by_test_id("op-stop")
    page.once("dialog", lambda d: answer(d, False))
    stop.get_by_role("button", name="Stop").click()
    assert "Stop console-web?" in questions[-1]
    expect(page.get_by_test_id("status")).to_have_text("running")
    page.once("dialog", lambda d: answer(d, True))
    stop.get_by_role("button", name="Stop").click()
    _wait_for_job(page, sse_paths)
    expect(page.get_by_test_id("status")).to_have_text("stopped")
    assert fetch(lab_host.address, port) is None
    expect(page.get_by_test_id("health")).to_contain_text("not running")
    expect(page.get_by_test_id("op-stop")).to_have_count(0)

    # 7. a job started elsewhere (the API) updates the open page: no reload, no click
    page.evaluate("window.__sameDocument = true")
    with httpx.Client(base_url=running_server.url) as http:
        csrf = http.post(
            "/api/auth/login",
            json={"username": "admin", "password": running_server.admin_password},
        ).json()["csrf_token"]
        dep_id = detail_url.rsplit("/", 1)[1]
        res = http.post(f"/api/deployments/{dep_id}/start", headers={"X-CSRF-Token": csrf})
        assert res.status_code == 202, res.text
    expect(page.get_by_test_id("status")).to_have_text("running", timeout=JOB_TIMEOUT)
    expect(page.get_by_test_id("op-stop")).to_be_visible()
    expect(page.get_by_test_id("op-start")).to_have_count(0)
    expect(page.get_by_test_id("job")).to_contain_text("start")
    assert page.evaluate("window.__sameDocument") is True  # the page was not reloaded
    assert fetch(lab_host.address, port) == "v1"

    # 8. the log has times and downloads as a file
    page.goto(detail_url)
    stamped = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", re.M)
    assert stamped.search(page.get_by_test_id("container-log").inner_text())
    with page.expect_download() as download:
        page.get_by_test_id("logs-download").click()
    saved = Path(download.value.path()).read_text()
    assert download.value.suggested_filename.startswith("console-web-")
    assert stamped.search(saved), saved[:200]

    # the secret value is on no page, and the overview still works
    for url in (detail_url, f"{detail_url}?job=1", f"{running_server.url}/app"):
        page.goto(url)
        assert SECRET not in page.content(), url
    page.goto(detail_url)
