"""Steady request load through a proxy, counting every failed or wrong answer.

Used by the zero-downtime tests and by `make bench`: requests go out at a fixed rate from
worker threads, each on a new connection (so a closed keep-alive connection is never mistaken
for the proxy dropping a request), and each answer is recorded with its time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadReport:
    sent: int = 0
    failed: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, answer: str | None, error: str | None) -> None:
        with self.lock:
            self.sent += 1
            if answer is None:
                self.failed += 1
                self.errors[error or "?"] += 1
            else:
                self.answers[answer] += 1
            self.timeline.append((time.monotonic(), answer or f"ERROR {error}"))

    def summary(self) -> str:
        return f"failed {self.failed} of {self.sent}; answers {dict(self.answers)}" + (
            f"; errors {dict(self.errors)}" if self.errors else ""
        )


@contextmanager
def steady_load(
    url: str, host: str, rate: float = 100.0, workers: int = 8, accept: tuple[str, ...] = ()
) -> Iterator[LoadReport]:
    """GET `url` with Host `host` about `rate` times a second until the block ends. An answer
    is its body for HTTP 200; anything else (other status, refused, reset, timeout) is a
    failure, and so is a 200 whose body is not in `accept` (when given)."""
    report = LoadReport()
    stop = threading.Event()
    interval = workers / rate

    def worker(offset: float) -> None:
        time.sleep(offset)
        with httpx.Client(timeout=5.0, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            next_at = time.monotonic()
            while not stop.is_set():
                try:
                    res = client.get(url, headers={"Host": host, "Connection": "close"})
                    body = res.text.strip()
                    if res.status_code != 200:
                        report.record(None, f"HTTP {res.status_code}")
                    elif accept and body not in accept:
                        report.record(None, f"unexpected {body[:40]!r}")
                    else:
                        report.record(body, None)
                except httpx.HTTPError as exc:
                    report.record(None, type(exc).__name__)
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [
        threading.Thread(target=worker, args=(i * interval / workers,), daemon=True)
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    try:
        yield report
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
