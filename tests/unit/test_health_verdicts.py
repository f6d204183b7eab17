"""What a failed health gate says, and when it stops waiting: against the recording fake target."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from deploymate.deployments import engine
from deploymate.runtime.health import SAME_ANSWER_STOPS, HealthCheck
from tests.support.fake_target import REFUSED, FakeTarget
from tests.unit.test_engine import plan


def _first_release(target: FakeTarget, image: str, **health: Any) -> engine.Outcome:
    check = HealthCheck(**{"interval": 0, "timeout": 0.5, **health})
    chosen = dataclasses.replace(plan(image, release=1), health=check)

    async def log(line: str) -> None:
        pass

    return asyncio.run(engine.deploy(target, chosen, None, log))


def test_a_path_answering_404_every_time_stops_early_and_says_what_to_change() -> None:
    target = FakeTarget(health={"missing-path": 404})
    outcome = _first_release(target, "missing-path", path="/healthz", retries=30)
    assert not outcome.ok
    assert (
        f"HTTP 404 on /healthz {SAME_ANSWER_STOPS} times in a row (expected 200)" in outcome.detail
    )
    assert "Change the health check's path or expected status" in outcome.detail
    assert target.probes == SAME_ANSWER_STOPS  # not 30


def test_a_503_while_warming_up_is_waited_out_to_the_last_retry() -> None:
    target = FakeTarget(health={"warming": 503})
    outcome = _first_release(target, "warming", retries=6)
    assert not outcome.ok and target.probes == 6
    assert "unhealthy after 6 attempts: HTTP 503 on /, expected 200" in outcome.detail


def test_nothing_listening_asks_whether_the_app_listens_on_the_internal_port() -> None:
    target = FakeTarget(health={"elsewhere": REFUSED})
    outcome = _first_release(target, "elsewhere", retries=4)
    assert not outcome.ok and outcome.detail.startswith(
        "the container answered on no port; is the app listening on port 80 inside the container?"
    )


def test_an_exited_container_ends_the_wait_with_its_status() -> None:
    target = FakeTarget(health={"crash": None})
    outcome = _first_release(target, "crash", retries=30)
    assert not outcome.ok and "the container exited with status 3 at once" in outcome.detail
