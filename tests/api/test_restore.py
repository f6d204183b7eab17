"""Restore: a bundle made on a SQLite instance applied to a fresh instance of the module's
backend (SQLite, and PostgreSQL for the round trip the issue asks for), compared endpoint by
endpoint; users with and without password hashes; merge rules; and every refusal leaving the
instance exactly as it was."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate.app import create_app
from deploymate.apps.models import App, AppRelease, AppSecret
from deploymate.backup import format as bundle_format
from deploymate.core.config import Settings
from deploymate.core.crypto import KEY_FILE_NAME, Cipher, generate_key
from deploymate.core.db import Base
from deploymate.deployments.models import Deployment, DeploymentTemplate, Release
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.support.api import audit_rows, create_user, login, member_headers, run_in_app

SERVER_PASSWORD = "srv-Password-canary-4410"
SECRET_VALUE = "sk_live_restore_canary_8d21"
APP_SECRET = "postgres://store:restore-canary-7781@db/store"
HOOK_TOKEN = "T000-B000-hooktoken-canary-3319"
STORE = """app: store
services:
  web:
    image: registry.example/shop:2
    port: 8080
    domains: [store.example.test]
secrets: [DATABASE_URL]
environments:
  staging:
    servers: [web-1]
  production:
    servers: [db-1]
"""
ALICE_PASSWORD = "alice-restore-pass-2"
RESTORE = "/api/admin/restore"
BUNDLE = "/api/admin/backup-bundle"
# List and detail endpoints compared between the source and the restored instance.
LISTS = (
    "/api/servers",
    "/api/deployments",
    "/api/templates",
    "/api/apps",
    "/api/admin/webhooks",
)


@dataclass
class Source:
    client: TestClient
    headers: dict[str, str]
    bundle: bytes  # made without password hashes
    sensitive: bytes  # made with --include-password-hashes
    private_key: str


def _admin_headers(client: TestClient) -> dict[str, str]:
    client.cookies.clear()
    csrf = login(client, "admin", ADMIN_PASSWORD)
    res = client.post("/api/auth/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf})
    assert res.status_code == 201, res.text
    client.cookies.clear()
    return {"Authorization": f"Bearer {res.json()['token']}"}


def _populate(client: TestClient, headers: dict[str, str]) -> str:
    """Users, two servers, deployments with releases, a template, an app with a secret and
    releases, and a webhook: everything a bundle holds."""
    csrf = login(client, "admin", ADMIN_PASSWORD)
    alice = create_user(client, csrf, "alice", password="alice-temporary-pass-1")
    member = TestClient(client.app, base_url=str(client.base_url))
    member.portal = client.portal
    csrf_alice = login(member, "alice", "alice-temporary-pass-1")
    changed = member.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf_alice},
        json={"current_password": "alice-temporary-pass-1", "new_password": ALICE_PASSWORD},
    )
    assert changed.status_code == 200, changed.text
    client.cookies.clear()
    private_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    server_ids = {}
    for body in (
        {"name": "web-1", "auth_type": "key", "private_key": private_key, "host_key": host_key},
        {"name": "db-1", "auth_type": "password", "password": SERVER_PASSWORD},
    ):
        res = client.post(
            "/api/servers",
            headers=headers,
            json={"host": "127.0.0.1", "port": 2201, "username": "deploy", **body},
        )
        assert res.status_code == 201, res.text
        server_ids[body["name"]] = int(res.json()["id"])
    client.app.state.context.settings.webhook_allow_private = True  # type: ignore[attr-defined]
    hook = client.post(
        "/api/admin/webhooks",
        headers=headers,
        json={
            "name": "ops",
            "url": f"http://127.0.0.1:9/services/{HOOK_TOKEN}",
            "events": ["deploy.failed"],
        },
    )
    assert hook.status_code == 201, hook.text
    stored = client.post("/api/apps", headers=headers, json={"spec": STORE})
    assert stored.status_code == 201, stored.text
    secret = client.put(
        "/api/apps/store/secrets/production/DATABASE_URL",
        headers=headers,
        json={"value": APP_SECRET},
    )
    assert secret.status_code == 204, secret.text
    cipher: Cipher = client.app.state.context.cipher  # type: ignore[attr-defined]
    sealed = cipher.encrypt(json.dumps({"API_KEY": SECRET_VALUE}))
    owner = int(alice["user"]["id"])

    async def plant(db: AsyncSession) -> None:
        shop = Deployment(
            name="shop",
            server_id=server_ids["web-1"],
            owner_id=owner,
            image="registry.example/shop:2",
            internal_port=8080,
            external_port=18080,
            env={"MODE": "production"},
            secret_env=sealed,
            domains=["shop.example.test"],
            status="running",
        )
        tools = Deployment(
            name="tools", image="busybox:1", internal_port=80, external_port=18081, status="stopped"
        )
        db.add_all([shop, tools])
        await db.flush()
        releases = []
        for number, (reason, image) in enumerate(
            (("create", "registry.example/shop:1"), ("redeploy", "registry.example/shop:2")), 1
        ):
            release = Release(
                deployment_id=shop.id,
                number=number,
                reason=reason,
                image=image,
                image_id=f"sha256:{number:064d}",
                config={"image": image, "internal_port": 8080, "secret_env": sealed},
                status="succeeded",
                created_by="alice",
            )
            db.add(release)
            await db.flush()
            releases.append(release)
        rollback = Release(
            deployment_id=shop.id,
            number=3,
            reason="rollback",
            image="registry.example/shop:1",
            config={"image": "registry.example/shop:1", "internal_port": 8080},
            status="failed",
            rollback_of=releases[0].id,
        )
        db.add(rollback)
        await db.flush()
        shop.current_release_id = releases[1].id
        db.add(
            DeploymentTemplate(
                name="shop-template",
                owner_id=owner,
                settings={"image": "registry.example/shop:1", "internal_port": 8080},
            )
        )
        app = (await db.execute(select(App).where(App.name == "store"))).scalar_one()
        staging = AppRelease(
            app_id=app.id,
            environment="staging",
            number=1,
            commit="a" * 40,
            spec={"app": "store"},
            parts={"web": {"web-1": {"deployment_id": shop.id, "release_id": releases[1].id}}},
            status="succeeded",
        )
        db.add(staging)
        await db.flush()
        db.add(
            AppRelease(
                app_id=app.id,
                environment="production",
                number=1,
                commit="a" * 40,
                spec={"app": "store"},
                parts={"web": {"web-1": {"deployment_id": shop.id, "release_id": releases[1].id}}},
                status="succeeded",
                shipped_from=staging.id,
            )
        )
        await db.commit()

    run_in_app(client, plant)
    return private_key


@pytest.fixture(scope="module")
def source(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A SQLite instance holding one of everything, sealed with the target instance's key."""
    key_file = settings.data_dir / KEY_FILE_NAME
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_text(generate_key() + "\n")
    directory = tmp_path_factory.mktemp("restore-source")
    source_settings = make_settings(
        directory,
        f"sqlite+aiosqlite:///{directory / 'source.db'}",
        server_credentials_key=key_file.read_text().strip(),
    )
    with TestClient(create_app(source_settings), base_url="http://testserver") as client:
        headers = _admin_headers(client)
        private_key = _populate(client, headers)
        plain = client.get(BUNDLE, headers=headers)
        sensitive = client.get(BUNDLE, headers=headers, params={"include_password_hashes": True})
        assert plain.status_code == 200 and sensitive.status_code == 200
        yield Source(client, headers, plain.content, sensitive.content, private_key)


