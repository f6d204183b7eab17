"""Shipping images to a lab host through the control host's registry: bytes moved.

Run as root from the repository: `.venv/bin/python -m benchmarks.shipping`.

A deployment on a lab host runs an image of dm-test/web:v1 plus an 8 MiB layer and a 512 KiB
top layer (built offline). Then it is redeployed with:
- the same layers under a new config (a label): "unchanged";
- the top layer changed: "one-layer change".
Each time the job log says how many bytes crossed the SSH connection (the registry's answers
to the target's pull). The baseline, measured here too, is `docker save` of the same image:
what the fallback (docker save | docker load) moves every time.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from fastapi.testclient import TestClient

from deploymate.app import create_app
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.e2e.conftest import key_server
from tests.support import images
from tests.support.api import login
from tests.support.deploy import fast_health, job_text, wait_job
from tests.support.lab import Lab

SHIPPED = re.compile(r"shipped \S+: (\d+) bytes moved")


def _saved_bytes(tag: str) -> int:
    proc = subprocess.run(["docker", "save", tag], check=True, capture_output=True)
    return len(proc.stdout)


def _moved(client: TestClient, job_id: int) -> int:
    job = wait_job(client, job_id)
    assert job["status"] == "succeeded", job_text(job)
    return int(SHIPPED.findall(job_text(job))[0])


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dm-bench-ship-"))
    with Lab() as lab:
        images.build_images(None)
        images.build_caddy_image(None)
        images.build_shipping_images()
        host = lab.add_host()
        settings = make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'dm.db'}")
        with TestClient(create_app(settings)) as client:
            client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
            sid = client.post("/api/servers", json=key_server(host, "bench")).json()["id"]
            made = client.post(
                "/api/deployments",
                json={
                    "name": "ship",
                    "server_id": sid,
                    "image": images.SHIP_BASE,
                    "internal_port": 80,
                    "health_check": fast_health(),
                },
            ).json()
            first = _moved(client, made["job_id"])
            moved = {}
            for tag in (images.SHIP_RELABELED, images.SHIP_TOP_CHANGED):
                res = client.post(f"/api/deployments/{made['id']}/redeploy", json={"image": tag})
                moved[tag] = _moved(client, res.json()["job_id"])
    whole = _saved_bytes(images.SHIP_BASE)
    unchanged, changed = moved[images.SHIP_RELABELED], moved[images.SHIP_TOP_CHANGED]
    layer = 512 * 1024
    print(f"image: {whole} bytes as docker save writes it (the fallback moves that every time)")
    print(f"first ship (a target that has none of its layers): {first} bytes of {whole}")
    print(f"shipped unchanged: {unchanged} bytes of {whole} ({100 * unchanged / whole:.2f}%)")
    print(
        f"shipped one-layer change: {changed} bytes of {whole} (changed layer {layer} bytes; "
        f"{100 * (changed - layer) / whole:.2f}% more than the layer)"
    )


if __name__ == "__main__":
    main()
