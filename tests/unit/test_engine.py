"""The release engine against a recording fake target: every branch, no host (item 7)."""

from __future__ import annotations

import asyncio

import pytest

from deploymate.deployments import engine, recovery
from deploymate.runtime import docker
from deploymate.runtime.health import HealthCheck
from tests.support.fake_target import FakeTarget

GOOD, BAD, CRASH = "good", "bad", "crash"


def plan(image: str = GOOD, release: int = 2) -> engine.Plan:
    return engine.Plan(
        deployment_id=7,
        deployment_name="web",
        release_id=release,
        container_name=f"dm-web-r{release}",
        image_id=image,
        env={"SECRET_TOKEN": "never-on-the-command-line"},
        internal_port=80,
        external_port=8080,
        command=None,
        restart_policy="unless-stopped",
        memory=None,
        cpus=None,
        labels={"team": "core"},
        health=HealthCheck(interval=0, timeout=0.5, retries=3),
    )


def deploy(target: FakeTarget, the_plan: engine.Plan, previous: str | None) -> engine.Outcome:
    lines: list[str] = []

    async def log(line: str) -> None:
        lines.append(line)

    outcome = asyncio.run(engine.deploy(target, the_plan, previous, log))
    outcome.log = lines  # type: ignore[attr-defined]
    return outcome


def test_a_first_release_starts_on_the_public_port_once_healthy() -> None:
    target = FakeTarget(health={GOOD: 200})
    outcome = deploy(target, plan(), None)
    assert outcome.ok and outcome.detail == "HTTP 200 on /"
    assert set(target.containers) == {"dm-web-r2"}
    serving = target.containers["dm-web-r2"]
    assert serving.published == "8080:80" and serving.labels[docker.LABEL_ROLE] == "serving"
    assert serving.labels[docker.LABEL_DEPLOYMENT] == "7" and serving.labels["team"] == "core"
    assert not any("never-on-the-command-line" in " ".join(c) for c in target.commands)


def test_an_unhealthy_candidate_is_removed_and_the_old_one_never_stops() -> None:
    target = FakeTarget(health={GOOD: 200, BAD: 500})
    target.add("dm-web-r1", GOOD)
    outcome = deploy(target, plan(BAD), "dm-web-r1")
    assert not outcome.ok and "HTTP 500" in outcome.detail and "unhealthy after 3" in outcome.detail
    assert set(target.containers) == {"dm-web-r1"} and target.containers["dm-web-r1"].running
    assert "stop dm-web-r1" not in target.verbs()
    assert target.verbs()[-2:] == ["logs dm-web-r2-candidate", "rm dm-web-r2-candidate"]
    assert any("| dm-web-r2-candidate says hello" in line for line in outcome.log)  # type: ignore[attr-defined]


def test_a_candidate_that_exits_at_once_is_reported_and_removed() -> None:
    target = FakeTarget(health={GOOD: 200, CRASH: None})
    target.add("dm-web-r1", GOOD)
    outcome = deploy(target, plan(CRASH), "dm-web-r1")
    assert not outcome.ok and "the container exited with status 3 at once" in outcome.detail
    assert set(target.containers) == {"dm-web-r1"} and target.containers["dm-web-r1"].running


def test_a_healthy_candidate_takes_the_port_and_the_old_container_goes() -> None:
    target = FakeTarget(health={GOOD: 200})
    target.add("dm-web-r1", GOOD)
    outcome = deploy(target, plan(), "dm-web-r1")
    assert outcome.ok and outcome.gap_seconds is not None
    assert set(target.containers) == {"dm-web-r2"}
    assert target.containers["dm-web-r2"].published == "8080:80"
    verbs = target.verbs()
    assert verbs.index("rm dm-web-r2-candidate") < verbs.index("stop dm-web-r1")
    assert (
        verbs.index("stop dm-web-r1") < verbs.index("run dm-web-r2") < verbs.index("rm dm-web-r1")
    )


def test_a_switch_that_fails_restarts_the_old_container() -> None:
    target = FakeTarget(health={GOOD: 200}, fail_run={"dm-web-r2"})
    target.add("dm-web-r1", GOOD)
    outcome = deploy(target, plan(), "dm-web-r1")
    assert not outcome.ok and "after the switch" in outcome.detail
    assert target.containers["dm-web-r1"].running  # serving again
    assert "dm-web-r2" not in target.containers
    assert target.verbs()[-1] == "start dm-web-r1"


def test_a_new_container_unhealthy_after_the_switch_is_undone() -> None:
    target = FakeTarget(health={GOOD: 200})
    target.add("dm-web-r1", GOOD)

    def flaky_after_switch(argv: tuple[str, ...], command: object) -> tuple[int, str, str]:
        status = FakeTarget._run(target, argv, command)  # type: ignore[arg-type]
        name = argv[argv.index("--name") + 1]
        if name == "dm-web-r2":  # the final container answers 503 where the candidate said 200
            target.containers[name].image = "flaky"
            target.health["flaky"] = 503
        return status

    target._run = flaky_after_switch  # type: ignore[method-assign]
    outcome = deploy(target, plan(), "dm-web-r1")
    assert not outcome.ok and "HTTP 503" in outcome.detail
    assert set(target.containers) == {"dm-web-r1"} and target.containers["dm-web-r1"].running