@pytest.fixture
def target(client: TestClient) -> tuple[TestClient, dict[str, str]]:
    return client, _admin_headers(client)


def _restore(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    *,
    confirm: str | None = "restore",
    merge: bool = False,
) -> Any:
    params: dict[str, Any] = {"merge": merge}
    if confirm is not None:
        params["confirm"] = confirm
    return client.post(
        RESTORE,
        headers={**headers, "Content-Type": "application/json"},
        params=params,
        content=data,
    )


def _ids_aside(value: Any) -> Any:
    """The answer with every id left out (keys `id`, `*_id`, `*_ids`; ids inside links)."""
    if isinstance(value, dict):
        return {
            k: _ids_aside(v)
            for k, v in value.items()
            if k != "id" and not k.endswith(("_id", "_ids"))
        }
    if isinstance(value, list):
        return [_ids_aside(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"/\d+(?=/|$|\?)", "/N", value)
    return value


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(i.get("name") or i.get("username")): i for i in items}


def _get(client: TestClient, headers: dict[str, str], path: str) -> Any:
    res = client.get(path, headers=headers)
    assert res.status_code == 200, (path, res.text)
    return res.json()


def _items(answer: Any) -> list[dict[str, Any]]:
    return answer["items"] if isinstance(answer, dict) and "items" in answer else answer


