"""Helpers for deployment tests: waiting for jobs, fetching from lab hosts."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_job(client: httpx.Client, job_id: int, timeout: float = 120) -> dict[str, Any]:
    """A job's final state, polled through the API (a TestClient or a signed-in httpx client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "interrupted"):
            return job
        time.sleep(0.2)
    raise AssertionError(
        f"job {job_id} did not finish in {timeout}s: {client.get(f'/api/jobs/{job_id}').json()}"
    )


def job_text(job: dict[str, Any]) -> str:
    return "\n".join(str(e["message"]) for e in job["log"])


def fetch(address: str, port: int, path: str = "/version", timeout: float = 2.0) -> str | None:
    try:
        res = httpx.get(f"http://{address}:{port}{path}", timeout=timeout)
    except httpx.HTTPError:
        return None
    return res.text.strip() if res.status_code == 200 else f"HTTP {res.status_code}"


def fast_health(**overrides: Any) -> dict[str, Any]:
    """A health check tuned for test images that start in well under a second."""
    return {
        "type": "http",
        "path": "/version",
        "interval": 0.3,
        "timeout": 1.0,
        "retries": 10,
        **overrides,
    }
