"""Backup bundle download and restore dry-run: format, secrets, access, audit, every reason,
bad bundles (nothing written), and a bundle dry-run on an instance with another key."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

import deploymate.models  # noqa: F401  (every table registered on Base.metadata)
from deploymate.app import create_app
from deploymate.apps.models import App, AppRelease, AppSecret
from deploymate.backup import format as bundle_format
from deploymate.core.config import Settings
from deploymate.core.crypto import KEY_FILE_NAME
from deploymate.core.db import Base
from deploymate.deployments.models import Deployment, DeploymentTemplate, Release
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.support.api import audit_rows, create_user, login, run_in_app

SERVER_PASSWORD = "srv-Password-canary-7731"
SECRET_VALUE = "sk_live_canary_3f9a1c77"
APP_SECRET = "postgres://store:app-canary-5521@db/store"
MEMBER_TEMP = "alice-temporary-pass-1"
MEMBER_PASSWORD = "alice-permanent-pass-2"
BUNDLE = "/api/admin/backup-bundle"
DRY_RUN = "/api/admin/restore/dry-run"
# Tables whose rows are compared field by field before and after a dry-run.
CONTENT_TABLES = (
    "users",
    "servers",
    "deployments",
    "releases",
    "apps",
    "app_secrets",
    "app_releases",
    "deployment_templates",
    "deployment_events",
    "jobs",
)


@dataclass
class World:
    admin: dict[str, str]  # Authorization headers (API tokens)
    member: dict[str, str]
    private_key: str
    tokens: list[str]
    server_ids: dict[str, int]


def _token(client: TestClient, username: str, password: str) -> str:
    client.cookies.clear()
    csrf = login(client, username, password)
    token = client.post("/api/auth/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf})
    assert token.status_code == 201, token.text
    client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    client.cookies.clear()
    return str(token.json()["token"])


def _member_token(client: TestClient) -> str:
    client.cookies.clear()
    csrf = login(client, "alice", MEMBER_TEMP)
    res = client.post(
        "/api/auth/change-password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": MEMBER_TEMP, "new_password": MEMBER_PASSWORD},
    )
    assert res.status_code == 200, res.text
    return _token(client, "alice", MEMBER_PASSWORD)


def _plant(client: TestClient, server_id: int, owner_id: int) -> None:
    """Deployments, a release and a template, written directly (no deploy job runs)."""
    cipher = client.app.state.context.cipher  # type: ignore[attr-defined]
    sealed = cipher.encrypt(json.dumps({"API_KEY": SECRET_VALUE}))

    async def plant(db: AsyncSession) -> None:
        common: dict[str, Any] = {
            "owner_id": owner_id,
            "internal_port": 8080,
            "env": {"MODE": "production"},
            "status": "running",
        }
        shop = Deployment(
            name="shop",
            server_id=server_id,
            image="registry.example/shop:1",
            external_port=18080,
            secret_env=sealed,
            **common,
        )
        tools = Deployment(
            name="tools",
            image="busybox:1",
            external_port=18081,
            volumes=[{"name": "cache", "path": "/cache"}],
            **common,
        )
        db.add_all([shop, tools])
        await db.flush()
        release = Release(
            deployment_id=shop.id,
            number=1,
            reason="create",
            image=shop.image,
            config={"image": shop.image, "internal_port": 8080, "secret_env": sealed},
            status="succeeded",
            created_by="admin",
            log={"lines": [f"the app printed its secret: {SECRET_VALUE}"]},
        )
        db.add(release)
        await db.flush()
        shop.current_release_id = release.id
        db.add(
            DeploymentTemplate(
                name="shop-template",
                owner_id=owner_id,
                settings={"image": "registry.example/shop:1", "internal_port": 8080},
            )
        )
        app = App(name="store", owner_id=owner_id, spec_text="app: store\n", spec={"app": "store"})
        db.add(app)
        await db.flush()
        db.add(
            AppSecret(
                app_id=app.id,
                environment="production",
                name="DATABASE_URL",
                value=cipher.encrypt(APP_SECRET),
            )
        )
        db.add(
            AppRelease(
                app_id=app.id,
                environment="staging",
                number=1,
                spec={"app": "store"},
                parts={"web": {"web-1": {"deployment_id": shop.id, "release_id": release.id}}},
                status="succeeded",
            )
        )
        await db.commit()

    run_in_app(client, plant)


@pytest.fixture
def world(client: TestClient) -> World:
    """An admin and a member (API tokens), two servers, deployments, a release, a template."""
    csrf = login(client, "admin", ADMIN_PASSWORD)
    member = create_user(client, csrf, "alice", password=MEMBER_TEMP)
    admin_token = _token(client, "admin", ADMIN_PASSWORD)
    admin = {"Authorization": f"Bearer {admin_token}"}
    private_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    servers = {}
    for body in (
        {"name": "web-1", "auth_type": "key", "private_key": private_key, "host_key": host_key},
        {"name": "db-1", "auth_type": "password", "password": SERVER_PASSWORD},
    ):
        res = client.post(
            "/api/servers",
            headers=admin,
            json={"host": "127.0.0.1", "port": 2201, "username": "deploy", **body},
        )
        assert res.status_code == 201, res.text
        servers[body["name"]] = int(res.json()["id"])
    _plant(client, servers["web-1"], int(member["user"]["id"]))
    member_token = _member_token(client)
    return World(
        admin=admin,
        member={"Authorization": f"Bearer {member_token}"},
        private_key=private_key,
        tokens=[admin_token, member_token],
        server_ids=servers,
    )


def _download(client: TestClient, world: World) -> tuple[Response, dict[str, Any]]:
    res = client.get(BUNDLE, headers=world.admin)
    assert res.status_code == 200, res.text
    return res, res.json()


def _reseal(doc: dict[str, Any]) -> bytes:
    """A bundle changed on purpose, with a matching checksum, so only the change is reported."""
    doc["manifest"]["checksum"] = bundle_format.checksum(doc["sections"])
    return json.dumps(doc).encode()


def _dry_run(
    client: TestClient, headers: dict[str, str], data: bytes, *, multipart: bool = False
) -> Response:
    if multipart:
        return client.post(
            DRY_RUN, headers=headers, files={"bundle": ("b.json", data, "application/json")}
        )
    return client.post(
        DRY_RUN, headers={**headers, "Content-Type": "application/json"}, content=data
    )


def _row(report: dict[str, Any], section: str) -> dict[str, Any]:
    rows = [r for r in report["sections"] if r["section"] == section]
    assert len(rows) == 1, (section, report)
    return rows[0]


def _codes(report: dict[str, Any], section: str) -> dict[str, str]:
    return {r["code"]: r["severity"] for r in _row(report, section)["reasons"]}


def _db_state(client: TestClient) -> dict[str, Any]:
    """Row counts of every table, and a digest of the rows of the domain tables."""

    async def read(db: AsyncSession) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for table in Base.metadata.sorted_tables:
            state[table.name] = (
                await db.execute(select(func.count()).select_from(table))
            ).scalar_one()
            if table.name in CONTENT_TABLES:
                rows = sorted(repr(tuple(r)) for r in (await db.execute(select(table))).all())
                state[f"{table.name} (rows)"] = hashlib.sha256("\n".join(rows).encode()).digest()
        return state

    result: dict[str, Any] = run_in_app(client, read)
    return result


def _assert_no_writes(before: dict[str, Any], after: dict[str, Any], audits: int) -> None:
    assert after["audit_events"] == before["audit_events"] + audits
    changed = [k for k in before if k != "audit_events" and before[k] != after[k]]
    assert not changed, changed


# --- the bundle ------------------------------------------------------------------------------


def test_the_bundle_has_a_manifest_counts_and_a_checksum(client: TestClient, world: World) -> None:
    res, doc = _download(client, world)
    disposition = res.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="deploymate-backup-\d{8}T\d{6}Z\.json"', disposition)
    assert res.headers["content-type"].startswith("application/json")
    assert res.headers["cache-control"] == "no-store"
    manifest, sections = doc["manifest"], doc["sections"]
    assert manifest["format"] == "deploymate-backup" and manifest["format_version"] == 3
    cipher = client.app.state.context.cipher  # type: ignore[attr-defined]
    assert manifest["key_fingerprint"] == cipher.fingerprint and manifest["sensitive"] is False
    assert manifest["app_version"] and re.match(r"\d{4}-\d\d-\d\dT", manifest["created_at"])
    assert list(sections) == [
        "users",
        "servers",
        "deployments",
        "templates",
        "releases",
        "apps",
        "app_secrets",
        "app_releases",
        "webhooks",
        "settings",
    ]
    assert manifest["counts"] == {name: len(value) for name, value in sections.items()}
    assert sections["apps"][0]["spec_text"] == "app: store\n"
    assert sections["app_secrets"][0]["value"].startswith("gAAAAA")
    assert sections["app_releases"][0]["parts"]["web"]["web-1"]["deployment_id"]
    assert manifest["counts"]["users"] == 2 and manifest["counts"]["servers"] == 2
    assert manifest["counts"]["deployments"] == 2 and manifest["counts"]["releases"] == 1
    canonical = json.dumps(sections, sort_keys=True, separators=(",", ":")).encode()
    assert manifest["checksum"] == "sha256:" + hashlib.sha256(canonical).hexdigest()
    users = {u["username"]: u for u in sections["users"]}
    assert set(users) == {"admin", "alice"} and users["alice"]["role"] == "member"
    assert all("password_hash" not in u for u in sections["users"])
    assert all("log" not in r for r in sections["releases"])
    assert {d["name"] for d in sections["deployments"]} == {"shop", "tools"}
    assert sections["templates"][0]["name"] == "shop-template"
    settings = sections["settings"]
    assert settings["env"] == "development" and settings["ssh_host_key_checking"] == "yes"
    assert set(settings) == set(bundle_format.SETTINGS_KEYS)


def test_volumes_are_recorded_by_name_never_their_data(client: TestClient, world: World) -> None:
    _, doc = _download(client, world)
    tools = next(d for d in doc["sections"]["deployments"] if d["name"] == "tools")
    assert tools["volumes"] == [{"name": "cache", "path": "/cache"}]
    assert tools["domains"] == [] and tools["routed_to"] is None


def test_credentials_are_only_the_stored_fernet_tokens(client: TestClient, world: World) -> None:
    _, doc = _download(client, world)

    async def stored(db: AsyncSession) -> tuple[dict[str, str], dict[str, str | None]]:
        from deploymate.servers.models import Server

        servers = {s.name: s.credentials for s in (await db.execute(select(Server))).scalars()}
        deps = {d.name: d.secret_env for d in (await db.execute(select(Deployment))).scalars()}
        return servers, deps

    servers, deps = run_in_app(client, stored)
    cipher = client.app.state.context.cipher  # type: ignore[attr-defined]
    for server in doc["sections"]["servers"]:
        assert server["credentials"] == servers[server["name"]]
        assert server["credentials"].startswith("gAAAAA")
    web = next(s for s in doc["sections"]["servers"] if s["name"] == "web-1")
    assert json.loads(cipher.decrypt(web["credentials"]))["private_key"] == world.private_key
    for dep in doc["sections"]["deployments"]:
        assert dep["secret_env"] == deps[dep["name"]]
    release = doc["sections"]["releases"][0]
    assert release["config"]["secret_env"] == deps["shop"]


def test_the_bundle_holds_no_plaintext_secret(client: TestClient, world: World) -> None:
    res, _ = _download(client, world)
    text = res.text
    key_body = [
        line
        for line in world.private_key.splitlines()
        if line and not line.startswith("-----") and len(line) > 16
    ]
    secrets = [
        world.private_key,
        *key_body,
        SERVER_PASSWORD,
        ADMIN_PASSWORD,
        MEMBER_TEMP,
        MEMBER_PASSWORD,
        SECRET_VALUE,
        APP_SECRET,
        *world.tokens,
    ]
    found = [s[:12] for s in secrets if s in text]
    assert not found, found
    assert "$argon2" not in text and "password_hash" not in text
    for name in (
        "server_credentials_key",
        "admin_password",
        "notification_webhook",
        "database_url",
    ):
        assert name not in text


# --- access and audit --------------------------------------------------------------------


def test_members_and_anonymous_callers_are_refused(client: TestClient, world: World) -> None:
    _, doc = _download(client, world)
    data = json.dumps(doc).encode()
    before = _db_state(client)
    res = client.get(BUNDLE, headers=world.member)
    assert res.status_code == 403 and res.json()["code"] == "admin_required"
    res = _dry_run(client, world.member, data)
    assert res.status_code == 403 and res.json()["code"] == "admin_required"
    client.cookies.clear()
    assert client.get(BUNDLE).status_code == 401
    res = client.post(DRY_RUN, content=data, headers={"Content-Type": "application/json"})
    assert res.status_code == 401
    _assert_no_writes(before, _db_state(client), audits=0)
    # the console page too
    login(client, "alice", MEMBER_PASSWORD)
    assert client.get("/app/backup").status_code == 403


def test_download_and_dry_runs_are_audited(client: TestClient, world: World) -> None:
    _, doc = _download(client, world)
    assert _dry_run(client, world.admin, json.dumps(doc).encode()).status_code == 200
    assert _dry_run(client, world.admin, b"not json").status_code == 422
    rows = [r for r in audit_rows(client) if r["action"].startswith("backup.")]
    assert [(r["action"], r["outcome"], r["actor"]) for r in rows] == [
        ("backup.download", "success", "admin"),
        ("backup.restore_dry_run", "success", "admin"),
        ("backup.restore_dry_run", "failure", "admin"),
    ]
    assert rows[0]["details"]["counts"]["servers"] == 2
    assert rows[1]["details"]["status"] == "warn" and rows[1]["details"]["readable"] is True
    assert rows[2]["details"]["error_code"] == "bundle_not_json"


# --- dry-run reasons -----------------------------------------------------------------------


def test_a_bundle_on_its_own_instance_warns_of_every_name_clash(
    client: TestClient, world: World
) -> None:
    res, _ = _download(client, world)
    before = _db_state(client)
    for multipart in (False, True):
        report = _dry_run(client, world.admin, res.content, multipart=multipart)
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["status"] == "warn" and body["readable"] is True
        for section in ("users", "servers", "deployments", "apps"):
            assert _codes(body, section) == {"name_clash": "warn"}, section
        assert "admin, alice" in _row(body, "users")["reasons"][0]["message"]
        assert "db-1, web-1" in _row(body, "servers")["reasons"][0]["message"]
        message = _row(body, "deployments")["reasons"][0]["message"]
        assert "shop on web-1" in message and "tools on the control host" in message
        for section in ("bundle", "templates", "releases", "app_secrets", "settings"):
            assert _row(body, section)["status"] == "ok", section
        assert "nothing was changed" in body["summary"]
    _assert_no_writes(before, _db_state(client), audits=2)


def _other_key_token() -> str:
    return Fernet(Fernet.generate_key()).encrypt(b'{"password": "x"}').decode()


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return apply


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        target = doc
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return apply


def _find(section: str, **match: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def pick(doc: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = next(
            r for r in doc["sections"][section] if all(r[k] == v for k, v in match.items())
        )
        return found

    return pick


def _edit(
    section: str, match: dict[str, Any], change: Callable[[dict[str, Any]], None]
) -> Callable[[dict[str, Any]], None]:
    return lambda doc: change(_find(section, **match)(doc))


def _add_unknown_top_level(doc: dict[str, Any]) -> None:
    doc["manifest"]["signed_by"] = "someone"
    doc["comment"] = "made by hand"


def _duplicate_server(doc: dict[str, Any]) -> None:
    doc["sections"]["servers"].append(copy.deepcopy(doc["sections"]["servers"][0]))
    doc["manifest"]["counts"]["servers"] += 1


def _version_1(doc: dict[str, Any]) -> None:
    """A bundle made before apps were part of the format."""
    doc["manifest"]["format_version"] = 1
    for name in ("apps", "app_secrets", "app_releases", "webhooks"):
        del doc["sections"][name], doc["manifest"]["counts"][name]


def _add_setting(doc: dict[str, Any]) -> None:
    doc["sections"]["settings"]["database_url"] = "postgresql://u:p@db/x"
    doc["manifest"]["counts"]["settings"] += 1


# (case id, change, section, reason code, severity, words the message names); every change but
# the checksum cases is resealed, so only the reason under test is reported.
CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str, str, list[str]]] = [
    (
        "unknown-format",
        _set(["manifest", "format"], "other-tool"),
        "bundle",
        "unknown_format",
        "error",
        ["other-tool"],
    ),
    (
        "unknown-format-version",
        _set(["manifest", "format_version"], 4),
        "bundle",
        "unknown_format_version",
        "error",
        ["format_version 4", "reads version 1, 2 and 3", "newer DeployMate"],
    ),
    (
        "checksum-mismatch",
        _edit("servers", {"name": "web-1"}, _set(["host"], "203.0.113.9")),
        "bundle",
        "checksum_mismatch",
        "error",
        ["checksum"],
    ),
    (
        "checksum-missing",
        _delete(["manifest", "checksum"]),
        "bundle",
        "checksum_mismatch",
        "error",
        ["checksum"],
    ),
    (
        "unknown-bundle-fields",
        _add_unknown_top_level,
        "bundle",
        "unknown_fields",
        "warn",
        ["manifest.signed_by", "comment"],
    ),
    (
        "missing-manifest-fields",
        _delete(["manifest", "app_version"]),
        "bundle",
        "missing_fields",
        "error",
        ["app_version"],
    ),
    (
        "counts-mismatch",
        _set(["manifest", "counts", "users"], 5),
        "users",
        "counts_mismatch",
        "error",
        ["5", "2"],
    ),
    (
        "unknown-record-fields",
        _edit("users", {"username": "alice"}, _set(["shoe_size"], 44)),
        "users",
        "unknown_fields",
        "warn",
        ["shoe_size"],
    ),
    (
        "unknown-section",
        _set(["sections", "registries"], [{"url": "https://example.invalid/hook"}]),
        "registries",
        "unknown_section",
        "warn",
        ["registries"],
    ),
    (
        "missing-section",
        _delete(["sections", "templates"]),
        "templates",
        "missing_section",
        "error",
        ["templates"],
    ),
    (
        "missing-fields",
        _edit("deployments", {"name": "shop"}, _delete(["image"])),
        "deployments",
        "missing_fields",
        "error",
        ["image"],
    ),
    (
        "malformed-record",
        _set(["sections", "users", 0], "admin"),
        "users",
        "malformed",
        "error",
        ["not objects"],
    ),
    (
        "malformed-type",
        _edit("servers", {"name": "db-1"}, _set(["id"], "two")),
        "servers",
        "malformed",
        "error",
        ["id"],
    ),
    ("duplicate", _duplicate_server, "servers", "duplicate", "error", ["more than once"]),
    (
        "credentials-not-encrypted",
        _edit("servers", {"name": "db-1"}, _set(["credentials"], '{"password": "hunter2"}')),
        "servers",
        "credentials_not_encrypted",
        "error",
        ["db-1"],
    ),
    (
        "credentials-unreadable",
        _edit("servers", {"name": "db-1"}, _set(["credentials"], _other_key_token())),
        "servers",
        "credentials_unreadable",
        "error",
        ["db-1", "DEPLOYMATE_SERVER_CREDENTIALS_KEY"],
    ),
    (
        "secret-env-unreadable",
        _edit("deployments", {"name": "shop"}, _set(["secret_env"], _other_key_token())),
        "deployments",
        "credentials_unreadable",
        "error",
        ["shop"],
    ),
    (
        "missing-server",
        _edit("deployments", {"name": "shop"}, _set(["server_id"], 9999)),
        "deployments",
        "missing_server",
        "error",
        ["shop (server_id 9999)"],
    ),
    (
        "missing-deployment",
        _set(["sections", "releases", 0, "deployment_id"], 9999),
        "releases",
        "missing_deployment",
        "error",
        ["deployment_id 9999"],
    ),
    (
        "missing-app",
        _set(["sections", "app_releases", 0, "app_id"], 9999),
        "app_releases",
        "missing_app",
        "error",
        ["app_id 9999"],
    ),
    (
        "app-secret-not-encrypted",
        _set(["sections", "app_secrets", 0, "value"], "postgres://plain"),
        "app_secrets",
        "credentials_not_encrypted",
        "error",
        ["DATABASE_URL (production)", "plaintext"],
    ),
    (
        "version-1-bundle-without-apps",
        _version_1,
        "apps",
        "not_in_version",
        "info",
        ["format version 1 has no apps", "nothing of it would be restored"],
    ),
    (
        "unknown-setting",
        _add_setting,
        "settings",
        "unknown_fields",
        "warn",
        ["database_url"],
    ),
    (
        "settings-differ",
        _set(["sections", "settings", "session_idle_minutes"], 5),
        "settings",
        "settings_differ",
        "info",
        ["session_idle_minutes (5 in the bundle, 120 here)"],
    ),
]


@pytest.mark.parametrize(
    ("change", "section", "code", "severity", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_each_dry_run_reason(
    client: TestClient,
    world: World,
    change: Callable[[dict[str, Any]], None],
    section: str,
    code: str,
    severity: str,
    words: list[str],
) -> None:
    _, doc = _download(client, world)
    change(doc)
    data = json.dumps(doc).encode() if code == "checksum_mismatch" else _reseal(doc)
    before = _db_state(client)
    res = _dry_run(client, world.admin, data)
    assert res.status_code == 200, res.text
    report = res.json()
    reasons = [r for r in _row(report, section)["reasons"] if r["code"] == code]
    assert reasons and reasons[0]["severity"] == severity, report
    for word in words:
        assert word in reasons[0]["message"], (word, reasons[0]["message"])
    expected = {"error": "error", "warn": "warn", "info": "ok"}[severity]
    assert _row(report, section)["status"] == expected
    assert report["status"] == ("error" if severity == "error" else "warn")  # warn: name clashes
    others = {
        r["section"]: r["status"]
        for r in report["sections"]
        if r["section"] not in (section, "users", "servers", "deployments", "apps")
    }
    assert set(others.values()) <= {"ok"}, others
    if code in ("unknown_format", "unknown_format_version"):
        assert [r["section"] for r in report["sections"]] == ["bundle"]  # not read further
    _assert_no_writes(before, _db_state(client), audits=1)


# --- bad bundles ---------------------------------------------------------------------------


def _corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + b"\xff\xfe\x00\x13garbage" + data[middle + 11 :]


BAD: list[tuple[str, Callable[[bytes], bytes], str, str]] = [
    ("not-json", lambda d: b"this is not a bundle", "bundle_not_json", "not valid JSON"),
    ("empty", lambda d: b"", "bundle_not_json", "empty"),
    ("corrupted", _corrupt, "bundle_not_json", "not UTF-8"),
    (
        "corrupted-json",
        lambda d: d.replace(b'"username":', b'"username";', 1),
        "bundle_not_json",
        "line",
    ),
    ("truncated", lambda d: d[: len(d) // 2], "bundle_truncated", "truncated"),
    ("truncated-at-end", lambda d: d.rstrip()[:-1], "bundle_truncated", "truncated"),
    ("not-an-object", lambda d: b"[1, 2, 3]", "bundle_not_object", "not an object"),
    ("no-manifest", lambda d: b'{"sections": {}}', "bundle_not_object", "no manifest"),
    ("nested", lambda d: b"[" * 100_000 + b"]" * 100_000, "bundle_not_json", "nested"),
    (
        "infinite-number",
        lambda d: d.replace(b'"format_version": 3', b'"format_version": 1e999', 1),
        "bundle_not_json",
        "too large",
    ),
    (
        "infinite-deep-number",
        lambda d: d.replace(b'"port": 22', b'"port": -1e999', 1),
        "bundle_not_json",
        "too large",
    ),
]


@pytest.mark.parametrize(
    ("damage", "code", "words"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
def test_a_bad_bundle_gives_a_clear_error_and_changes_nothing(
    client: TestClient,
    world: World,
    damage: Callable[[bytes], bytes],
    code: str,
    words: str,
) -> None:
    res, _ = _download(client, world)
    before = _db_state(client)
    for multipart in (False, True):
        bad = _dry_run(client, world.admin, damage(res.content), multipart=multipart)
        assert bad.status_code == 422, bad.text
        body = bad.json()
        assert body["code"] == code and words in body["detail"], body
        assert "Traceback" not in bad.text
        assert body["report"]["readable"] is False and body["report"]["status"] == "error"
        assert _row(body["report"], "bundle")["reasons"][0]["code"] == code
    _assert_no_writes(before, _db_state(client), audits=2)


def test_an_oversized_bundle_is_refused_with_413(
    client: TestClient, world: World, settings: Settings
) -> None:
    assert settings.max_upload_bytes == 20 * 1024 * 1024  # the documented default
    res, _ = _download(client, world)
    big = res.content.rstrip()[:-1] + b', "padding": "' + b"x" * settings.max_upload_bytes + b'"}'
    before = _db_state(client)
    for multipart in (False, True):
        refused = _dry_run(client, world.admin, big, multipart=multipart)
        assert refused.status_code == 413
        assert refused.json() == {
            "detail": f"request body exceeds {settings.max_upload_bytes} bytes",
            "code": "payload_too_large",
        }
    _assert_no_writes(before, _db_state(client), audits=0)  # refused at the edge, unread


def test_a_multipart_request_without_a_bundle_is_refused(client: TestClient, world: World) -> None:
    res = client.post(DRY_RUN, headers=world.admin, files={"other": ("x.json", b"{}")})
    assert res.status_code == 422 and res.json()["code"] == "bundle_missing"
    res = client.post(DRY_RUN, headers={**world.admin, "Content-Type": "text/plain"}, content=b"{}")
    assert res.status_code == 415


# --- another instance ----------------------------------------------------------------------


@pytest.fixture
def other_instance(
    request: pytest.FixtureRequest, tmp_path: Path, database_url: str
) -> Iterator[Callable[..., TestClient]]:
    """`make(**settings) -> TestClient`: another instance on its own empty database."""
    clients: list[TestClient] = []
    databases: list[str] = []
    pg: Any = None if database_url.startswith("sqlite") else request.getfixturevalue("pg_server")

    def make(**overrides: Any) -> TestClient:
        n = len(clients)
        if pg is None:
            url = f"sqlite+aiosqlite:///{tmp_path / f'other-{n}.db'}"
        else:
            databases.append(pg.create_database())
            url = pg.url(databases[-1])
        settings = make_settings(tmp_path / f"other-{n}", url, **overrides)
        other = TestClient(create_app(settings), base_url="http://testserver")
        other.__enter__()
        clients.append(other)
        return other

    yield make
    for other in clients:
        other.__exit__(None, None, None)
    for name in databases:
        pg.drop_database(name)


def _admin_on(other: TestClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(other, 'root', ADMIN_PASSWORD)}"}


def test_a_bundle_checks_clean_on_a_fresh_instance_with_the_same_key(
    client: TestClient,
    world: World,
    settings: Settings,
    other_instance: Callable[..., TestClient],
) -> None:
    res, _ = _download(client, world)
    key = (settings.data_dir / KEY_FILE_NAME).read_text().strip()
    for keys in (key, f"{Fernet.generate_key().decode()},{key}"):  # also after a key rotation
        fresh = other_instance(admin_username="root", server_credentials_key=keys)
        fresh_admin = _admin_on(fresh)
        before = _db_state(fresh)
        report = _dry_run(fresh, fresh_admin, res.content)
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["status"] == "ok", body
        assert {r["section"]: r["status"] for r in body["sections"]} == dict.fromkeys(
            (
                "bundle",
                "users",
                "servers",
                "deployments",
                "templates",
                "releases",
                "apps",
                "app_secrets",
                "app_releases",
                "webhooks",
                "settings",
            ),
            "ok",
        )
        assert "could proceed" in body["summary"]
        # the settings that differ are listed for information
        assert "admin_username ('admin' in the bundle, 'root' here)" in json.dumps(body)
        _assert_no_writes(before, _db_state(fresh), audits=1)


def test_credentials_under_a_key_this_instance_lacks_are_errors(
    client: TestClient, world: World, other_instance: Callable[..., TestClient]
) -> None:
    res, _ = _download(client, world)
    other = other_instance(
        admin_username="root", server_credentials_key=Fernet.generate_key().decode()
    )
    other_admin = _admin_on(other)
    before = _db_state(other)
    report = _dry_run(other, other_admin, res.content, multipart=True)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["status"] == "error" and "refused" in body["summary"]
    servers = _row(body, "servers")["reasons"]
    assert [r["code"] for r in servers] == ["credentials_unreadable"]
    assert "db-1, web-1" in servers[0]["message"]
    needed = client.app.state.context.cipher.fingerprint  # type: ignore[attr-defined]
    assert f"the key with fingerprint {needed}" in servers[0]["message"]
    assert _codes(body, "deployments") == {"credentials_unreadable": "error"}
    assert "shop" in _row(body, "deployments")["reasons"][0]["message"]
    assert _codes(body, "releases") == {"credentials_unreadable": "error"}
    assert _codes(body, "app_secrets") == {"credentials_unreadable": "error"}
    assert "DATABASE_URL (production)" in _row(body, "app_secrets")["reasons"][0]["message"]
    assert _row(body, "users")["status"] == "ok" and _row(body, "templates")["status"] == "ok"
    _assert_no_writes(before, _db_state(other), audits=1)


# --- console page ----------------------------------------------------------------------------


def test_the_console_page_runs_a_dry_run(client: TestClient, world: World) -> None:
    res, doc = _download(client, world)
    client.cookies.clear()
    login(client, "admin", ADMIN_PASSWORD)
    page = client.get("/app/backup")
    assert page.status_code == 200
    assert 'href="/api/admin/backup-bundle"' in page.text and 'name="csrf_token"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    files = {"bundle": ("mine.json", res.content, "application/json")}
    refused = client.post("/app/backup/dry-run", files=files)
    assert refused.status_code == 403  # no CSRF token
    ok = client.post("/app/backup/dry-run", files=files, data={"csrf_token": csrf.group(1)})
    assert ok.status_code == 200
    assert 'data-testid="dry-run-results"' in ok.text and "name_clash" in ok.text
    doc["sections"]["users"][0]["<script>alert(1)</script>"] = 1
    tampered = {"bundle": ("<b>bad</b>.json", _reseal(doc), "application/json")}
    shown = client.post("/app/backup/dry-run", files=tampered, data={"csrf_token": csrf.group(1)})
    assert shown.status_code == 200 and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown.text
    assert "<script>alert(1)" not in shown.text and "<b>bad</b>" not in shown.text
    broken = {"bundle": ("broken.json", b"{nope", "application/json")}
    bad = client.post("/app/backup/dry-run", files=broken, data={"csrf_token": csrf.group(1)})
    assert bad.status_code == 422 and "not valid JSON" in bad.text


def test_a_large_dry_run_never_blocks_other_requests(client: TestClient, world: World) -> None:
    """The analysis runs beside the event loop and never holds it (or the GIL) for a second."""
    res, _ = _download(client, world)
    sections = json.loads(res.content)["sections"]
    release = sections["releases"][0]
    sections["releases"] = [
        {**release, "id": 10_000 + i, "number": i, "image": f"registry.example.com/app:{i}"}
        for i in range(25_000)
    ]
    big = bundle_format.dumps(
        bundle_format.make_bundle(
            sections,
            app_version="test",
            created_at="2026-12-01T00:00:00Z",
            key_fingerprint="sha256:0000000000000000",
        )
    )
    assert 8 * 1024 * 1024 < len(big) < 20 * 1024 * 1024
    done = threading.Event()

    def dry_run() -> Any:
        try:
            return _dry_run(client, world.admin, big, multipart=False)
        finally:
            done.set()

    latencies: list[float] = []
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(dry_run)
        while not done.is_set():
            started = time.monotonic()
            assert client.get("/api/health").status_code == 200
            latencies.append(time.monotonic() - started)
            time.sleep(0.02)
        report = answer.result()
    assert report.status_code == 200, report.text
    assert _row(report.json(), "releases")["records"] == 25_000
    assert latencies and max(latencies) < 1.0, sorted(latencies)[-5:]
