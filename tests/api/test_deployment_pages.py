"""Deployment console pages without JavaScript: access, capability flags, escaping, CSRF."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.app import create_app
from deploymate.auth.models import User
from deploymate.core.caller import Caller
from deploymate.deployments import presenters, service
from deploymate.deployments.models import Deployment
from tests.api.test_console import _console_login, _form_csrf
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.support.api import create_user, login, run_in_app
from tests.support.deploy import wait_job

WORKFLOW = "/app/deployment-workflow"
SECRET = "never-show-this-s3cret"
# A registry that does not resolve: the deployment is recorded, its pull and its job fail fast.
MISSING_IMAGE = "registry.invalid/dm-test/not-there:v0"


def _member(client: TestClient, username: str) -> None:
    """A member with no server, signed in to the console with their own password."""
    csrf = login(client, "admin", ADMIN_PASSWORD)
    create_user(client, csrf, username, password=f"{username}-first-pass-1")
    client.cookies.clear()
    assert _console_login(client, username, f"{username}-first-pass-1") == "/app/change-password"
    form = client.get("/app/change-password")
    res = client.post(
        "/app/change-password",
        data={
            "current_password": f"{username}-first-pass-1",
            "new_password": f"{username}-second-pass-2",
            "confirm_password": f"{username}-second-pass-2",
            "csrf_token": _form_csrf(form.text),
        },
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text


def _create_local(client: TestClient, name: str, **fields: str) -> tuple[int, int]:
    page = client.get(WORKFLOW)
    data = {
        "csrf_token": _form_csrf(page.text),
        "server_id": "local",
        "name": name,
        "image": MISSING_IMAGE,
        "internal_port": "80",
        "secret_env": f"API_TOKEN={SECRET}",
        **fields,
    }
    res = client.post(WORKFLOW, data=data, follow_redirects=False)
    assert res.status_code == 303, res.text
    match = re.fullmatch(r"/deployments/(\d+)\?job=(\d+)", res.headers["location"])
    assert match, res.headers["location"]
    # The image exists nowhere, so the job fails fast; wait so no job outlives the test.
    assert wait_job(client, int(match.group(2)), timeout=60)["status"] == "failed"
    return int(match.group(1)), int(match.group(2))


def test_anonymous_visitors_are_sent_to_the_login_page(client: TestClient) -> None:
    for path in (WORKFLOW, f"{WORKFLOW}?server_id=1", "/deployments/1"):
        res = client.get(path, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"] == "/login", path
    for path in (WORKFLOW, "/deployments/1/redeploy", "/deployments/1/stop"):
        res = client.post(path, data={"confirm": "yes"}, follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"] == "/login", path


def test_a_member_without_a_server_is_told_to_add_one(client: TestClient) -> None:
    _member(client, "nina")
    page = client.get(WORKFLOW)
    assert page.status_code == 200
    assert 'data-testid="no-server"' in page.text and 'href="/app/server-review"' in page.text
    assert 'value="local"' not in page.text and "control host" not in page.text
    assert 'data-testid="create-form"' not in page.text
    # asking for the control host anyway is refused, and still shows no local option
    res = client.post(
        WORKFLOW,
        data={
            "csrf_token": _form_csrf(page.text),
            "server_id": "local",
            "name": "web",
            "image": "nginx:1.27",
            "internal_port": "80",
        },
    )
    assert res.status_code == 403 and 'role="alert"' in res.text
    assert "add a server first" in res.text and 'value="local"' not in res.text
    suggest = client.get(f"{WORKFLOW}?server_id=local")
    assert suggest.status_code == 200 and 'value="local"' not in suggest.text
    assert client.get("/api/deployments").json() == []


def test_the_control_host_option_follows_the_capability_flag(
    client: TestClient, tmp_path: Path, database_url: str
) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    page = client.get(WORKFLOW)
    assert '<option value="local"' in page.text
    assert 'data-testid="create-form"' in page.text
    settings = make_settings(tmp_path / "off", database_url, local_docker_enabled=False)
    with TestClient(create_app(settings)) as off:
        _console_login(off, "admin", ADMIN_PASSWORD)
        page = off.get(WORKFLOW)
        assert 'value="local"' not in page.text and 'data-testid="no-server"' in page.text
        res = off.post(
            WORKFLOW,
            data={
                "csrf_token": _form_csrf(page.text),
                "server_id": "local",
                "name": "web",
                "image": "nginx:1.27",
                "internal_port": "80",
            },
        )
        assert res.status_code == 403 and "DEPLOYMATE_LOCAL_DOCKER_ENABLED=false" in res.text


def test_hostile_input_is_escaped_and_secrets_are_not_echoed(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    page = client.get(WORKFLOW)
    evil_name = "<script>alert('name')</script>"
    evil_image = '"><img src=x onerror=alert(1)>'
    evil_env = "<b>BAD</b>"
    res = client.post(
        WORKFLOW,
        data={
            "csrf_token": _form_csrf(page.text),
            "server_id": "local",
            "name": evil_name,
            "image": evil_image,
            "internal_port": "80",
            "env": f"{evil_env}=1",
            "secret_env": f"API_TOKEN={SECRET}",
        },
    )
    assert res.status_code == 422
    alert = re.search(r'<p class="error" role="alert"[^>]*>(.*?)</p>', res.text, re.S)
    assert alert and "name:" in alert.group(1) and "image:" in alert.group(1)
    assert "&lt;b&gt;BAD&lt;/b&gt;" in alert.group(1)  # the env name is quoted, escaped
    for raw in (evil_name, evil_image, evil_env, "<img", "<script>"):
        assert raw not in res.text
    assert "&lt;script&gt;alert(" in res.text and "&#34;&gt;&lt;img src=x" in res.text
    assert SECRET not in res.text and 'data-testid="secret-dropped"' in res.text
    assert client.get("/api/deployments").json() == []
    # a malformed secret line names the line, never its content
    res = client.post(
        WORKFLOW,
        data={
            "csrf_token": _form_csrf(page.text),
            "server_id": "local",
            "name": "web",
            "image": MISSING_IMAGE,
            "internal_port": "80",
            "secret_env": f"OK=1\n{SECRET}",
        },
    )
    assert res.status_code == 422 and "secret environment: line 2 is not KEY=VALUE" in res.text
    assert SECRET not in res.text

    dep_id, job_id = _create_local(client, "escaped")
    detail = client.get(f"/deployments/{dep_id}?job={job_id}")
    assert detail.status_code == 200 and f'data-job-id="{job_id}"' in detail.text
    assert "API_TOKEN" in detail.text and SECRET not in detail.text
    res = client.post(
        f"/deployments/{dep_id}/redeploy",
        data={"csrf_token": _form_csrf(detail.text), "image": evil_image},
    )
    assert res.status_code == 422 and 'role="alert"' in res.text and "image:" in res.text
    assert evil_image not in res.text and "&#34;&gt;&lt;img src=x" in res.text
    assert SECRET not in res.text


def test_forms_need_the_csrf_token(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    body = {"server_id": "local", "name": "nocsrf", "image": MISSING_IMAGE, "internal_port": "80"}
    assert client.post(WORKFLOW, data=body).status_code == 403
    assert client.post(WORKFLOW, data={**body, "csrf_token": "forged"}).status_code == 403
    assert client.get("/api/deployments").json() == []

    dep_id, job_id = _create_local(client, "guarded")
    for action in ("redeploy", "rollback", "stop", "start", "restart", "delete"):
        res = client.post(f"/deployments/{dep_id}/{action}", data={"confirm": "yes"})
        assert res.status_code == 403, action
        assert "CSRF" in res.text, action
    activity = client.get(f"/api/deployments/{dep_id}/activity").json()
    assert {a["job_id"] for a in activity} - {None} == {job_id}  # none of them made a job

    detail = client.get(f"/deployments/{dep_id}")
    csrf = _form_csrf(detail.text)
    # the confirmation box is required server-side too
    res = client.post(f"/deployments/{dep_id}/delete", data={"csrf_token": csrf})
    assert res.status_code == 422 and "Tick the confirmation box to delete" in res.text
    # an operation the service refuses re-renders the page with the reason
    res = client.post(f"/deployments/{dep_id}/stop", data={"csrf_token": csrf, "confirm": "yes"})
    assert res.status_code == 409 and "has no serving release to stop" in res.text
    assert 'role="alert"' in res.text and 'data-testid="releases"' in res.text


def test_deployment_cards_list_what_the_viewer_may_see(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    dep_id, _job = _create_local(client, "carded")
    app: Any = client.app

    async def admin_cards(db: AsyncSession) -> list[dict[str, Any]]:
        admin = (await db.execute(select(User).where(User.username == "admin"))).scalar_one()
        me = Caller.of(admin, via="session", client_address=None)
        return await presenters.cards(db, deps=await service.list_for(db, caller=me))

    cards = run_in_app(client, admin_cards)
    assert [c["name"] for c in cards] == ["carded"]
    assert cards[0]["href"] == f"/deployments/{dep_id}" and cards[0]["target"] == "control host"
    partial = app.state.templates.get_template("_deployment_cards.html")
    html = partial.render(deployment_cards=cards)
    assert 'data-testid="deployment-card"' in html and f'href="/deployments/{dep_id}"' in html
    empty = partial.render(deployment_cards=[])
    assert "No deployments yet" in empty and 'href="/app/deployment-workflow"' in empty


def test_create_from_a_template_leaves_blank_fields_to_it(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    dep_id, _job = _create_local(
        client, "source", env="MODE=blue", health_path="/version", health_retries="3"
    )
    csrf = _form_csrf(client.get(WORKFLOW).text)
    res = client.post(
        f"/api/deployments/{dep_id}/template",
        json={"name": "web-tpl"},
        headers={"X-CSRF-Token": csrf},
    )
    assert res.status_code == 201, res.text
    page = client.get(WORKFLOW)
    option = re.search(r'<option value="(\d+)"[^>]*>web-tpl', page.text)
    assert option, "the template is offered"
    res = client.post(
        WORKFLOW,
        data={
            "csrf_token": _form_csrf(page.text),
            "server_id": "local",
            "name": "from-tpl",
            "template_id": option.group(1),
        },
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    wait_job(client, int(res.headers["location"].rpartition("=")[2]), timeout=60)
    made = next(d for d in client.get("/api/deployments").json() if d["name"] == "from-tpl")
    assert made["image"] == MISSING_IMAGE and made["internal_port"] == 80
    assert made["env"] == {"MODE": "blue"} and made["secret_env_keys"] == []
    assert made["health_check"]["path"] == "/version" and made["health_check"]["retries"] == 3


def test_a_refused_form_shows_each_reason_next_to_its_field(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    page = client.get(WORKFLOW)
    data = {
        "csrf_token": _form_csrf(page.text),
        "server_id": "local",
        "name": "Not A DNS Label",
        "image": "--privileged",
        "internal_port": "80",
        "health_path": "no-slash",
    }
    res = client.post(WORKFLOW, data=data)
    assert res.status_code == 422
    errors = dict(re.findall(r'data-field="([^"]+)">([^<]+)<', res.text))
    assert set(errors) == {"name", "image", "health_check.path"}, errors
    assert "must be an image reference" in errors["image"]
    assert 'data-testid="form-error"' in res.text  # and the summary at the top
    # A use case's refusal names its field the same way.
    data.update(name="web", image=MISSING_IMAGE, health_path="/", external_port="22")
    res = client.post(WORKFLOW, data={**data, "csrf_token": _form_csrf(page.text)})
    assert res.status_code == 422
    assert re.search(r'data-field="external_port">port 22 is already in use', res.text), res.text


def _settings_form(html: str) -> dict[str, str]:
    """The values the settings form of a deployment's page holds, as a browser would send."""
    form = html[html.index('data-testid="settings-form"') :]
    form = form[: form.index("</form>")]
    inputs = re.findall(r'<input(?! type="checkbox")[^>]*name="([a-z_]+)" value="([^"]*)"', form)
    values = dict(inputs)
    values.update(re.findall(r'<textarea[^>]*name="([a-z_]+)"[^>]*>([^<]*)</textarea>', form))
    for name, options in re.findall(
        r'<select[^>]*name="([a-z_]+)"[^>]*>(.*?)</select>', form, re.S
    ):
        chosen = re.search(r'<option(?: value="([^"]*)")? selected>([^<]*)</option>', options)
        values[name] = (chosen.group(1) or chosen.group(2)) if chosen else ""
    values.pop("secret_env", None)
    return values


