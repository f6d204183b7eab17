"""The /app/registries console page (admins): add, list, edit, delete registry credentials.

The password is write-only: every response of every test here (redirects, flash cookies and
refused forms included) is searched for the passwords typed, and none may hold one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from deploymate.registries.models import Registry
from tests.conftest import ADMIN_PASSWORD
from tests.support.api import create_user, login, run_in_app, second_client

PAGE = "/app/registries"
PASSWORD = "Reg1stry-Pa55-QUOKKA-7781"
NEW_PASSWORD = "R0tated-Secret-WOMBAT-4412"
SECRETS = (PASSWORD, NEW_PASSWORD)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


class Seen:
    """Every response the watched clients received, as text: body and headers."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        headers = "\n".join(f"{k}: {unquote(v)}" for k, v in response.headers.multi_items())
        self.texts.append(f"{response.request.url}\n{headers}\n\n{response.text}")

    def watch(self, client: TestClient) -> TestClient:
        client.event_hooks = {**client.event_hooks, "response": [self]}
        return client


@pytest.fixture
def seen(client: TestClient) -> Iterator[Seen]:
    watcher = Seen()
    yield watcher
    client.event_hooks = {**client.event_hooks, "response": []}
    assert watcher.texts, "no response was watched"
    leaked = [t.partition("\n")[0] for t in watcher.texts if any(s in t for s in SECRETS)]
    assert leaked == [], f"a password was sent back by {leaked}"


@pytest.fixture
def admin(client: TestClient, seen: Seen) -> TestClient:
    seen.watch(client)
    login(client, "admin", ADMIN_PASSWORD)
    return client


def _rows(client: TestClient) -> list[dict[str, Any]]:
    async def fetch(db: Any) -> list[dict[str, Any]]:
        rows = (await db.execute(select(Registry).order_by(Registry.id))).scalars()
        return [{"id": r.id, "name": r.name, "sealed": r.password} for r in rows]

    rows: list[dict[str, Any]] = run_in_app(client, fetch)
    return rows


def _unseal(client: TestClient, sealed: str) -> str:
    plain: str = client.app.state.context.cipher.decrypt(sealed)  # type: ignore[attr-defined]
    return plain


def _add(client: TestClient, **fields: str) -> httpx.Response:
    csrf = _csrf(client.get(PAGE).text)
    form = {
        "csrf_token": csrf,
        "name": "github",
        "url": "https://GHCR.io/",
        "username": "octo",
        "password": PASSWORD,
        "shared": "true",
        **fields,
    }
    return client.post(PAGE, data=form)


def test_add_lists_the_registry_and_the_api_agrees(admin: TestClient) -> None:
    empty = admin.get(PAGE)
    assert empty.status_code == 200 and "No registries yet" in empty.text
    assert 'href="/app/registries" aria-current="page">Registries</a>' in empty.text
    assert 'type="password"' in empty.text and 'autocomplete="new-password"' in empty.text
    assert "sealed at rest" in empty.text and "ghcr.io/org/app:1" in empty.text

    res = _add(admin)
    assert res.status_code == 200 and res.history and res.history[0].status_code == 303
    assert "Registry github (ghcr.io) added." in res.text
    row = re.search(
        r'<tr data-testid="registry-row" data-registry="github">(.*?)</tr>', res.text, re.S
    )
    assert row, res.text
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert "ghcr.io" in cells[1] and cells[2] == "octo" and ">yes<" in cells[3]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", cells[4])
    assert "Edit" in cells[5] and 'data-confirm="Delete the credentials of github' in cells[5]
    assert "added." not in admin.get(PAGE).text  # said once

    listed = admin.get("/api/registries").json()
    assert [(r["name"], r["host"], r["username"], r["shared"]) for r in listed] == [
        ("github", "ghcr.io", "octo", True)
    ]
    (stored,) = _rows(admin)
    assert PASSWORD not in stored["sealed"] and _unseal(admin, stored["sealed"]) == PASSWORD

    _add(admin, name="lab", url="registry.example.com:5000", shared="")
    page = admin.get(PAGE).text
    assert re.search(r'data-registry="lab">.*?registry\.example\.com:5000.*?>no<', page, re.S)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://ghcr.io/org", "no path in the registry URL"),
        (f"https://octo:{PASSWORD}@ghcr.io", "no credentials in the URL"),
        ("ftp://ghcr.io", "give the registry as host[:port]"),
    ],
)
def test_a_refused_registry_says_why_next_to_the_field(
    admin: TestClient, url: str, reason: str
) -> None:
    res = _add(admin, url=url)
    assert res.status_code == 422 and not res.history
    assert re.search(r'<p class="error" role="alert">url: [^<]*' + re.escape(reason), res.text)
    field = re.search(r'<p class="field-error"[^>]*data-field="url">([^<]*)</p>', res.text)
    assert field and reason in field.group(1)
    assert 'value="github"' in res.text and 'value="octo"' in res.text  # the rest is kept
    assert _rows(admin) == [] and admin.get("/api/registries").json() == []


