"""Helpers for deployment tests: waiting for jobs, fetching from lab hosts."""

from __future__ import annotations

import time
from typing import Any

import httpx


def admin_session(url: str, password: str) -> httpx.Client:
    """A client of a running `deploymate serve`, signed in as admin with its CSRF header."""
    http = httpx.Client(base_url=url, timeout=30)
    answer = http.post("/api/auth/login", json={"username": "admin", "password": password})
    http.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return http


def wait_job(client: httpx.Client, job_id: int, timeout: float = 120) -> dict[str, Any]:
    """A job's final state, polled through the API (a TestClient or a signed-in httpx client);
    an answer that does not come (the instance riding out a fault) is asked again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        except (httpx.HTTPError, ValueError):
            time.sleep(0.3)
            continue
        if job["status"] in ("succeeded", "failed", "interrupted"):
            return job
        time.sleep(0.2)
    raise AssertionError(
        f"job {job_id} did not finish in {timeout}s: {client.get(f'/api/jobs/{job_id}').json()}"
    )


def wait_for_log(client: httpx.Client, job_id: int, words: str, timeout: float = 60) -> None:
    """Until the job's log says `words` (the step a test then breaks something at)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = " ".join(e["message"] for e in client.get(f"/api/jobs/{job_id}").json()["log"])
        if words in log:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never logged {words!r}")


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