def _snapshot(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    """Every list and detail endpoint of what a bundle holds, by name, ids aside."""
    seen: dict[str, Any] = {}
    for path in LISTS:
        items = _by_name(_items(_get(client, headers, path)))
        seen[path] = _ids_aside(items)
        for name, item in items.items():
            kind = path.rsplit("/", 1)[1]
            if kind == "apps":
                for tail in ("", "/releases", "/secrets"):
                    detail = f"/api/apps/{name}{tail}"
                    seen[f"{path}/{name}{tail}"] = _ids_aside(_get(client, headers, detail))
                continue
            detail = _get(client, headers, f"{path}/{item['id']}")
            seen[f"{path}/{name}"] = _ids_aside(detail)
            if kind == "deployments":
                releases = _get(client, headers, f"{path}/{item['id']}/releases")
                seen[f"{path}/{name}/releases"] = _ids_aside(releases)
    users = _by_name(_items(_get(client, headers, "/api/admin/users")))
    seen["/api/admin/users (alice)"] = _ids_aside(users["alice"])
    return seen


def _differences(left: Any, right: Any, where: str = "") -> list[str]:
    if isinstance(left, dict) and isinstance(right, dict):
        out = []
        for key in sorted(set(left) | set(right)):
            out += _differences(left.get(key), right.get(key), f"{where}.{key}")
        return out
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [
            d
            for i, (a, b) in enumerate(zip(left, right, strict=False))
            for d in _differences(a, b, f"{where}[{i}]")
        ]
    return [] if left == right else [f"{where}: {left!r} != {right!r}"]


def _table_counts(client: TestClient) -> dict[str, int]:
    async def read(db: AsyncSession) -> dict[str, int]:
        return {
            t.name: int((await db.execute(select(func.count()).select_from(t))).scalar_one())
            for t in Base.metadata.sorted_tables
            if t.name != "audit_events"
        }

    result: dict[str, int] = run_in_app(client, read)
    return result


# --- the round trip --------------------------------------------------------------------------


def test_a_restored_instance_answers_like_the_source_ids_aside(
    source: Source, target: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = target
    res = _restore(client, headers, source.sensitive)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["restored"] == {
        "users": 1,  # alice; the admin exists here and is kept as it is
        "servers": 2,
        "deployments": 2,
        "templates": 1,
        "releases": 3,
        "apps": 1,
        "app_secrets": 1,
        "app_releases": 2,
        "webhooks": 1,
    }
    assert body["kept"] == {"users": ["admin"]} and body["temporary_passwords"] == []
    assert res.headers["cache-control"] == "no-store"
    before, after = _snapshot(source.client, source.headers), _snapshot(client, headers)
    assert set(before) == set(after)
    assert _differences(before, after) == []
    # the links between records follow the new ids
    deployments = _by_name(_items(_get(client, headers, "/api/deployments")))
    shop = deployments["shop"]
    releases = _items(_get(client, headers, f"/api/deployments/{shop['id']}/releases"))
    by_number = {r["number"]: r for r in releases}
    assert by_number[3]["rollback_of"] == by_number[1]["id"]
    servers = _by_name(_items(_get(client, headers, "/api/servers")))
    assert shop["server_id"] == servers["web-1"]["id"]
    # alice signs in with her own password (the bundle carried the hashes)
    client.cookies.clear()
    login(client, "alice", ALICE_PASSWORD)
    client.cookies.clear()


def test_the_credentials_and_secrets_open_and_are_resealed_with_this_key(
    source: Source, target: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = target
    assert _restore(client, headers, source.bundle).status_code == 200
    cipher: Cipher = client.app.state.context.cipher  # type: ignore[attr-defined]

    async def read(db: AsyncSession) -> tuple[Any, ...]:
        from deploymate.notifications.models import Webhook
        from deploymate.servers.models import Server

        servers = {s.name: s.credentials for s in (await db.execute(select(Server))).scalars()}
        shop = (await db.execute(select(Deployment).where(Deployment.name == "shop"))).scalar_one()
        secret = (await db.execute(select(AppSecret))).scalar_one()
        hook = (await db.execute(select(Webhook))).scalar_one()
        parts = [r.parts for r in (await db.execute(select(AppRelease))).scalars()]
        return servers, shop, secret.value, hook.url, parts

    servers, shop, secret, hook_url, parts = run_in_app(client, read)
    assert json.loads(cipher.decrypt(servers["web-1"]))["private_key"] == source.private_key
    assert json.loads(cipher.decrypt(servers["db-1"]))["password"] == SERVER_PASSWORD
    assert json.loads(cipher.decrypt(shop.secret_env)) == {"API_KEY": SECRET_VALUE}
    assert cipher.decrypt(secret) == APP_SECRET
    assert hook_url == f"http://127.0.0.1:9/services/{HOOK_TOKEN}"
    assert parts[0]["web"]["web-1"]["deployment_id"] == shop.id
    assert parts[0]["web"]["web-1"]["release_id"] == shop.current_release_id


def test_users_restored_without_hashes_get_a_temporary_password_to_change(
    source: Source, target: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = target
    res = _restore(client, headers, source.bundle)
    assert res.status_code == 200, res.text
    given = res.json()["temporary_passwords"]
    assert [g["username"] for g in given] == ["alice"]
    client.cookies.clear()
    refused = client.post("/api/auth/login", json={"username": "alice", "password": ALICE_PASSWORD})
    assert refused.status_code == 401
    signed_in = client.post(
        "/api/auth/login", json={"username": "alice", "password": given[0]["password"]}
    )
    assert signed_in.status_code == 200 and signed_in.json()["user"]["must_change_password"] is True
    client.cookies.clear()
    # the temporary password is in this answer only: never in the audit trail
    rows = [r for r in audit_rows(client) if r["action"] == "backup.restore"]
    assert rows and rows[-1]["outcome"] == "success"
    assert given[0]["password"] not in json.dumps(rows)
    assert rows[-1]["details"]["temporary_passwords"] == 1


def test_the_sensitive_bundle_says_so_and_the_plain_one_has_no_hash(source: Source) -> None:
    plain, sensitive = json.loads(source.bundle), json.loads(source.sensitive)
    assert plain["manifest"]["sensitive"] is False
    assert all("password_hash" not in u for u in plain["sections"]["users"])
    assert sensitive["manifest"]["sensitive"] is True
    assert all(u["password_hash"].startswith("$argon2") for u in sensitive["sections"]["users"])
    for text in (source.bundle.decode(), source.sensitive.decode()):
        for secret in (SERVER_PASSWORD, SECRET_VALUE, APP_SECRET, HOOK_TOKEN, ALICE_PASSWORD):
            assert secret not in text


# --- merge rules -----------------------------------------------------------------------------


def test_a_non_empty_instance_is_refused_without_merge_and_merge_keeps_what_is_here(
    source: Source, target: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = target
    assert _restore(client, headers, source.bundle).status_code == 200
    counts = _table_counts(client)
    again = _restore(client, headers, source.bundle)
    assert again.status_code == 409 and again.json()["code"] == "instance_not_empty"
    assert "2 servers" in again.json()["detail"] and "--merge" in again.json()["detail"]
    assert _table_counts(client) == counts
    merged = _restore(client, headers, source.bundle, merge=True)
    assert merged.status_code == 200, merged.text
    body = merged.json()
    assert all(n == 0 for n in body["restored"].values()), body["restored"]
    assert sorted(body["kept"]["servers"]) == ["db-1", "web-1"]
    assert body["kept"]["apps"] == ["store"] and body["kept"]["webhooks"] == ["ops"]
    assert _table_counts(client) == counts


def test_merge_adds_what_is_missing_and_hangs_it_on_what_is_here(
    source: Source, target: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = target
    res = client.post(
        "/api/servers",
        headers=headers,
        json={
            "name": "web-1",
            "host": "127.0.0.1",
            "port": 2202,
            "username": "other",
            "auth_type": "password",
            "password": "another-server-pass-1",
        },
    )
    assert res.status_code == 201, res.text
    here = int(res.json()["id"])
    merged = _restore(client, headers, source.bundle, merge=True)
    assert merged.status_code == 200, merged.text
    assert merged.json()["kept"]["servers"] == ["web-1"]
    assert merged.json()["restored"]["servers"] == 1
    servers = _by_name(_items(_get(client, headers, "/api/servers")))
    assert servers["web-1"]["port"] == 2202 and servers["web-1"]["id"] == here
    shop = _by_name(_items(_get(client, headers, "/api/deployments")))["shop"]
    assert shop["server_id"] == here


# --- refusals: a clear error, nothing changed ------------------------------------------------


def _reseal(doc: dict[str, Any]) -> bytes:
    doc["manifest"]["checksum"] = bundle_format.checksum(doc["sections"])
    return json.dumps(doc).encode()


def _newer(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["manifest"]["format_version"] = bundle_format.FORMAT_VERSION + 1
    return json.dumps(doc).encode()


def _damaged(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["sections"]["servers"][0]["host"] = "203.0.113.66"  # not resealed
    return json.dumps(doc).encode()


def _not_null(data: bytes) -> bytes:
    """Passes the dry-run, refused by the database at the last deployment: all undone."""
    doc = json.loads(data)
    doc["sections"]["deployments"][-1]["internal_port"] = None
    return _reseal(doc)


@pytest.mark.parametrize(
    ("case", "change", "status", "code", "words"),
    [
        ("newer-version", _newer, 422, "bundle_refused", ["format_version 4", "newer DeployMate"]),
        ("checksum", _damaged, 422, "bundle_refused", ["checksum mismatch"]),
        ("not-json", lambda d: b"{nope", 422, "bundle_not_json", ["not valid JSON"]),
        ("refused-by-the-database", _not_null, 422, "restore_failed", ["tools", "undone"]),
    ],
)
def test_a_bad_bundle_is_refused_and_nothing_changes(
    source: Source,
    target: tuple[TestClient, dict[str, str]],
    case: str,
    change: Any,
    status: int,
    code: str,
    words: list[str],
) -> None:
    client, headers = target
    counts = _table_counts(client)
    res = _restore(client, headers, change(source.bundle))
    assert res.status_code == status, res.text
    body = res.json()
    assert body["code"] == code, body
    assert all(w in body["detail"] for w in words), body["detail"]
    assert "nothing was changed" in body["detail"]
    assert _table_counts(client) == counts
    assert "Traceback" not in res.text


def test_credentials_under_a_key_this_instance_lacks_name_the_key(
    source: Source, target: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, headers = target
    other = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'other.db'}",
        server_credentials_key=generate_key(),
    )
    with TestClient(create_app(other), base_url="http://testserver") as stranger:
        bundle = stranger.get(BUNDLE, headers=_admin_headers(stranger))
        stranger_headers = _admin_headers(stranger)
        assert (
            stranger.post(
                "/api/servers",
                headers=stranger_headers,
                json={
                    "name": "far-1",
                    "host": "127.0.0.1",
                    "port": 2203,
                    "username": "deploy",
                    "auth_type": "password",
                    "password": "far-away-pass-12",
                },
            ).status_code
            == 201
        )
        bundle = stranger.get(BUNDLE, headers=stranger_headers)
        needed = stranger.app.state.context.cipher.fingerprint  # type: ignore[attr-defined]
    counts = _table_counts(client)
    res = _restore(client, headers, bundle.content)
    assert res.status_code == 422, res.text
    detail = res.json()["detail"]
    assert needed in detail and "DEPLOYMATE_SERVER_CREDENTIALS_KEY" in detail
    reasons = [r["code"] for s in res.json()["report"]["sections"] for r in s["reasons"]]
    assert "credentials_unreadable" in reasons
    assert _table_counts(client) == counts


def test_confirmation_and_admin_rights_are_required(
    source: Source, target: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = target
    counts = _table_counts(client)
    for confirm in (None, "yes", "RESTORE!"):
        res = _restore(client, headers, source.bundle, confirm=confirm)
        assert res.status_code == 422 and res.json()["code"] == "confirmation_required"
        assert "type restore" in res.json()["detail"]
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    member = member_headers(client, "bob")
    del client.headers["X-CSRF-Token"]
    client.cookies.clear()
    counts = _table_counts(client)
    res = _restore(client, member, source.bundle)
    assert res.status_code == 403 and res.json()["code"] == "admin_required"
    assert _restore(client, {}, source.bundle).status_code == 401
    assert _table_counts(client) == counts


def test_the_console_restores_and_shows_the_temporary_passwords_once(
    source: Source, target: tuple[TestClient, dict[str, str]]
) -> None:
    client, _ = target
    client.cookies.clear()
    login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/app/backup")
    assert page.status_code == 200 and 'data-testid="restore-form"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    files = {"bundle": ("backup.json", source.bundle, "application/json")}
    unconfirmed = client.post(
        "/app/backup/restore", files=files, data={"csrf_token": csrf.group(1), "confirm": "no"}
    )
    assert unconfirmed.status_code == 422 and "type restore to confirm" in unconfirmed.text
    done = client.post(
        "/app/backup/restore", files=files, data={"csrf_token": csrf.group(1), "confirm": "restore"}
    )
    assert done.status_code == 200 and 'data-testid="temporary-passwords"' in done.text
    assert done.headers["cache-control"] == "no-store"
    assert "restored 1 users, 2 servers" in done.text
    again = client.post(
        "/app/backup/restore", files=files, data={"csrf_token": csrf.group(1), "confirm": "restore"}
    )
    assert again.status_code == 409 and "not empty" in again.text
    assert 'data-testid="temporary-passwords"' not in again.text
    client.cookies.clear()
