"""Each failure a user meets says what to do next, in their words: on a real lab host.

The messages, as a user now sees them, are the assertions below; the closing note of issue 9
lists them too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import asyncssh
from fastapi.testclient import TestClient

from tests.e2e.conftest import key_server
from tests.support.deploy import fast_health, job_text, wait_job
from tests.support.lab import LabHost

ERRNO = re.compile(r"Errno|errno|\[Err")


def _server(client: TestClient, host: LabHost, name: str) -> int:
    res = client.post("/api/servers", json=key_server(host, name))
    assert res.status_code == 201 and res.json()["last_check_ok"] is True, res.text
    return int(res.json()["id"])


def _deploy(client: TestClient, server_id: int, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "server_id": server_id,
        "image": "dm-test/web:v1",
        "internal_port": 80,
        "health_check": fast_health(),
        **extra,
    }
    res = client.post("/api/deployments", json=body)
    assert res.status_code == 201, res.text
    return {**res.json(), "job": wait_job(client, res.json()["job_id"])}


def test_a_refused_login_names_the_public_key_the_server_must_hold(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    fingerprint = stranger.get_fingerprint("sha256")
    body = key_server(lab_host, "stranger", private_key=stranger.export_private_key().decode())
    res = e2e_client.post("/api/servers", json=body)
    assert res.status_code == 201, res.text  # saved anyway, and marked
    server = res.json()
    assert server["last_check_ok"] is False
    message = server["last_check_message"]
    assert message == (
        f"root@{lab_host.address} refused the login: check the user name and the key. The "
        f"server must hold the public key {fingerprint} (ssh-ed25519) in "
        "~root/.ssh/authorized_keys."
    )


def test_nothing_listening_asks_about_the_internal_port(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host, "ports")
    dep = _deploy(e2e_client, sid, "deaf", internal_port=8080, health_check=fast_health(retries=4))
    assert dep["job"]["status"] == "failed"
    assert (
        "the container answered on no port; is the app listening on port 8080 inside the "
        "container?" in dep["job"]["error"]
    ), dep["job"]["error"]


def test_a_path_that_answers_404_every_time_stops_early_and_links_to_the_setting(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host, "paths")
    started = time.monotonic()
    dep = _deploy(
        e2e_client, sid, "lost", health_check=fast_health(path="/nope", retries=30, interval=0.5)
    )
    took = time.monotonic() - started
    error = dep["job"]["error"]
    assert "HTTP 404 on /nope 3 times in a row (expected 200)" in error, error
    assert "Change the health check's path or expected status" in error
    assert "health 5/30" not in job_text(dep["job"]) and took < 15  # not 30 tries x 0.5s
    page = e2e_client.get(f"/deployments/{dep['id']}").text
    assert 'data-testid="fix-settings"' in page and "Edit the health check" in page


def test_an_exited_container_ends_the_wait_with_its_status(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host, "crashes")
    dep = _deploy(e2e_client, sid, "crashy", image="dm-test/crash:v1")
    error = dep["job"]["error"]
    assert re.search(r"the container (exited with status 3|keeps exiting \(status 3;)", error), (
        error
    )
    assert "dm-test crash: exiting" in job_text(dep["job"])  # its last lines are in the log


def test_a_held_port_names_the_deployment_and_offers_the_next_free_one(
    e2e_client: TestClient, lab_host: LabHost, test_images: dict[str, str]
) -> None:
    sid = _server(e2e_client, lab_host, "holders")
    first = _deploy(e2e_client, sid, "first")
    port = first["external_port"]
    body = {"name": "second", "server_id": sid, "image": "dm-test/web:v1", "internal_port": 80}
    res = e2e_client.post("/api/deployments", json={**body, "external_port": port})
    assert res.status_code == 422 and res.json()["field"] == "external_port"
    detail = res.json()["detail"]
    match = re.fullmatch(
        rf"external port: port {port} is held by the deployment first on this target; the next "
        r"free port is (\d+), or leave the port empty for one to be chosen",
        detail,
    )
    assert match, detail
    offered = int(match.group(1))
    retry = e2e_client.post("/api/deployments", json={**body, "external_port": offered})
    assert retry.status_code == 201, retry.text  # the offer is good
    wait_job(e2e_client, retry.json()["job_id"])


def test_unreachable_and_unresolvable_hosts_are_said_in_words(
    e2e_client: TestClient, lab_host_factory: Callable[..., LabHost]
) -> None:
    host = lab_host_factory()
    host.stop_sshd()
    res = e2e_client.post("/api/servers", json=key_server(host, "sleeping"))
    assert res.status_code == 201, res.text  # saved, marked unreachable
    message = res.json()["last_check_message"]
    assert message == (
        f"{host.address}:22 is not reachable: nothing accepts connections on that port (is "
        "sshd running, on this port?)"
    ), message
    assert not ERRNO.search(message)
    page = e2e_client.get("/app/server-review").text
    assert "nothing accepts connections on that port" in page

    unknown = {**key_server(host, "nowhere"), "host": "no-such-host.invalid"}
    res = e2e_client.post("/api/servers", json=unknown)
    assert res.status_code == 201, res.text
    message = res.json()["last_check_message"]
    assert "no-such-host.invalid does not resolve" in message and not ERRNO.search(message)