def test_a_stopped_previous_container_is_replaced_directly() -> None:
    target = FakeTarget(health={GOOD: 200})
    target.add("dm-web-r1", GOOD, running=False)
    outcome = deploy(target, plan(), "dm-web-r1")
    assert outcome.ok and set(target.containers) == {"dm-web-r2"}
    assert not any(v.endswith("-candidate") for v in target.verbs())


def test_a_leftover_of_an_interrupted_attempt_is_removed_when_the_start_meets_it() -> None:
    target = FakeTarget(health={GOOD: 200})
    target.add("dm-web-r2", GOOD)  # the same release's container, left by a killed job
    outcome = deploy(target, plan(), None)
    assert outcome.ok
    # No `rm -f` on the critical path of every start: only when the name is taken.
    assert target.verbs()[:3] == ["run dm-web-r2", "rm dm-web-r2", "run dm-web-r2"]


def test_an_interrupted_deploy_stops_where_it_is() -> None:
    """Cancelled mid-health-check (the control host stops): nothing more is run; the job's
    reconciliation (deployments/jobs.py) later settles what the target holds."""
    target = FakeTarget(health={GOOD: 200})
    target.add("dm-web-r1", GOOD)
    started = asyncio.Event()

    async def scenario() -> None:
        async def log(line: str) -> None:
            if line.startswith("starting dm-web-r2-candidate"):
                started.set()
                await asyncio.sleep(10)

        task = asyncio.create_task(engine.deploy(target, plan(), "dm-web-r1", log))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert target.containers["dm-web-r1"].running and "stop dm-web-r1" not in target.verbs()


def row(
    name: str, release: int, state: str = "running", role: str = "serving"
) -> dict[str, object]:
    labels = {docker.LABEL_RELEASE: str(release), docker.LABEL_ROLE: role}
    return {"id": name, "name": name, "state": state, "labels": labels}


def settle(
    rows: list[dict[str, object]], kind: str = "deploy", **ids: int | None
) -> recovery.Settlement:
    return recovery.settle(
        rows,
        current_id=ids.get("current"),
        inflight_id=ids.get("inflight"),
        inflight_number=ids.get("inflight"),
        job_kind=kind,
        deleted=False,
    )


def test_interrupted_before_the_switch_the_old_release_keeps_serving() -> None:
    plan = settle(
        [row("r1", 1), row("r2-candidate", 2, role="candidate"), row("r2", 2, state="created")],
        current=1,
        inflight=2,
    )
    assert plan.remove == ["r2-candidate", "r2"] and plan.serving_id == 1
    assert plan.inflight_status == "failed" and plan.restore_serving_config
    assert plan.status == "running" and plan.start is None


def test_interrupted_after_the_switch_the_new_release_is_adopted() -> None:
    plan = settle([row("r2", 2)], current=1, inflight=2)
    assert plan.serving_id == 2 and plan.inflight_status == "succeeded" and plan.remove == []
    assert plan.status == "running"


def test_interrupted_mid_switch_the_stopped_old_container_is_started_again() -> None:
    plan = settle([row("r1", 1, state="exited")], current=1, inflight=2)
    assert plan.inflight_status == "failed" and plan.start == "r1" and plan.status == "running"


def test_a_stop_that_was_interrupted_leaves_the_container_stopped() -> None:
    plan = settle([row("r1", 1, state="exited")], kind="stop", current=1)
    assert plan.start is None and plan.status == "stopped"


def test_nothing_left_on_the_target_means_nothing_serves() -> None:
    plan = settle([], current=1, inflight=2)
    assert plan.serving_id is None and plan.status == "failed"
    assert "no container of the serving release" in (plan.status_message or "")


def test_interrupted_while_draining_the_old_release_is_removed() -> None:
    """The new release was recorded; the process died before the old container went."""
    plan = settle([row("r1", 1), row("r2", 2)], current=2, inflight=2)
    assert plan.serving_id == 2 and plan.remove == ["r1"] and plan.status == "running"
    assert "removed r1 (no longer serving)" in plan.notes


def test_what_serves_restarts_after_a_crash_even_behind_the_proxy() -> None:
    """A release behind the proxy has no public port, but it serves: a host reboot or a
    restart of Docker must bring it back. A candidate is only ever checked, never restarted."""
    the_plan = plan()
    behind_proxy = the_plan.spec(docker.ROLE_SERVING, publish=False)
    assert behind_proxy.restart_policy == "unless-stopped" and behind_proxy.external_port is None
    assert the_plan.spec(docker.ROLE_SERVING, publish=True).restart_policy == "unless-stopped"
    assert the_plan.spec(docker.ROLE_CANDIDATE, publish=False).restart_policy == "no"
