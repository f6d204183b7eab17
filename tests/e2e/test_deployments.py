"""Deployments on real lab hosts: health gate, rollback by ID, locks, operations, secrets."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from deploymate.core.errors import label
from tests.e2e.conftest import key_server
from tests.support.api import audit_rows, member_headers, second_client
from tests.support.deploy import fast_health, fetch, job_text, wait_job
from tests.support.lab import LabHost


def _server(client: TestClient, host: LabHost, name: str = "lab") -> int:
    res = client.post("/api/servers", json=key_server(host, name))
    assert res.status_code == 201, res.text
    return int(res.json()["id"])


def _create(
    client: TestClient,
    server_id: int | None,
    name: str,
    image: str = "dm-test/web:v1",
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "name": name,
        "server_id": server_id,
        "image": image,
        "internal_port": 80,
        "health_check": fast_health(),
        **extra,
    }
    res = client.post("/api/deployments", json=body)
    assert res.status_code == 201, res.text
    return dict(res.json())


def container_env(host: LabHost, name: str) -> dict[str, str]:
    """The environment of the container's processes (busybox-static has `env`, not `printenv`)."""
    out = host.docker("exec", name, "/bin/busybox", "env").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _containers(host: LabHost, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    labels = [
        f"label=deploymate.deployment={deployment['id']}",
        f"label=deploymate.name={deployment['name']}",
    ]
    out = host.docker(
        "ps", "-a", "--filter", labels[0], "--filter", labels[1], "--format", "{{json .}}"
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_health_gated_releases_and_rollback_by_pinned_id(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host)
    dep = _create(e2e_client, sid, "gate")
    port = dep["external_port"]
    assert 8000 <= port <= 8999 and dep["status"] == "deploying"
    job = wait_job(e2e_client, dep["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert fetch(lab_host.address, port) == "v1"
    first = e2e_client.get(f"/api/deployments/{dep['id']}").json()
    assert (
        first["status"] == "running"
        and first["current_release"]["image_id"] == test_images["dm-test/web:v1"]
    )

    job = wait_job(
        e2e_client,
        e2e_client.post(
            f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/web:v2"}
        ).json()["job_id"],
    )
    assert job["status"] == "succeeded", job_text(job)
    assert fetch(lab_host.address, port) == "v2"
    assert "candidate healthy" in job_text(job) and "gap" in job_text(job)

    bad = e2e_client.post(
        f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/unhealthy:http500"}
    )
    job = wait_job(e2e_client, bad.json()["job_id"])
    assert job["status"] == "failed" and "previous release keeps serving" in job["error"]
    assert "expected 200" in job_text(job)
    assert fetch(lab_host.address, port) == "v2"
    now = e2e_client.get(f"/api/deployments/{dep['id']}").json()
    assert now["current_release"]["image"] == "dm-test/web:v2" and now["status"] == "running"
    assert now["image"] == "dm-test/web:v2"  # the desired config follows what serves
    releases = e2e_client.get(f"/api/deployments/{dep['id']}/releases").json()
    assert [r["status"] for r in releases] == ["failed", "succeeded", "succeeded"]
    assert any("expected 200" in line for line in releases[0]["log"])
    assert len(_containers(lab_host, dep)) == 1

    # Re-point the v1 tag at v2's content everywhere: a rollback must still serve the real v1.
    for docker_host in (None, lab_host.docker_host):
        args = ["-H", docker_host] if docker_host else []
        import subprocess

        subprocess.run(["docker", *args, "tag", "dm-test/web:v2", "dm-test/web:v1"], check=True)
    try:
        job = wait_job(
            e2e_client,
            e2e_client.post(
                f"/api/deployments/{dep['id']}/rollback", json={"release_id": releases[2]["id"]}
            ).json()["job_id"],
        )
        assert job["status"] == "succeeded", job_text(job)
        assert fetch(lab_host.address, port) == "v1"
        rolled = e2e_client.get(f"/api/deployments/{dep['id']}/releases").json()
        assert (
            rolled[0]["reason"] == "rollback"
            and rolled[0]["image_id"] == test_images["dm-test/web:v1"]
        )
        assert rolled[2]["status"] == "rolled_back"  # the release that was serving
        # without a release id: back to the last healthy release before the current one (v2)
        job = wait_job(
            e2e_client, e2e_client.post(f"/api/deployments/{dep['id']}/rollback").json()["job_id"]
        )
        assert job["status"] == "succeeded" and fetch(lab_host.address, port) == "v2"
    finally:
        subprocess.run(
            ["docker", "tag", test_images["dm-test/web:v1"], "dm-test/web:v1"], check=True
        )
        lab_host.docker("rmi", "dm-test/web:v1", check=False)


def test_rollback_restores_environment_and_health_check(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host)
    dep = _create(e2e_client, sid, "cfg", env={"MODE": "one"})
    assert wait_job(e2e_client, dep["job_id"])["status"] == "succeeded"
    job = wait_job(
        e2e_client,
        e2e_client.patch(
            f"/api/deployments/{dep['id']}",
            json={"env": {"MODE": "two"}, "health_check": fast_health(path="/")},
        ).json()["job_id"],
    )
    assert job["status"] == "succeeded"
    current = e2e_client.get(f"/api/deployments/{dep['id']}").json()
    name = f"dm-cfg-r{current['current_release']['number']}"
    assert container_env(lab_host, name)["MODE"] == "two"
    job = wait_job(
        e2e_client, e2e_client.post(f"/api/deployments/{dep['id']}/rollback").json()["job_id"]
    )
    assert job["status"] == "succeeded"
    after = e2e_client.get(f"/api/deployments/{dep['id']}").json()
    assert after["env"] == {"MODE": "one"} and after["health_check"]["path"] == "/version"
    name = f"dm-cfg-r{after['current_release']['number']}"
    assert container_env(lab_host, name)["MODE"] == "one"


def test_concurrent_redeploys_never_run_together(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host)
    dep = _create(e2e_client, sid, "race")
    assert wait_job(e2e_client, dep["job_id"])["status"] == "succeeded"

    def redeploy(image: str) -> Any:
        return e2e_client.post(f"/api/deployments/{dep['id']}/redeploy", json={"image": image})

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(redeploy, ["dm-test/web:v2", "dm-test/web:v1"] * 2))
    accepted = [a for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 409]
    assert len(accepted) == 1 and len(refused) == 3, [a.status_code for a in answers]
    assert refused[0].json()["code"] == "deployment_locked"
    job_id = accepted[0].json()["job_id"]
    # The refusal names the job that holds the deployment and who started it.
    assert f"race is busy: job #{job_id} (deploy, started by admin" in refused[0].json()["detail"]
    assert wait_job(e2e_client, accepted[0].json()["job_id"])["status"] == "succeeded"
    serving = [c for c in _containers(lab_host, dep) if c["State"] == "running"]
    assert len(serving) == 1 and str(dep["external_port"]) in serving[0]["Ports"]
    # the lock was released: the next deploy goes through
    again = e2e_client.post(f"/api/deployments/{dep['id']}/redeploy")
    assert (
        again.status_code == 202
        and wait_job(e2e_client, again.json()["job_id"])["status"] == "succeeded"
    )


def test_stop_start_restart_and_delete(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host)
    dep = _create(e2e_client, sid, "ops")
    port, did = dep["external_port"], dep["id"]
    assert wait_job(e2e_client, dep["job_id"])["status"] == "succeeded"
    for action, answers, status in (
        ("stop", None, "stopped"),
        ("start", "v1", "running"),
        ("restart", "v1", "running"),
    ):
        job = wait_job(
            e2e_client, e2e_client.post(f"/api/deployments/{did}/{action}").json()["job_id"]
        )
        assert job["status"] == "succeeded", job_text(job)
        assert e2e_client.get(f"/api/deployments/{did}").json()["status"] == status
        if answers:
            deadline = time.monotonic() + 10
            while fetch(lab_host.address, port) != answers and time.monotonic() < deadline:
                time.sleep(0.2)
        assert fetch(lab_host.address, port) == answers, action
    health = e2e_client.get(f"/api/deployments/{did}/health").json()
    assert health["healthy"] is True
    diag = e2e_client.get(f"/api/deployments/{did}/diagnostics").json()
    assert diag["running"] and diag["restart_count"] == 0 and diag["oom_killed"] is False
    assert diag["image_id"] == test_images["dm-test/web:v1"]
    logs = e2e_client.get(f"/api/deployments/{did}/logs?tail=5").json()
    assert logs["container"].startswith("dm-ops-r")
    assert any("dm-test web v1 starting on port 80" in line for line in logs["lines"]), logs
    actions = [a["action"] for a in e2e_client.get(f"/api/deployments/{did}/activity").json()]
    assert {"deploy", "deploy_succeeded", "stop", "start", "restart"} <= set(actions)
    refused = e2e_client.delete(f"/api/servers/{sid}")
    assert refused.status_code == 409 and refused.json()["code"] == "server_in_use"
    assert "ops" in refused.json()["detail"] and fetch(lab_host.address, port) == "v1"
    job = wait_job(e2e_client, e2e_client.delete(f"/api/deployments/{did}").json()["job_id"])
    assert job["status"] == "succeeded"
    assert _containers(lab_host, dep) == []
    assert fetch(lab_host.address, port) is None
    gone = e2e_client.get(f"/api/deployments/{did}").json()
    assert gone["status"] == "deleted" and gone["deleted_at"]
    assert len(e2e_client.get(f"/api/deployments/{did}/releases").json()) == 1  # history kept
    assert did not in [d["id"] for d in e2e_client.get("/api/deployments").json()]


def test_env_reaches_the_container_exactly_and_secrets_stay_secret(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str], tmp_path: Path
) -> None:
    tricky = "a b  'single' \"double\" $HOME ${X} `id` $(id) ; | & \\ end"
    secret = "s3cr3t-canary-Qp7 with $pace and `ticks`"
    sid = _server(e2e_client, lab_host)
    dep = _create(e2e_client, sid, "envy", env={"TRICKY": tricky}, secret_env={"API_KEY": secret})
    job = wait_job(e2e_client, dep["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    name = "dm-envy-r1"
    assert container_env(lab_host, name)["TRICKY"] == tricky
    assert container_env(lab_host, name)["API_KEY"] == secret
    # a failing deploy with the same secret, to search its output too
    bad = e2e_client.post(
        f"/api/deployments/{dep['id']}/redeploy", json={"image": "dm-test/crash:v1"}
    )
    failed = wait_job(e2e_client, bad.json()["job_id"])
    assert failed["status"] == "failed"
    texts = [
        json.dumps(e2e_client.get(f"/api/deployments/{dep['id']}").json()),
        json.dumps(e2e_client.get("/api/deployments").json()),
        json.dumps(e2e_client.get(f"/api/deployments/{dep['id']}/releases").json()),
        json.dumps(e2e_client.get(f"/api/deployments/{dep['id']}/activity").json()),
        json.dumps(e2e_client.get(f"/api/jobs/{dep['job_id']}").json()),
        json.dumps(e2e_client.get(f"/api/jobs/{bad.json()['job_id']}").json()),
        e2e_client.get(f"/api/jobs/{dep['job_id']}/events").text,
        repr(audit_rows(e2e_client)),
    ]
    for text in texts:
        assert secret not in text and "s3cr3t-canary" not in text
    assert e2e_client.get(f"/api/deployments/{dep['id']}").json()["secret_env_keys"] == ["API_KEY"]
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("dm.db*"))
    assert b"s3cr3t-canary" not in db_bytes
    assert b"$HOME ${X} `id` $(id)" in db_bytes  # the search works: plain env is stored as given


def test_hostile_deployment_input_is_refused(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host)
    busy = int(lab_host.exec("sh", "-c", "echo 22").stdout.strip())
    base = {"name": "evil", "server_id": sid, "image": "dm-test/web:v1", "internal_port": 80}
    cases: list[tuple[str, dict[str, Any]]] = [
        ("image", {"image": "--privileged"}),
        ("image", {"image": "dm-test/web:v1;touch /tmp/x"}),
        ("image", {"image": "dm-test/web:v1 --privileged"}),
        ("image", {"image": "$(id)"}),
        ("external_port", {"external_port": 0}),
        ("external_port", {"external_port": 70000}),
        ("external_port", {"external_port": busy}),
        ("internal_port", {"internal_port": "80 -p 1:1"}),
        ("name", {"name": "Not_DNS"}),
        ("name", {"name": "-lead"}),
        ("name", {"name": "a" * 64}),
        ("env", {"env": {"1BAD": "x"}}),
        ("env", {"env": {"A-B": "x"}}),
        ("env", {"env": {"OK": "line\nbreak"}}),
        ("secret_env", {"secret_env": {"BAD NAME": "x"}}),
        ("health_check", {"health_check": {"path": "no-slash"}}),
        ("health_check", {"health_check": {"path": "/ok\nid"}}),
        ("health_check", {"health_check": {"path": "/a b"}}),
        ("labels", {"labels": {"deploymate.role": "serving"}}),
    ]
    for field, change in cases:
        res = e2e_client.post("/api/deployments", json={**base, **change})
        assert res.status_code == 422, (field, change, res.text)
        assert label(field) in res.json()["detail"], (field, res.json())  # said in words
    assert e2e_client.get("/api/deployments").json() == []
    assert _containers_named(lab_host, "dm-evil") == []


def _containers_named(host: LabHost, prefix: str) -> list[str]:
    out = host.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return [n for n in out if n.startswith(prefix)]


def test_a_member_cannot_use_another_members_server(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    sid = _server(e2e_client, lab_host, "admins-box")
    headers = member_headers(e2e_client, "mem1")
    res = second_client(e2e_client).post(
        "/api/deployments",
        headers=headers,
        json={"name": "sneaky", "server_id": sid, "image": "dm-test/web:v1", "internal_port": 80},
    )
    assert res.status_code == 422 and res.json()["field"] == "server_id"
    assert res.json()["detail"].startswith("server: no server")
    local = second_client(e2e_client).post(
        "/api/deployments",
        headers=headers,
        json={"name": "sneaky", "server_id": None, "image": "dm-test/web:v1", "internal_port": 80},
    )
    assert local.status_code == 403 and local.json()["code"] == "local_not_allowed"


def test_stale_lock_expires_and_admins_can_force_release(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from deploymate.jobs.models import DeployLock
    from tests.support.api import run_in_app

    sid = _server(e2e_client, lab_host)
    dep = _create(e2e_client, sid, "locky")
    assert wait_job(e2e_client, dep["job_id"])["status"] == "succeeded"

    async def plant(db, expires_in: int) -> None:  # type: ignore[no-untyped-def]
        from deploymate.jobs.service import db_now

        now = await db_now(db)
        db.add(
            DeployLock(
                deployment_id=dep["id"],
                holder="job:dead",
                acquired_at=now,
                expires_at=now + timedelta(seconds=expires_in),
            )
        )
        await db.commit()

    run_in_app(e2e_client, plant, 600)
    res = e2e_client.post(f"/api/deployments/{dep['id']}/redeploy")
    assert res.status_code == 409 and "job:dead" in res.json()["detail"]

    async def expire(db) -> None:  # type: ignore[no-untyped-def]
        from deploymate.jobs.service import db_now

        await db.execute(
            update(DeployLock).values(expires_at=await db_now(db) - timedelta(seconds=1))
        )
        await db.commit()

    run_in_app(e2e_client, expire)
    res = e2e_client.post(f"/api/deployments/{dep['id']}/redeploy")
    assert (
        res.status_code == 202
        and wait_job(e2e_client, res.json()["job_id"])["status"] == "succeeded"
    )
    run_in_app(e2e_client, plant, 600)
    unlocked = e2e_client.delete(f"/api/deployments/{dep['id']}/lock")
    assert unlocked.status_code == 200 and unlocked.json() == {"released": True}
    assert "deployment.force_unlock" in [r["action"] for r in audit_rows(e2e_client)]
    assert e2e_client.post(f"/api/deployments/{dep['id']}/redeploy").status_code == 202


def test_templates_save_settings_without_secrets(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host)
    dep = _create(e2e_client, sid, "tpl-src", env={"A": "1"}, secret_env={"TOKEN": "tpl-secret-9"})
    assert wait_job(e2e_client, dep["job_id"])["status"] == "succeeded"
    saved = e2e_client.post(f"/api/deployments/{dep['id']}/template", json={"name": "web"}).json()
    assert "tpl-secret-9" not in json.dumps(saved)
    made = e2e_client.post(
        "/api/deployments", json={"name": "tpl-copy", "server_id": sid, "template_id": saved["id"]}
    )
    assert made.status_code == 201, made.text
    assert made.json()["env"] == {"A": "1"} and made.json()["image"] == "dm-test/web:v1"
    assert wait_job(e2e_client, made.json()["job_id"])["status"] == "succeeded"


def test_a_member_cannot_copy_an_image_of_the_control_host(
    e2e_client: TestClient, lab_host_factory: Any, test_images: dict[str, str]
) -> None:
    """The control host's images are streamed only for those who may use the control host."""
    host = lab_host_factory()
    member = member_headers(e2e_client, "mallory")
    api = second_client(e2e_client)
    res = api.post("/api/servers", headers=member, json=key_server(host, "mallorys"))
    assert res.status_code == 201, res.text
    body = {
        "name": "copycat",
        "server_id": res.json()["id"],
        "image": "dm-test/web:v1",  # on the control host only, and no registry to pull from
        "internal_port": 80,
        "health_check": fast_health(),
    }
    refused = api.post("/api/deployments", headers=member, json=body)
    assert refused.status_code == 422 and refused.json()["code"] == "image_missing"
    text = refused.json()["detail"]
    assert "dm-test/web:v1 is not on the target" in text
    assert "control host" not in text  # nothing said of what the control host holds
    assert host.docker("image", "inspect", "dm-test/web:v1", check=False).returncode != 0
    assert api.get("/api/deployments", headers=member).json() == []  # nothing recorded
    # Granted local deployments, the member may use the control host's images.
    users = e2e_client.get("/api/admin/users", params={"q": "mallory"}).json()
    e2e_client.patch(f"/api/admin/users/{users[0]['id']}", json={"can_deploy_local": True})
    created = api.post("/api/deployments", headers=member, json=body)
    assert created.status_code == 201, created.text
    job = wait_job(e2e_client, created.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert "dm-test/web:v1 from the control host" in job_text(job)
