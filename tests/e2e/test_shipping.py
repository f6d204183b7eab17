"""Images reach a lab host through the control host's registry over the SSH connection: the
target downloads only the layers it lacks (figures asserted loosely; benchmarks/shipping.py
measures them)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import key_server
from tests.support import images
from tests.support.deploy import fast_health, job_text, wait_job
from tests.support.lab import LabHost

pytestmark = pytest.mark.usefixtures("test_images")
SHIPPED = re.compile(r"shipped (\S+): (\d+) bytes moved through the SSH connection")


def _image_size(tag: str) -> int:
    import subprocess

    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", tag],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip())


def _moved(job: dict[str, Any]) -> int:
    found = SHIPPED.findall(job_text(job))
    assert len(found) == 1, job_text(job)
    return int(found[0][1])


def test_a_target_downloads_only_the_layers_it_lacks(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    ids = images.build_shipping_images()
    client = e2e_client
    sid = client.post("/api/servers", json=key_server(lab_host, "ship")).json()["id"]
    made = client.post(
        "/api/deployments",
        json={
            "name": "shipped",
            "server_id": sid,
            "image": images.SHIP_BASE,
            "internal_port": 80,
            "health_check": fast_health(),
        },
    )
    assert made.status_code == 201, made.text
    job = wait_job(client, made.json()["job_id"])
    assert job["status"] == "succeeded", job_text(job)
    assert "from the control host's registry through the SSH connection" in job_text(job)
    size = _image_size(images.SHIP_BASE)
    first = _moved(job)
    assert first > 0
    dep_id = made.json()["id"]

    def redeploy(tag: str) -> dict[str, Any]:
        res = client.post(f"/api/deployments/{dep_id}/redeploy", json={"image": tag})
        done = wait_job(client, res.json()["job_id"])
        assert done["status"] == "succeeded", job_text(done)
        return done

    # The same layers under a new config: a few kilobytes move, not the image.
    relabeled = _moved(redeploy(images.SHIP_RELABELED))
    assert relabeled < 0.02 * size, (relabeled, size)
    # The top layer changed: about that layer moves (512 KiB of random bytes), not the rest.
    changed = _moved(redeploy(images.SHIP_TOP_CHANGED))
    assert 512 * 1024 < changed < 512 * 1024 + 0.05 * size, (changed, size)
    running = lab_host.docker("image", "inspect", "--format", "{{.Id}}", images.SHIP_TOP_CHANGED)
    assert running.stdout.strip() == ids[images.SHIP_TOP_CHANGED]  # the same image ID
    leftover = lab_host.docker("images", "--format", "{{.Repository}}").stdout
    assert "deploymate/ship" not in leftover  # the registry names are removed after the pull
