"""Commands for targets as data (exact argument lists) and the parsers of their output."""

from __future__ import annotations

import json
import shlex

import pytest

from deploymate.runtime import docker, host_facts
from deploymate.runtime.executor import Command

SPEC = docker.ContainerSpec(
    name="dm-web-r3",
    image="sha256:abc",
    labels={"z": "last", "deploymate.role": "serving", "a": "first"},
    env={"TOKEN": "s3cret value", "EMPTY": ""},
    internal_port=80,
    external_port=8080,
    command=["sh", "-c", "echo $HOME; rm -rf /"],
    restart_policy="on-failure",
    memory="256m",
    cpus=0.5,
)


def test_docker_run_is_an_argument_list_and_the_environment_goes_on_stdin() -> None:
    cmd = docker.run(SPEC)
    assert cmd.argv == (
        "docker", "run", "--detach", "--name", "dm-web-r3",
        "--env-file", "/dev/stdin", "--restart", "on-failure",
        "--label", "a=first", "--label", "deploymate.role=serving", "--label", "z=last",
        "--publish", "8080:80", "--memory", "256m", "--cpus", "0.5",
        "sha256:abc", "sh", "-c", "echo $HOME; rm -rf /",
    )  # fmt: skip
    assert cmd.stdin == b"TOKEN=s3cret value\nEMPTY=\n"
    assert "s3cret" not in " ".join(cmd.argv)
    # Over SSH the list becomes one quoted line: the user's command stays arguments.
    assert shlex.split(cmd.shell_line()) == list(cmd.argv)


def test_a_candidate_has_no_public_port_and_no_restart() -> None:
    cmd = docker.run(
        docker.ContainerSpec(name="c", image="i", labels={}, internal_port=80, restart_policy="no")
    )
    assert "--publish" not in cmd.argv and cmd.argv[cmd.argv.index("--restart") + 1] == "no"


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        (
            docker.image_inspect("web:1"),
            ("docker", "image", "inspect", "--format", "{{json .}}", "--", "web:1"),
        ),
        (
            docker.pull("registry.example.com/a:1"),
            ("docker", "pull", "--", "registry.example.com/a:1"),
        ),
        (docker.save("web:1"), ("docker", "save", "--", "web:1")),
        (docker.load(), ("docker", "load")),
        (docker.tag("sha256:1", "web:1"), ("docker", "tag", "sha256:1", "web:1")),
        (
            docker.inspect("-x"),
            ("docker", "container", "inspect", "--format", "{{json .}}", "--", "-x"),
        ),
        (docker.remove("n"), ("docker", "rm", "--force", "--", "n")),
        (docker.stop("n", 5), ("docker", "stop", "--time", "5", "--", "n")),
        (docker.start("n"), ("docker", "start", "--", "n")),
        (docker.restart("n"), ("docker", "restart", "--time", "10", "--", "n")),
        (docker.logs("n", 50), ("docker", "logs", "--tail", "50", "--", "n")),
        (
            docker.logs("n", 5, follow=True),
            ("docker", "logs", "--tail", "5", "--follow", "--", "n"),
        ),
        (
            docker.list_by_labels({"b": "2", "a": "1"}),
            (
                "docker",
                "ps",
                "--all",
                "--no-trunc",
                "--filter",
                "label=a=1",
                "--filter",
                "label=b=2",
                "--format",
                "{{json .}}",
            ),
        ),
        (host_facts.disk_free("/var/lib/docker"), ("df", "-P", "-k", "--", "/var/lib/docker")),
    ],
)
def test_every_builder_gives_its_exact_argument_list(
    command: Command, argv: tuple[str, ...]
) -> None:
    assert command.argv == argv


def test_what_may_fail_quietly_and_what_streams() -> None:
    assert docker.remove("n").check is False and docker.inspect("n").check is False
    assert docker.image_inspect("x").check is False and docker.run(SPEC).check is True
    assert docker.logs("n", 1).merge_stderr and docker.logs("n", 1, follow=True).timeout == 3600


def test_a_command_refuses_nul_bytes_and_emptiness() -> None:
    with pytest.raises(ValueError):
        Command(("docker", "rm", "a\x00b"))
    with pytest.raises(ValueError):
        Command(())