def test_every_setting_can_be_edited_from_the_deployments_page(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    dep_id, _ = _create_local(client, "edited", env="MODE=blue", health_path="/version")
    page = client.get(f"/deployments/{dep_id}")
    form = _settings_form(page.text)
    assert form["image"] == MISSING_IMAGE and form["health_path"] == "/version"
    assert form["env"] == "MODE=blue" and form["internal_port"] == "80"
    assert SECRET not in page.text and 'value="API_TOKEN"' in page.text  # a key, never a value

    unchanged = client.post(f"/deployments/{dep_id}/settings", data=form)
    assert unchanged.status_code == 200 and "Nothing changed." in unchanged.text

    bad = {**form, "health_path": "no-slash", "memory_limit": "lots"}
    res = client.post(f"/deployments/{dep_id}/settings", data=bad)
    assert res.status_code == 422
    assert 'data-field="health_check.path"' in res.text and 'data-field="memory_limit"' in res.text
    assert len(client.get(f"/api/deployments/{dep_id}/releases").json()) == 1  # nothing saved

    changed = {
        **form,
        "env": "MODE=green\nREGION=eu",
        "health_path": "/up",
        "health_retries": "5",
        "command": "sh\n-c\necho hi",
        "memory_limit": "128m",
        "labels": "team=core",
        "restart_policy": "always",
        "secret_env": "NEW_SECRET=s3cret-value-2",
        "secret_remove": "API_TOKEN",
    }
    res = client.post(f"/deployments/{dep_id}/settings", data=changed, follow_redirects=False)
    assert res.status_code == 303 and "?job=" in res.headers["location"]
    wait_job(client, int(res.headers["location"].split("job=")[1]), timeout=60)
    dep = client.get(f"/api/deployments/{dep_id}").json()
    release = client.get(f"/api/deployments/{dep_id}/releases").json()[0]
    assert release["number"] == 2 and release["config"]["env"] == {"MODE": "green", "REGION": "eu"}
    assert release["config"]["health_check"]["path"] == "/up"
    assert release["config"]["health_check"]["retries"] == 5
    assert release["config"]["command"] == ["sh", "-c", "echo hi"]
    assert release["config"]["memory_limit"] == "128m" and release["config"]["labels"] == {
        "team": "core"
    }
    assert release["config"]["restart_policy"] == "always"
    activity = client.get(f"/api/deployments/{dep_id}/activity").json()
    assert any(
        "settings changed" in a["message"] and "secret environment" in a["message"]
        for a in activity
    )
    # The failed release did not serve, so the desired settings are the release's own.
    assert dep["secret_env_keys"] in (["NEW_SECRET"], ["API_TOKEN"])


def test_templates_are_saved_listed_renamed_edited_and_deleted(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    dep_id, _ = _create_local(client, "origin", env="MODE=blue")
    page = client.get(f"/deployments/{dep_id}")
    res = client.post(
        f"/deployments/{dep_id}/template",
        data={"csrf_token": _form_csrf(page.text), "name": "web-base"},
        follow_redirects=False,
    )
    assert res.status_code == 303 and res.headers["location"].startswith("/app/templates")
    listing = client.get(res.headers["location"])
    assert "web-base" in listing.text and "Template web-base saved." in listing.text
    assert "Template web-base saved." not in client.get("/app/templates").text  # said once
    template_id = client.get("/api/templates").json()[0]["id"]
    edit = client.get(f"/app/templates?edit={template_id}").text
    assert 'data-testid="template-form"' in edit and "API_TOKEN" not in edit
    res = client.post(
        f"/app/templates/{template_id}",
        data={
            "csrf_token": _form_csrf(edit),
            "name": "web-base-2",
            "image": "registry.example.com/team/web:2",
            "internal_port": "8080",
            "env": "MODE=green",
            "health_path": "/up",
        },
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    stored = client.get(f"/api/templates/{template_id}").json()
    assert stored["name"] == "web-base-2" and stored["settings"]["internal_port"] == 8080
    assert (
        stored["settings"]["env"] == {"MODE": "green"} and "external_port" not in stored["settings"]
    )
    bad = client.post(
        f"/app/templates/{template_id}",
        data={"csrf_token": _form_csrf(edit), "name": "x", "image": "--bad", "internal_port": "80"},
    )
    assert bad.status_code == 422 and 'data-field="settings.image"' not in bad.text
    assert client.get(f"/api/templates/{template_id}").json() == stored
    res = client.patch(
        f"/api/templates/{template_id}",
        json={"name": "via-api"},
        headers={"X-CSRF-Token": _form_csrf(edit)},
    )
    assert res.status_code == 200 and res.json()["name"] == "via-api"
    res = client.post(
        f"/app/templates/{template_id}/delete",
        data={"csrf_token": _form_csrf(edit), "confirm": "yes"},
        follow_redirects=False,
    )
    assert res.status_code == 303 and client.get("/api/templates").json() == []


def test_a_failed_first_release_offers_only_delete_and_no_rollback(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    dep_id, _ = _create_local(client, "never-served")
    page = client.get(f"/deployments/{dep_id}").text
    assert 'data-testid="op-delete"' in page
    for op in ("start", "stop", "restart"):
        assert f'data-testid="op-{op}"' not in page, op
    assert 'data-testid="rollback-1"' not in page  # release 1 never served
    assert 'data-confirm-name="never-served"' in page  # delete wants the name typed
    release = client.get(f"/api/deployments/{dep_id}/releases").json()[0]
    csrf = _form_csrf(page)
    res = client.post(
        f"/api/deployments/{dep_id}/rollback",
        json={"release_id": release["id"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert res.status_code == 422 and "never served" in res.json()["detail"], res.text
    # The console asks before a rollback too: without the box ticked nothing is queued.
    res = client.post(
        f"/deployments/{dep_id}/rollback", data={"csrf_token": csrf, "release_id": release["id"]}
    )
    assert res.status_code == 422 and "confirmation box to roll back" in res.text


def test_a_first_deploy_in_progress_shows_starting_not_errors(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    dep_id, _ = _create_local(client, "first-time")

    async def deploying(db: AsyncSession) -> None:
        dep = await db.get(Deployment, dep_id)
        assert dep is not None
        dep.status, dep.status_message, dep.current_release_id = "deploying", None, None
        await db.commit()

    run_in_app(client, deploying)
    page = client.get(f"/deployments/{dep_id}").text
    assert re.search(r'data-testid="status">starting<', page)
    assert 'data-testid="starting"' in page
    for section in ("health-error", "diagnostics-error", "logs-error"):
        assert f'data-testid="{section}"' not in page, section


PROXY_FORM = {
    "env": "MODE=blue",
    "domains": "Shop.example.com, www.example.com",
    "tls": "internal",
    "volumes": "data:/var/lib/app\ncache:/cache:ro",
    "required_env": "MODE, API_TOKEN",
    "smoke": "GET /health 200 all good\ncmd: sh -c 'test -f /tmp/ready'\ntimeout=30 HEAD /",
    "drain_seconds": "2.5",
}


def test_the_forms_take_domains_tls_volumes_required_env_smoke_and_drain(
    client: TestClient,
) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    dep_id, _ = _create_local(client, "proxied", **PROXY_FORM)  # the external port left empty
    dep = client.get(f"/api/deployments/{dep_id}").json()
    assert dep["domains"] == ["shop.example.com", "www.example.com"]
    assert dep["external_port"] is None and dep["tls"] == "internal"
    assert dep["volumes"] == [
        {"name": "data", "path": "/var/lib/app", "read_only": False},
        {"name": "cache", "path": "/cache", "read_only": True},
    ]
    assert dep["required_env"] == ["MODE", "API_TOKEN"] and dep["drain_seconds"] == 2.5
    assert dep["smoke"] == [
        {
            "http": "/health",
            "method": "GET",
            "expect": 200,
            "contains": "all good",
            "timeout": 10.0,
        },
        {
            "command": ["sh", "-c", "test -f /tmp/ready"],
            "method": "GET",
            "expect": 200,
            "timeout": 10.0,
        },
        {"http": "/", "method": "HEAD", "expect": 200, "timeout": 30.0},
    ]

    async def smoked(db: AsyncSession) -> None:
        found = await db.get(Deployment, dep_id)
        assert found is not None
        found.smoke_result = {
            "at": "2025-01-02T03:04:05+00:00",
            "release": 1,
            "checks": [
                {"check": "GET /health", "ok": True, "detail": "200", "seconds": 0.02},
                {"check": "HEAD /", "ok": False, "detail": "expected 200, got 502", "seconds": 1},
            ],
        }
        await db.commit()

    run_in_app(client, smoked)
    page = client.get(f"/deployments/{dep_id}").text
    summary = page[page.index('data-testid="summary"') : page.index('data-testid="settings"')]
    assert 'href="https://shop.example.com/"' in summary
    assert 'href="https://www.example.com/"' in summary
    assert re.search(r'data-testid="tls">internal', summary)
    assert "<code>cache</code> → <code>/cache</code>" in summary and "read-only" in summary
    assert "<code>MODE</code> <code>API_TOKEN</code>" in summary
    assert "timeout=30 HEAD / 200" in summary and "2.5s" in summary
    result = summary[summary.index('data-testid="smoke-result"') :]
    assert result.startswith('data-testid="smoke-result"><span class="pill status-bad">failed<')
    assert "release #1" in result
    assert "expected 200, got 502" in result and result.count('data-testid="smoke-check"') == 2
    listing = client.get("/app/deployments").text
    assert (
        'href="https://shop.example.com/"' in listing and "<code>shop.example.com</code>" in listing
    )

    # The edit form shows the same syntax back: sending it unchanged changes nothing.
    import html

    form = {key: html.unescape(value) for key, value in _settings_form(page).items()}
    assert form["domains"] == "shop.example.com\nwww.example.com" and form["tls"] == "internal"
    assert form["volumes"] == "data:/var/lib/app\ncache:/cache:ro"
    assert form["smoke"] == (
        "GET /health 200 all good\ncmd: sh -c 'test -f /tmp/ready'\ntimeout=30 HEAD / 200"
    )
    unchanged = client.post(f"/deployments/{dep_id}/settings", data=form)
    assert unchanged.status_code == 200 and "Nothing changed." in unchanged.text
    # ... and the same settings written another way are no change either.
    same = {**form, "domains": "shop.example.com,www.example.com", "required_env": "MODE,API_TOKEN"}
    assert "Nothing changed." in client.post(f"/deployments/{dep_id}/settings", data=same).text

    changed = {
        **form,
        "domains": "shop.example.com",
        "tls": "off",
        "volumes": "data:/var/lib/app:ro",
        "required_env": "",
        "smoke": "GET /ready 204",
        "drain_seconds": "0",
    }
    res = client.post(f"/deployments/{dep_id}/settings", data=changed, follow_redirects=False)
    assert res.status_code == 303, res.text
    wait_job(client, int(res.headers["location"].split("job=")[1]), timeout=60)
    dep = client.get(f"/api/deployments/{dep_id}").json()
    assert dep["domains"] == ["shop.example.com"] and dep["tls"] == "off"
    assert dep["volumes"] == [{"name": "data", "path": "/var/lib/app", "read_only": True}]
    assert dep["required_env"] == [] and dep["drain_seconds"] == 0
    assert dep["smoke"] == [{"http": "/ready", "method": "GET", "expect": 204, "timeout": 10.0}]
    assert 'href="http://shop.example.com/"' in client.get(f"/deployments/{dep_id}").text


def test_a_settings_line_that_cannot_be_read_is_refused_with_its_line(client: TestClient) -> None:
    _console_login(client, "admin", ADMIN_PASSWORD)
    page = client.get(WORKFLOW)
    base = {
        "csrf_token": _form_csrf(page.text),
        "server_id": "local",
        "name": "unreadable",
        "image": MISSING_IMAGE,
        "internal_port": "80",
    }

    def refused_fields(res: Any) -> dict[str, str]:
        assert res.status_code == 422, res.text
        assert 'data-testid="form-error"' in res.text
        return dict(re.findall(r'data-field="([^"]+)">([^<]+)<', res.text))

    errors = refused_fields(client.post(WORKFLOW, data={**base, "smoke": "GET /ok\nFETCH /x"}))
    assert errors["smoke"].startswith("line 2 (FETCH /x): write GET /path [status] [text]")
    errors = refused_fields(client.post(WORKFLOW, data={**base, "volumes": "data"}))
    assert errors["volumes"].startswith("line 1 (data): write name:/path for a named volume")
    # What the parser reads but the model refuses is named by its entry, next to the field.
    res = client.post(WORKFLOW, data={**base, "domains": "ok.example.com, not a host"})
    errors = refused_fields(res)
    assert errors["domains.1"].startswith("entry 2: ") and "not a host name" in errors["domains.1"]
    errors = refused_fields(client.post(WORKFLOW, data={**base, "drain_seconds": "soon"}))
    assert "drain_seconds" in errors
    # A bind mount outside the allowed roots is refused by the use case, next to the field.
    errors = refused_fields(client.post(WORKFLOW, data={**base, "volumes": "/etc:/host-etc:ro"}))
    assert "outside the directories allowed for bind mounts" in errors["volumes"]
    res = client.post(
        WORKFLOW, data={**base, "domains": "shop.example.com", "external_port": "8080"}
    )
    assert res.status_code == 422 and "leave the external port empty" in res.text
    assert client.get("/api/deployments").json() == []

    dep_id, _ = _create_local(client, "readable")
    form = _settings_form(client.get(f"/deployments/{dep_id}").text)
    res = client.post(f"/deployments/{dep_id}/settings", data={**form, "smoke": "FETCH /x"})
    assert res.status_code == 422 and "line 1 (FETCH /x)" in res.text
    assert len(client.get(f"/api/deployments/{dep_id}/releases").json()) == 1  # nothing saved
    assert client.get(f"/api/deployments/{dep_id}").json()["smoke"] == []


def test_a_servers_own_view_shows_its_proxy_and_survives_an_unreachable_one(
    client: TestClient, monkeypatch: Any
) -> None:
    """The proxy's state is asked on the server's diagnostics view only, never per row."""
    from deploymate.runtime import proxy
    from deploymate.runtime.errors import RuntimeFailure, Unreachable
    from deploymate.runtime.host_facts import Diagnostics
    from deploymate.servers import pages as server_pages
    from deploymate.servers.models import Server

    _console_login(client, "admin", ADMIN_PASSWORD)

    async def add_server(db: AsyncSession) -> int:
        admin_id = (await db.execute(select(User.id).where(User.username == "admin"))).scalar_one()
        server = Server(
            name="edge-1",
            host="edge1.example.test",
            username="deploy",
            auth_type="password",
            credentials="gAAAAA-not-read-here",
            owner_id=admin_id,
        )
        db.add(server)
        await db.commit()
        return server.id

    server_id = run_in_app(client, add_server)
    facts = Diagnostics(
        "27.0.1", "1.47", 2, 2 << 30, 1 << 30, "/var/lib/docker", 1 << 30, 4 << 30, [0.1, 0.2, 0.3]
    )

    async def diagnostics(*_: Any, **__: Any) -> Diagnostics:
        return facts

    answers: list[Any] = []

    async def status(_executor: Any) -> proxy.Status:
        answer = answers.pop(0)
        if isinstance(answer, RuntimeFailure):
            raise answer
        return answer

    monkeypatch.setattr(server_pages.checks, "diagnostics", diagnostics)
    monkeypatch.setattr(server_pages, "executor_for", lambda _context, _server: object())
    monkeypatch.setattr(proxy, "status", status)

    def proxy_state() -> str:
        page = client.get(f"/app/server-review/{server_id}/diagnostics")
        assert page.status_code == 200 and 'data-testid="diagnostics"' in page.text
        found = re.search(r'data-testid="proxy-state">(.*?)</dd>', page.text, re.S)
        assert found, page.text
        return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split())

    answers.append(proxy.Status(True, True, image="caddy:2", version="v2.8.4", detail="running"))
    assert proxy_state() == "running · version v2.8.4 · image caddy:2"
    answers.append(proxy.Status(False, False, detail="not installed"))
    assert proxy_state() == (
        "not installed (installed by the first deployment with domains, "
        "or deploymate proxy install edge-1)"
    )
    answers.append(proxy.Status(True, False, image="caddy:2", detail="exited (exit 1)"))
    assert proxy_state() == "not running: exited (exit 1) · version unknown · image caddy:2"
    answers.append(Unreachable("no answer within 10s"))
    assert proxy_state() == "unknown: no answer within 10s"
    # the lists never ask the servers
    for path in ("/app/server-review", "/app/servers"):
        assert client.get(path).status_code == 200
    assert answers == []