def test_other_refusals_name_their_field(admin: TestClient) -> None:
    res = _add(admin, name="has space")
    field = re.search(r'data-field="name">([^<]*)</p>', res.text)
    assert res.status_code == 422 and field
    assert "letters, digits" in unescape(field.group(1)) and "pattern" not in res.text
    res = _add(admin, username="octo:cat")
    assert res.status_code == 422 and 'data-field="username">no spaces and no' in res.text
    res = _add(admin, password="")
    assert res.status_code == 422 and 'data-field="password"' in res.text
    assert _rows(admin) == []

    assert _add(admin).history
    res = _add(admin, name="github-2")  # the same host
    assert res.status_code == 409 and "ghcr.io has credentials already" in res.text
    assert 'data-field="url"' in res.text
    res = _add(admin, url="quay.io")  # the same name
    assert res.status_code == 409 and 'data-field="name"' in res.text
    assert "a registry named github exists" in res.text
    assert [r["name"] for r in _rows(admin)] == ["github"]


def test_edit_keeps_the_password_unless_a_new_one_is_typed(admin: TestClient) -> None:
    _add(admin)
    (before,) = _rows(admin)
    reg_id = before["id"]
    page = admin.get(f"{PAGE}?edit={reg_id}")
    assert 'data-testid="registry-edit-form"' in page.text
    form = re.search(r'data-testid="registry-edit-form">(.*?)</form>', page.text, re.S)
    assert form and 'name="url"' not in form.group(1)  # the host is not editable
    assert 'id="re-password" name="password" type="password"' in form.group(1)
    csrf = _csrf(page.text)

    res = admin.post(
        f"{PAGE}/{reg_id}",
        data={"csrf_token": csrf, "name": "gh", "username": "octo-2", "password": ""},
    )
    assert res.status_code == 200 and "Registry gh saved." in res.text
    (after,) = _rows(admin)
    assert after["sealed"] == before["sealed"]  # untouched, not even sealed again
    assert admin.get("/api/registries").json()[0] | {"created_at": None, "id": None} == {
        "id": None,
        "name": "gh",
        "host": "ghcr.io",
        "username": "octo-2",
        "shared": False,
        "created_at": None,
    }

    # Refused: nothing changes, the new password is neither stored nor typed back.
    res = admin.post(
        f"{PAGE}/{reg_id}",
        data={"csrf_token": csrf, "name": "bad name", "username": "x", "password": NEW_PASSWORD},
    )
    assert res.status_code == 422 and 'data-testid="registry-edit-form"' in res.text
    assert 'data-field="name">use letters, digits' in res.text
    assert _rows(admin) == [after]

    res = admin.post(
        f"{PAGE}/{reg_id}",
        data={
            "csrf_token": csrf,
            "name": "gh",
            "username": "octo-2",
            "password": NEW_PASSWORD,
            "shared": "true",
        },
    )
    assert res.status_code == 200 and "Registry gh saved with a new password." in res.text
    (rotated,) = _rows(admin)
    assert rotated["sealed"] != before["sealed"]
    assert _unseal(admin, rotated["sealed"]) == NEW_PASSWORD
    assert admin.get("/api/registries").json()[0]["shared"] is True

    res = admin.post(f"{PAGE}/9999", data={"csrf_token": csrf, "name": "gh", "username": "x"})
    assert res.status_code == 404 and "no such registry" in res.text


def test_delete_asks_for_confirmation(admin: TestClient) -> None:
    _add(admin)
    (row,) = _rows(admin)
    csrf = _csrf(admin.get(PAGE).text)
    res = admin.post(f"{PAGE}/{row['id']}/delete", data={"csrf_token": csrf})
    assert res.status_code == 422 and "Tick the confirmation box" in res.text
    assert len(_rows(admin)) == 1
    res = admin.post(f"{PAGE}/{row['id']}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert res.status_code == 200 and res.history and "Registry github deleted." in res.text
    assert _rows(admin) == [] and admin.get("/api/registries").json() == []
    assert "No registries yet" in res.text


def test_members_get_403_and_no_link(admin: TestClient, seen: Seen) -> None:
    _add(admin)
    (row,) = _rows(admin)
    create_user(admin, _csrf(admin.get(PAGE).text), "dora", password="dora-first-pass-123")
    member = seen.watch(second_client(admin))
    csrf = login(member, "dora", "dora-first-pass-123")
    res = member.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": "dora-first-pass-123", "new_password": "dora-second-pass-456"},
    )
    csrf = res.json()["csrf_token"]
    assert 'href="/app/registries"' not in member.get("/app").text
    assert member.get(PAGE).status_code == 403
    attempts = {
        PAGE: {"name": "mine", "url": "quay.io", "username": "u", "password": NEW_PASSWORD},
        f"{PAGE}/{row['id']}": {"name": "mine", "username": "u", "password": NEW_PASSWORD},
        f"{PAGE}/{row['id']}/delete": {"confirm": "yes"},
    }
    for path, form in attempts.items():
        res = member.post(path, data={"csrf_token": csrf, **form}, follow_redirects=False)
        assert res.status_code == 403, (path, res.status_code)
    assert _rows(admin) == [row]
    assert [r["name"] for r in member.get("/api/registries").json()] == ["github"]  # shared