def test_container_inspect_parser() -> None:
    data = {
        "Id": "abc",
        "Name": "/dm-web-r3",
        "Image": "sha256:img",
        "RestartCount": 2,
        "State": {
            "Status": "running",
            "Running": True,
            "ExitCode": 0,
            "OOMKilled": False,
            "StartedAt": "2026-12-01T00:00:00Z",
            "Health": {"Log": [{"ExitCode": 0}] * 7},
        },
        "NetworkSettings": {
            "Networks": {"none": {"IPAddress": ""}, "bridge": {"IPAddress": "172.17.0.5"}},
            "Ports": {"80/tcp": [{"HostPort": "8080"}]},
        },
        "Config": {"Labels": {"deploymate.release": "3"}},
    }
    state = docker.parse_container(json.dumps(data) + "\n")
    assert state is not None
    assert (state.name, state.ip_address, state.running, state.restart_count) == (
        "dm-web-r3", "172.17.0.5", True, 2,
    )  # fmt: skip
    assert state.labels == {"deploymate.release": "3"} and len(state.health_log) == 5
    assert docker.parse_container("[]\n") is None and docker.parse_container("") is None


def test_image_and_ps_parsers() -> None:
    image = docker.parse_image(json.dumps({"Id": "sha256:1", "RepoDigests": None}))
    assert image == docker.ImageInfo(id="sha256:1", repo_digests=[], repo_tags=[])
    assert docker.parse_image("") is None
    line = json.dumps(
        {
            "ID": "1",
            "Names": "dm-web-r1",
            "State": "exited",
            "Labels": "a=1,deploymate.role=serving",
        }
    )
    assert docker.parse_ps(line + "\n\n") == [
        {
            "id": "1",
            "name": "dm-web-r1",
            "state": "exited",
            "labels": {"a": "1", "deploymate.role": "serving"},
        }
    ]


@pytest.mark.parametrize(
    ("ref", "registry"),
    [
        ("nginx:1.27", False),
        ("team/app:1", False),
        ("registry.example.com/app:1", True),
        ("localhost/app", True),
        ("host:5000/app", True),
        ("dm-test/web:v1", False),
    ],
)
def test_which_references_name_a_registry(ref: str, registry: bool) -> None:
    assert docker.names_registry(ref) is registry


def test_host_facts_parsers() -> None:
    version = json.dumps({"Client": {}, "Server": {"Version": "28.2.2", "ApiVersion": "1.50"}})
    assert host_facts.parse_docker_version("warning\n" + version) == ("28.2.2", "1.50")
    meminfo = "MemTotal:       16384 kB\nMemFree:         1024 kB\nMemAvailable:    8192 kB\n"
    assert host_facts.parse_meminfo(meminfo) == (16384 * 1024, 8192 * 1024)
    df = "Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/x 1000 400 600 40% /\n"
    assert host_facts.parse_df(df) == (600 * 1024, 1000 * 1024)
    assert host_facts.parse_loadavg("0.50 0.25 0.10 1/200 999\n") == [0.5, 0.25, 0.1]
    tcp = (
        "  sl  local_address rem_address   st\n"
        "   0: 00000000:1F90 00000000:0000 0A 0\n"  # 8080 listening
        "   1: 0100007F:0016 00000000:0000 0A 0\n"  # 22 listening
        "   2: 0100007F:C350 0100007F:1F90 01 0\n"  # an established connection
        "   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0\n"
    )
    assert host_facts.parse_listening_ports(tcp) == [22, 443, 8080]
    assert host_facts.suggest_ports({8000, 8002}, {8001}, count=3) == [8003, 8004, 8005]
    assert host_facts.suggest_ports(set(), set(), start=21, end=23) == [21, 23]  # 22 reserved


def test_a_failed_pull_says_why_in_words() -> None:
    from deploymate.runtime.images import pull_failure

    ref = "registry.invalid/team/app:1"
    dns = (
        'Error response from daemon: Get "https://registry.invalid/v2/": dial tcp: lookup '
        "registry.invalid on 10.0.0.53:53: no such host"
    )
    assert pull_failure(ref, dns) == (
        "cannot pull registry.invalid/team/app:1: the registry registry.invalid does not "
        "resolve from the target; check the image name, or the target's DNS"
    )
    assert "credentials in DeployMate (Registries) for registry.invalid" in pull_failure(
        ref, "unauthorized: auth"
    )
    assert "no such image or tag" in pull_failure(ref, "manifest unknown: manifest unknown")
    assert "53" not in pull_failure(ref, dns)  # no resolver address, no errno
