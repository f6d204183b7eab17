"""The authorization matrix: docs/authorization.md is what the routes say, and every route
answers each of four callers as it says (anonymous, a member, a member on another member's
objects, an admin), with never a 5xx. A new route without a rule fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.app import create_app
from deploymate.apps.models import App
from deploymate.auth.models import User
from deploymate.deployments.models import Deployment, DeploymentTemplate
from deploymate.servers.models import Server
from deploymate.web.access_matrix import Rule, markdown, rules
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.support.api import login, member_headers, run_in_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "authorization.md"
# Routes that stream until the client leaves: walked on an object that does not exist.
STREAMING = re.compile(r"/(events|watch|run|exec)$|/logs$")
MISSING = 999_999


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    directory = tmp_path_factory.mktemp("matrix")
    settings = make_settings(directory, f"sqlite+aiosqlite:///{directory / 'dm.db'}")
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_document_is_what_the_routes_say(app_client: TestClient) -> None:
    fresh = markdown(rules(app_client.app))  # type: ignore[arg-type]
    assert DOC.read_text() == fresh, (
        "docs/authorization.md is stale: a route was added or changed its rule. Regenerate it "
        "with `python -m deploymate.authorization > docs/authorization.md` and review it."
    )


def _objects(client: TestClient, owner: str) -> dict[str, Any]:
    """One object of each kind owned by `owner`, written directly (no job runs)."""

    async def plant(db: AsyncSession) -> dict[str, Any]:
        owner_id = (await db.execute(select(User.id).where(User.username == owner))).scalar_one()
        cipher = client.app.state.context.cipher  # type: ignore[attr-defined]
        server = Server(
            name="bobs-box",
            host="127.0.0.1",
            port=1,  # refused at once: routes that reach it answer quickly
            username="deploy",
            auth_type="password",
            credentials=cipher.encrypt('{"password": "x"}'),
            owner_id=owner_id,
        )
        db.add(server)
        await db.flush()
        dep = Deployment(
            name="bobs-app",
            server_id=server.id,
            owner_id=owner_id,
            image="dm-test/web:v1",
            internal_port=80,
            external_port=18080,
            status="running",
        )
        template = DeploymentTemplate(name="bobs-template", owner_id=owner_id, settings={})
        spec = {"app": "bobs", "services": {}, "environments": {}}
        app = App(name="bobs", owner_id=owner_id, spec_text="app: bobs\n", spec=spec)
        db.add_all([dep, template, app])
        await db.commit()
        return {
            "server_id": server.id,
            "target": server.id,
            "deployment_id": dep.id,
            "template_id": template.id,
            "name": "bobs",
            "user_id": owner_id,
        }

    result: dict[str, Any] = run_in_app(client, plant)
    return result


def _url(rule: Rule, ids: dict[str, Any], streaming_missing: bool) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if streaming_missing and STREAMING.search(rule.path):
            return str(MISSING) if name not in ("name", "environment", "secret") else "nope"
        if name in ids:
            return str(ids[name])
        return {"environment": "staging", "secret": "TOKEN", "commit": "a" * 40}.get(
            name, str(MISSING)
        )

    return re.sub(r"{(\w+)}", fill, rule.path)


def _call(client: TestClient, rule: Rule, url: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers, "follow_redirects": False}
    if rule.path == "/login" and rule.method == "POST":  # the sign-in form and its own token
        client.cookies.clear()
        page = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page
        kwargs["data"] = {
            "csrf_token": token.group(1),
            "username": "admin",
            "password": ADMIN_PASSWORD,
        }
    elif "/sources/" in rule.path:  # a commit's archive is gzip, not JSON
        kwargs["content"] = b"\x1f\x8b"
        kwargs["headers"] = {**headers, "Content-Type": "application/gzip"}
    elif rule.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    response = client.request(rule.method, url, **kwargs)
    client.cookies.clear()
    if response.status_code == 502 and rule.owned and "server" in rule.owned:
        return 200  # bob's server is not reachable on purpose: the answer says so, not a fault
    return response.status_code


def test_every_route_answers_each_caller_as_the_matrix_says(app_client: TestClient) -> None:
    client = app_client
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    alice = member_headers(client, "alice")
    member_headers(client, "bob")
    ids = _objects(client, "bob")
    admin_token = client.post("/api/auth/tokens", json={"name": "matrix"}).json()["token"]
    admin = {"Authorization": f"Bearer {admin_token}"}
    client.cookies.clear()
    del client.headers["X-CSRF-Token"]
    found = rules(client.app)  # type: ignore[arg-type]
    wrong: list[str] = []
    for rule in found:
        expected = rule.expected()
        plain = _url(rule, {}, streaming_missing=True)
        owned = _url(rule, ids, streaming_missing=True)
        for caller, url, headers in (
            ("anonymous", plain, {}),
            ("member", plain, alice),
            ("other", owned, alice),
        ):
            want = expected[caller]
            if want == "-":
                continue
            got = _call(client, rule, url, headers)
            ok = (
                got not in (401, 403) and got < 500
                if want == "allowed"
                else got == 303
                if want == "303 /login"
                else got == int(want) or (want == "404" and got == 422)
            )
            if not ok:
                wrong.append(f"{rule.method} {url} as {caller}: {got}, expected {want}")
    for rule in found:  # the admin last: some of these change or remove bob's objects
        got = _call(client, rule, _url(rule, ids, streaming_missing=True), admin)
        if got in (401, 403) or got >= 500:
            wrong.append(f"{rule.method} {rule.path} as admin: {got}")
    assert not wrong, "\n".join(wrong)
    assert len(found) >= 150
