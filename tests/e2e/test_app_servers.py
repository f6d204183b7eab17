"""Apps across several lab hosts: production on two servers with a canary first, a canary that
fails leaving the other servers untouched, and one environment fanned out to five servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import key_server
from tests.support.apps import app_spec, via_proxy
from tests.support.deploy import job_text, wait_job
from tests.support.lab import Lab, LabHost

pytestmark = pytest.mark.usefixtures("test_images")

CRASH_IN_PRODUCTION = [
    "/bin/sh",
    "-c",
    'if [ "$CRASH" = 1 ]; then echo bad config >&2; exit 3; fi; '
    "trap 'exit 0' TERM; while true; do sleep 1; done",
]


@pytest.fixture(scope="module")
def hosts(lab: Lab) -> Iterator[list[LabHost]]:
    """Five hosts for the module: h0 staging, h1 and h2 production, all five the fleet."""
    made = lab.add_hosts(5)
    yield made
    for host in made:
        lab.remove_host(host)


def _add(client: TestClient, hosts: list[LabHost]) -> None:
    for i, host in enumerate(hosts):
        res = client.post("/api/servers", json=key_server(host, f"h{i}"))
        assert res.status_code == 201, res.text


def _deploy(client: TestClient, app: str, text: str, environment: str) -> dict[str, Any]:
    res = client.post(
        f"/api/apps/{app}/deploy",
        json={"environment": environment, "spec": text, "commit": "0a1b2c3d", "branch": "main"},
    )
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"])
    return job


def _containers(host: LabHost) -> list[str]:
    return sorted(host.docker("ps", "-a", "--format", "{{.Names}}").stdout.split())


def _shop(version: str, production_env: dict[str, str] | None = None) -> str:
    production: dict[str, object] = {"servers": ["h1", "h2"], "rollout": "canary"}
    if production_env:
        production["env"] = production_env
    return app_spec(
        "shop",
        version,
        {"staging": {"servers": ["h0"]}, "production": production},
        worker=CRASH_IN_PRODUCTION,
    )


def test_a_ship_reaches_both_production_servers_canary_first_with_the_same_image_ids(
    e2e_client: TestClient, hosts: list[LabHost]
) -> None:
    client = e2e_client
    _add(client, hosts[:3])
    job = _deploy(client, "shop", _shop("v1"), "staging")
    assert job["status"] == "succeeded", job_text(job)
    shipped = client.post("/api/apps/shop/ship", json={"confirm": "shop"})
    assert shipped.status_code == 202, shipped.text
    job = wait_job(client, shipped.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    text = job_text(job)
    assert text.index("canary: h1") < text.index("then the others: h2")
    assert [via_proxy(h, "web.shop.test") for h in hosts[:3]] == ["v1", "v1", "v1"]
    releases = client.get("/api/apps/shop/releases").json()
    staging = next(r for r in releases if r["environment"] == "staging")
    production = next(r for r in releases if r["environment"] == "production")
    for service in ("web", "worker"):
        image = staging["parts"][service]["h0"]["image_id"]
        assert image.startswith("sha256:")
        assert production["parts"][service]["h1"]["image_id"] == image
        assert production["parts"][service]["h2"]["image_id"] == image


def test_a_canary_that_fails_goes_back_and_leaves_the_other_servers_untouched(
    e2e_client: TestClient, hosts: list[LabHost]
) -> None:
    client = e2e_client
    _add(client, hosts[:3])
    assert _deploy(client, "shop", _shop("v1"), "staging")["status"] == "succeeded"
    first = client.post("/api/apps/shop/ship", json={"confirm": "shop"}).json()
    assert wait_job(client, first["job_id"])["status"] == "succeeded"
    before = _containers(hosts[2])
    # v2 is fine on staging; production's own config (CRASH=1) breaks its worker.
    job = _deploy(client, "shop", _shop("v2", {"CRASH": "1"}), "staging")
    assert job["status"] == "succeeded", job_text(job)
    assert via_proxy(hosts[0], "web.shop.test") == "v2"
    second = client.post("/api/apps/shop/ship", json={"confirm": "shop"}).json()
    job = wait_job(client, second["job_id"])
    assert job["status"] == "failed", job_text(job)
    assert "the canary failed" in job["error"] and "worker@h1" in job["error"]
    assert "h2 not touched" in job_text(job) and "[web@h2]" not in job_text(job)
    # The canary is back on v1; the other server never saw v2.
    assert via_proxy(hosts[1], "web.shop.test") == "v1"
    assert via_proxy(hosts[2], "web.shop.test") == "v1"
    assert _containers(hosts[2]) == before
    assert not [n for n in _containers(hosts[1]) if n.endswith("-r2")]
    production = client.get("/api/apps/shop/releases?environment=production").json()
    assert [r["status"] for r in production] == ["failed", "succeeded"]


def test_an_environment_on_five_servers_deploys_to_all_of_them(
    e2e_client: TestClient, hosts: list[LabHost]
) -> None:
    client = e2e_client
    _add(client, hosts)
    servers = [f"h{i}" for i in range(5)]
    for version in ("v1", "v2"):
        text = app_spec("fleet", version, {"staging": {"servers": servers}})
        job = _deploy(client, "fleet", text, "staging")
        assert job["status"] == "succeeded", job_text(job)
        assert [via_proxy(h, "web.fleet.test") for h in hosts] == [version] * 5
    release = client.get("/api/apps/fleet/releases").json()[0]
    assert sorted(release["parts"]["web"]) == servers
