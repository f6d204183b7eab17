"""Continuous monitoring's rules, host-free: a check's state now against the stored one (a change
or not), the states a target's answers make, and the sentences a change announces."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from deploymate.monitoring import checks
from deploymate.monitoring.service import (
    DEPLOYMENT,
    EVENT_NAMES,
    OK,
    SERVER,
    Change,
    Known,
    Seen,
    Subject,
    change,
    duration,
    message,
    since_text,
)
from deploymate.notifications.service import EVENTS, SUBSCRIBABLE
from deploymate.runtime.docker import ContainerState
from deploymate.runtime.errors import CommandFailed, CommandTimeout, RuntimeFailure, Unreachable
from deploymate.runtime.executor import ByteSource, Command, LineHandler, Result, finish
from deploymate.runtime.health import HealthCheck, Probe
from tests.support.fake_target import FakeTarget

T0 = datetime(2026, 12, 2, 8, 41, tzinfo=UTC)


def known(state: str, **facts: Any) -> Known:
    return Known(state, T0, "", facts)


# --- the transition -----------------------------------------------------------------------------


def test_the_first_healthy_look_is_stored_silently() -> None:
    assert change(SERVER, None, Seen("reachability", OK, "SSH answers")) is None
    assert change(DEPLOYMENT, None, Seen("container", OK, "running")) is None


def test_the_first_look_at_a_problem_is_a_change() -> None:
    found = change(SERVER, None, Seen("reachability", "unreachable", "refused"))
    assert found == Change(SERVER, "reachability", None, "unreachable", "refused")
    assert found.event == "server.unreachable"


def test_the_same_state_again_is_no_change_whatever_its_detail() -> None:
    assert change(SERVER, known("unreachable"), Seen("reachability", "unreachable", "x")) is None
    assert change(SERVER, known("full"), Seen("disk", "full", "93% used")) is None
    assert change(SERVER, known(OK), Seen("disk", OK, "12% used")) is None


def test_a_problem_and_its_end_are_two_changes_each_with_its_event() -> None:
    down = change(DEPLOYMENT, known(OK), Seen("container", "exited", "exit 137"))
    assert down is not None and down.event == "deployment.exited" and down.previous == OK
    back = change(DEPLOYMENT, known("exited"), Seen("container", OK, "running"))
    assert back is not None and back.event == "deployment.recovered"
    assert back.previous == "exited" and back.was_since == T0


@pytest.mark.parametrize(
    ("kind", "check", "state", "event"),
    [
        (SERVER, "reachability", "unreachable", "server.unreachable"),
        (SERVER, "docker", "down", "server.docker_down"),
        (SERVER, "disk", "full", "server.disk_full"),
        (SERVER, "proxy", "down", "server.proxy_down"),
        (SERVER, "disk", OK, "server.recovered"),
        (DEPLOYMENT, "container", "exited", "deployment.exited"),
        (DEPLOYMENT, "container", "restarting", "deployment.restarting"),
        (DEPLOYMENT, "container", "unhealthy", "deployment.unhealthy"),
        (DEPLOYMENT, "container", OK, "deployment.recovered"),
    ],
)
def test_each_change_names_its_event(kind: str, check: str, state: str, event: str) -> None:
    assert Change(kind, check, "x", state, "").event == event


def test_one_problem_turning_into_another_announces_the_new_one() -> None:
    found = change(DEPLOYMENT, known("exited"), Seen("container", "restarting", "3 times"))
    assert found is not None and found.event == "deployment.restarting"


def test_every_monitoring_event_reaches_notifications_and_webhooks() -> None:
    for name in EVENT_NAMES:
        assert name in EVENTS and name in SUBSCRIBABLE


# --- the sentences ------------------------------------------------------------------------------


def test_since_and_how_long() -> None:
    assert duration(12) == "12 s"
    assert duration(12 * 60 + 5) == "12 min"
    assert duration(3 * 3600 + 5 * 60) == "3 h 5 min"
    assert duration(50 * 3600) == "2 d 2 h"
    assert since_text(T0, T0 + timedelta(minutes=12)) == "08:41 UTC (12 min)"
    assert since_text(T0, T0 + timedelta(days=1)) == "2026-12-02 08:41 UTC (1 d)"


def test_what_a_change_says() -> None:
    server = Subject(SERVER, 1, "web-1", owner_id=7)
    down = Change(SERVER, "reachability", OK, "unreachable", "198.18.0.2:22 is not reachable")
    assert message(server, down, T0) == (
        "Server web-1: unreachable: 198.18.0.2:22 is not reachable"
    )
    back = Change(SERVER, "reachability", "unreachable", OK, "SSH answers", T0)
    assert message(server, back, T0 + timedelta(minutes=12)) == (
        "Server web-1: reachable again (was unreachable since 08:41 UTC, for 12 min): SSH answers"
    )
    dep = Subject(DEPLOYMENT, 3, "api on web-1")
    assert dep.link == "/deployments/3" and server.link == "/app/server-review"
    gone = Change(
        DEPLOYMENT, "container", OK, "exited", "the container dm-api-r1 exited (exit code 137)"
    )
    assert message(dep, gone, T0) == (
        "api on web-1: not running: the container dm-api-r1 exited (exit code 137)"
    )


# --- what a target's answers make ---------------------------------------------------------------


def container(**overrides: Any) -> ContainerState:
    values: dict[str, Any] = {
        "id": "c1",
        "name": "dm-api-r1",
        "image_id": "sha256:x",
        "status": "running",
        "running": True,
        "exit_code": 0,
        "oom_killed": False,
        "restart_count": 0,
        "started_at": "",
        "pid": 10,
        "ip_address": "172.18.0.3",
        "labels": {},
        "config_env": [],
        "ports": {},
        "health_log": [],
    }
    values.update(overrides)
    return ContainerState(**values)


def test_a_running_container_that_answers_is_ok_and_its_restarts_are_kept() -> None:
    seen = checks.judge_container("dm-api-r1", container(), check=Probe(True, "HTTP 200 on /"))
    assert seen.state == OK and seen.detail == "running; HTTP 200 on /"
    assert seen.facts == {"container": "dm-api-r1", "restarts": 0}


def test_an_exited_or_missing_container_is_exited() -> None:
    seen = checks.judge_container(
        "dm-api-r1", container(status="exited", running=False, exit_code=137)
    )
    assert seen.state == "exited"
    assert seen.detail == "the container dm-api-r1 exited (exit code 137)"
    oom = checks.judge_container(
        "dm-api-r1", container(status="exited", running=False, exit_code=137, oom_killed=True)
    )
    assert "out of memory" in oom.detail
    assert checks.judge_container("dm-api-r1", None).detail == "the container dm-api-r1 is gone"


def test_restarts_between_two_checks_are_a_restart_loop() -> None:
    before = {"container": "dm-api-r1", "restarts": 2}
    seen = checks.judge_container("dm-api-r1", container(restart_count=5), before=before)
    assert seen.state == "restarting" and "restarted 3 times since the last check" in seen.detail
    steady = checks.judge_container("dm-api-r1", container(restart_count=5), before=seen.facts)
    assert steady.state == OK
    # A new release's container starts its own count.
    other = {"container": "dm-api-r0", "restarts": 0}
    assert checks.judge_container("dm-api-r1", container(restart_count=5), before=other).ok
    docker_says = checks.judge_container(
        "dm-api-r1", container(status="restarting", running=False, exit_code=1)
    )
    assert docker_says.state == "restarting"


def test_unhealthy_by_dockers_check_or_by_ours() -> None:
    log = [{"ExitCode": 1, "Output": "curl: (7) connection refused\n"}]
    seen = checks.judge_container("c", container(health_log=log), docker_health="unhealthy")
    assert seen.state == "unhealthy" and "connection refused" in seen.detail
    ours = checks.judge_container(
        "c", container(), check=Probe(False, "HTTP 500 on /up, expected 200", "status", 500)
    )
    assert (
        ours.state == "unhealthy" and ours.detail == "health check: HTTP 500 on /up, expected 200"
    )


def test_disk_full_above_the_limit_and_until_well_below_it() -> None:
    gib = 1024**3
    assert checks.judge_disk(50 * gib, 100 * gib, "/var/lib/docker").state == OK
    full = checks.judge_disk(5 * gib, 100 * gib, "/var/lib/docker")
    assert full.state == "full"
    assert full.detail == "95% used on /var/lib/docker (5.0 GiB free of 100.0 GiB)"
    assert checks.judge_disk(11 * gib, 100 * gib, "/").state == OK
    assert checks.judge_disk(11 * gib, 100 * gib, "/", was_full=True).state == "full"
    assert checks.judge_disk(13 * gib, 100 * gib, "/", was_full=True).state == OK


def test_a_deployment_probed_on_the_fake_target() -> None:
    target = FakeTarget(health={"web:1": 200, "broken:1": 500})
    target.add("dm-web-r1", "web:1")
    target.add("dm-broken-r1", "broken:1")
    target.add("dm-gone-r1", "web:1", running=False)
    check = HealthCheck(interval=0, timeout=0.5)

    def probe(name: str) -> Seen | None:
        return asyncio.run(checks.probe_deployment(target, container=name, port=80, health=check))

    ok = probe("dm-web-r1")
    assert ok is not None and ok.state == OK and ok.detail == "running; HTTP 200 on /"
    sick = probe("dm-broken-r1")
    assert sick is not None and sick.state == "unhealthy"
    assert target.probes == 1 + checks.HEALTH_ATTEMPTS  # one bad answer is not unhealthy yet
    stopped = probe("dm-gone-r1")
    assert stopped is not None and stopped.state == "exited"
    missing = probe("dm-never-r1")
    assert missing is not None and missing.detail == "the container dm-never-r1 is gone"


class Scripted:
    """An executor answering each program (by its first two arguments) from a script."""

    def __init__(self, answers: dict[tuple[str, ...], Any]) -> None:
        self.answers = answers
        self.commands: list[tuple[str, ...]] = []

    async def run(
        self, command: Command, on_line: LineHandler | None = None, source: ByteSource | None = None
    ) -> Result:
        self.commands.append(command.argv)
        answer = self.answers[command.argv[:2]]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, stdout = answer
        return finish(command, status, stdout, "")

    async def open_connection(self, host: str, port: int) -> tuple[Any, Any]:
        raise ConnectionRefusedError

    async def open_unix_connection(self, path: str) -> tuple[Any, Any]:
        raise ConnectionRefusedError


VERSION = (0, '{"Server": {"Version": "26.1.5", "ApiVersion": "1.45"}}')
DF = (0, "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 1000 950 50 95% /\n")


def test_a_server_probed_in_one_connection_reads_reachability_docker_and_disk() -> None:
    target = Scripted(
        {("docker", "version"): VERSION, ("docker", "info"): (0, "/d\n"), ("df", "-P"): DF}
    )
    seen = asyncio.run(checks.probe_server(target, proxy_needed=False))
    assert [(s.check, s.state) for s in seen] == [
        ("reachability", OK),
        ("docker", OK),
        ("disk", "full"),
    ]
    assert seen[1].detail == "Docker 26.1.5"


def test_a_server_that_does_not_answer_is_unreachable_and_nothing_else() -> None:
    refused = Unreachable("198.18.0.2:22 is not reachable: refused", step="reachability")
    seen = asyncio.run(
        checks.probe_server(Scripted({("docker", "version"): refused}), proxy_needed=True)
    )
    assert [(s.check, s.state) for s in seen] == [("reachability", "unreachable")]


def test_docker_not_answering_is_docker_down_and_a_hung_connection_is_tried_afresh() -> None:
    down = CommandFailed("docker", 1, "Cannot connect to the Docker daemon")
    seen = asyncio.run(
        checks.probe_server(Scripted({("docker", "version"): down}), proxy_needed=False)
    )
    assert [(s.check, s.state) for s in seen] == [("reachability", OK), ("docker", "down")]
    resets: list[bool] = []
    hung = Scripted(
        {
            ("docker", "version"): [
                CommandTimeout("docker", 20),
                Unreachable("198.18.0.2:22 is not reachable", step="reachability"),
            ]
        }
    )
    seen = asyncio.run(
        checks.probe_server(hung, proxy_needed=False, reset=lambda: resets.append(True))
    )
    assert resets == [True] and [(s.check, s.state) for s in seen] == [
        ("reachability", "unreachable")
    ]
    # A connection an sshd restart dropped under a command: the fresh one answers.
    lost = RuntimeFailure("SSH connection to 198.18.0.2 lost", step="transport")
    dropped = Scripted(
        {
            ("docker", "version"): [lost, VERSION],
            ("docker", "info"): (0, "/d\n"),
            ("df", "-P"): (0, "F B U A C M\n/dev/x 1000 100 900 10% /\n"),
        }
    )
    seen = asyncio.run(
        checks.probe_server(dropped, proxy_needed=False, reset=lambda: resets.append(True))
    )
    assert [s.state for s in seen] == [OK, OK, OK] and len(resets) == 2


def test_a_server_with_domains_needs_its_proxy_running() -> None:
    absent = (1, "[]")
    target = Scripted(
        {
            ("docker", "version"): VERSION,
            ("docker", "info"): (0, "/d\n"),
            ("df", "-P"): (0, "F B U A C M\n/dev/x 1000 100 900 10% /\n"),
            ("docker", "container"): absent,
        }
    )
    seen = asyncio.run(checks.probe_server(target, proxy_needed=True))
    assert (seen[-1].check, seen[-1].state) == ("proxy", "down")
    assert seen[-1].detail == "not installed; deployments with domains do not answer"
