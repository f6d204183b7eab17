"""The deployments API validates a change exactly as a creation (finding 18)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD
from tests.support.api import login
from tests.support.deploy import wait_job

# A registry that does not resolve: the deployment is recorded, its pull and its job fail fast.
MISSING_IMAGE = "registry.invalid/dm-test/not-there:v0"

BAD_CHANGES: list[dict[str, Any]] = [
    {"labels": {"Bad Key": "x"}},
    {"labels": {"deploymate.role": "serving"}},
    {"labels": {"team": "a\nb"}},
    {"command": ["sh", "-c", "echo \x00"]},
    {"command": ["x"] * 65},
    {"env": {"GOOD": "a\x00b"}},
    {"env": {"1BAD": "x"}},
    {"secret_env": {"TOKEN": "line\nbreak"}},
    {"secret_env_remove": ["not a name"]},
    {"image": "--privileged"},
    {"internal_port": 0},
    {"internal_port": None},
    {"restart_policy": "sometimes"},
    {"health_check": {"type": "http", "path": "no-slash"}},
    {"memory_limit": "lots"},
    {"unknown": 1},
    {"domains": ["*.shop.test"]},
    {"domains": ["shop.test:8443"]},
    {"domains": ["shop.test/admin"]},
    {"domains": ["not a host"]},
    {"tls": "maybe"},
    {"volumes": [{"name": "data", "path": "data"}]},
    {"volumes": [{"name": "data", "path": "/"}]},
    {"volumes": [{"name": "data", "path": "/data,readonly"}]},
    {"smoke": [{"command": ["sh", "-c", "true\x00"]}]},
    {"smoke": [{"http": "/ok", "expect": 999}]},
    {"drain_seconds": -1},
    {"drain_seconds": 3601},
    {"required_env": ["1BAD"]},
]


@pytest.fixture
def dep_id(client: TestClient) -> int:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    body = {"name": "web", "server_id": None, "image": MISSING_IMAGE, "internal_port": 80}
    res = client.post("/api/deployments", json=body)
    assert res.status_code == 201, res.text
    assert wait_job(client, res.json()["job_id"], timeout=60)["status"] == "failed"
    return int(res.json()["id"])


def test_a_bad_change_is_refused_and_leaves_everything_as_it_was(
    client: TestClient, dep_id: int
) -> None:
    before = client.get(f"/api/deployments/{dep_id}").json()
    for change in BAD_CHANGES:
        res = client.patch(f"/api/deployments/{dep_id}", json=change)
        assert res.status_code == 422, (change, res.text)
        assert res.json()["code"] == "validation_error" and "Traceback" not in res.text
    after = client.get(f"/api/deployments/{dep_id}").json()
    assert after == before and after["status"] == "failed" and after["active_job_id"] is None
    releases = client.get(f"/api/deployments/{dep_id}/releases").json()
    assert [r["status"] for r in releases] == ["failed"]  # no release left pending or running


def test_create_refuses_the_same_values(client: TestClient, dep_id: int) -> None:
    base = {"name": "other", "server_id": None, "image": MISSING_IMAGE, "internal_port": 80}
    for change in BAD_CHANGES:
        if "secret_env_remove" in change:
            continue  # an update-only field
        res = client.post("/api/deployments", json={**base, **change})
        assert res.status_code == 422, (change, res.text)
    assert [d["name"] for d in client.get("/api/deployments").json()] == ["web"]


def test_an_image_found_nowhere_is_refused_before_anything_is_recorded(client: TestClient) -> None:
    client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
    nowhere = "dm-test/never-built:v9"  # no registry to pull from, on no host
    body = {"name": "ghost", "server_id": None, "image": nowhere, "internal_port": 80}
    res = client.post("/api/deployments", json={**body, "external_port": 8642})
    assert res.status_code == 422 and res.json()["field"] == "image", res.text
    assert res.json()["code"] == "image_missing"
    assert "build or load it there" in res.json()["detail"]
    assert client.get("/api/deployments").json() == []  # no record, so no port held
    fixed = client.post(
        "/api/deployments", json={**body, "image": MISSING_IMAGE, "external_port": 8642}
    )
    assert fixed.status_code == 201 and fixed.json()["external_port"] == 8642, fixed.text
    wait_job(client, fixed.json()["job_id"], timeout=60)


def test_a_redeploy_to_an_image_found_nowhere_records_no_release(
    client: TestClient, dep_id: int
) -> None:
    for call in (
        lambda: client.post(
            f"/api/deployments/{dep_id}/redeploy", json={"image": "dm-test/never-built:v9"}
        ),
        lambda: client.patch(
            f"/api/deployments/{dep_id}", json={"image": "dm-test/never-built:v9"}
        ),
    ):
        res = call()
        assert res.status_code == 422 and res.json()["code"] == "image_missing", res.text
    assert len(client.get(f"/api/deployments/{dep_id}/releases").json()) == 1


def test_required_env_the_configuration_lacks_is_refused_and_nothing_changes(
    client: TestClient, dep_id: int
) -> None:
    before = client.get(f"/api/deployments/{dep_id}").json()
    res = client.patch(f"/api/deployments/{dep_id}", json={"required_env": ["DATABASE_URL"]})
    assert res.status_code == 422 and res.json()["code"] == "required_env_missing", res.text
    assert "missing DATABASE_URL" in res.json()["detail"]
    assert client.get(f"/api/deployments/{dep_id}").json() == before
    # Given as a secret, it satisfies the guard (values are never shown).
    res = client.patch(
        f"/api/deployments/{dep_id}",
        json={"required_env": ["DATABASE_URL"], "secret_env": {"DATABASE_URL": "pg://x"}},
    )
    assert res.status_code == 202, res.text
    wait_job(client, res.json()["job_id"], timeout=60)


def test_a_domain_held_on_the_target_is_refused_with_409(client: TestClient, dep_id: int) -> None:
    res = client.patch(f"/api/deployments/{dep_id}", json={"domains": ["Shop.Test"]})
    assert res.status_code == 202, res.text
    wait_job(client, res.json()["job_id"], timeout=60)
    dep = client.get(f"/api/deployments/{dep_id}").json()
    assert dep["domains"] == ["shop.test"] and dep["external_port"] is None
    body = {"name": "thief", "server_id": None, "image": MISSING_IMAGE, "internal_port": 80}
    taken = client.post("/api/deployments", json={**body, "domains": ["shop.test"]})
    assert taken.status_code == 409 and taken.json()["code"] == "domain_taken", taken.text
    assert "served by the deployment web" in taken.json()["detail"]
    assert [d["name"] for d in client.get("/api/deployments").json()] == ["web"]
    # Back to a published port: one is chosen again.
    res = client.patch(f"/api/deployments/{dep_id}", json={"domains": []})
    assert res.status_code == 202, res.text
    wait_job(client, res.json()["job_id"], timeout=60)
    assert client.get(f"/api/deployments/{dep_id}").json()["external_port"] is not None


def test_bind_mounts_are_for_admins_under_the_allowed_roots(
    client: TestClient, dep_id: int
) -> None:
    bind = {"volumes": [{"source": "/etc", "path": "/host-etc"}]}
    res = client.patch(f"/api/deployments/{dep_id}", json=bind)
    assert res.status_code == 422 and res.json()["code"] == "bind_mount_refused", res.text
    assert "DEPLOYMATE_BIND_MOUNT_ROOTS" in res.json()["detail"]
