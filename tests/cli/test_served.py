"""Against a real `deploymate serve` process: concurrency that only a real server shows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.server import RunningServer


def test_concurrent_guesses_cannot_outrun_the_throttle(running_server: RunningServer) -> None:
    def guess(i: int) -> int:
        res = httpx.post(
            f"{running_server.url}/api/auth/login",
            json={"username": "ghost", "password": f"wrong-guess-{i:04d}"},
            timeout=30,
        )
        return res.status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(guess, range(12)))
    assert statuses.count(401) == 5 and statuses.count(429) == 7, statuses
