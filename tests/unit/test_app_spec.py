# ruff: noqa: E501  (the expected messages are kept whole, as a user reads them)
"""The app spec (deploymate.yaml): each bad spec is refused with its line, column and a message
that says what was expected; limits keep hostile input cheap. No server, no instance."""

from __future__ import annotations

import json

import pytest

from deploymate.apps import spec
from deploymate.apps.schema import APP_SPEC

BASE = """app: shop
services:
  web:
    image: registry.example.com/shop:1.4
    port: 8000
    health: {path: /up}
    domains: [shop.example.com]
  worker:
    image: registry.example.com/shop:1.4
    command: [python, -m, shop.worker]
env: {LOG_LEVEL: info}
secrets: [DATABASE_URL]
required_env: [DATABASE_URL]
environments:
  staging:
    servers: [staging-1]
  production:
    servers: [prod-1, prod-2]
    rollout: canary
"""

# (case, text replaced in BASE (None: the whole file), replacement, every problem as printed)
BAD: list[tuple[str, str | None, str, list[str]]] = [
    (
        "port not an integer",
        "port: 8000",
        "port: 80a",
        ['deploymate.yaml:5:11: services.web.port: expected an integer 1-65535, got "80a"'],
    ),
    (
        "port out of range",
        "port: 8000",
        "port: 70000",
        ["deploymate.yaml:5:11: services.web.port: expected an integer 1-65535, got 70000"],
    ),
    (
        "unknown service key",
        "    command: [python",
        "    comand: [python",
        ["deploymate.yaml:10:5: services.worker.comand: unknown key; did you mean command?"],
    ),
    (
        "unknown top key",
        "env: {LOG",
        "enviroment: {LOG",
        ["deploymate.yaml:11:1: enviroment: unknown key; did you mean environments?"],
    ),
    (
        "app name not a dns label",
        "app: shop",
        "app: Shop_App",
        [
            'deploymate.yaml:1:6: app: expected a name of lower-case letters, digits and inner hyphens, at most 40 characters, got "Shop_App"'
        ],
    ),
    (
        "service name not a dns label",
        "  worker:",
        "  Worker_1:",
        [
            "deploymate.yaml:8:3: services.Worker_1: not a valid name; expected a name of lower-case letters, digits and inner hyphens, at most 40 characters"
        ],
    ),
    (
        "environment name not a dns label",
        "  staging:",
        "  Staging:",
        [
            "deploymate.yaml:15:3: environments.Staging: not a valid name; expected a name of lower-case letters, digits and inner hyphens, at most 40 characters"
        ],
    ),
    (
        "missing image and build",
        "    image: registry.example.com/shop:1.4\n    command",
        "    command",
        ["deploymate.yaml:9:5: services.worker: expected a service with either `image` or `build`"],
    ),
    (
        "image with an option",
        "    image: registry.example.com/shop:1.4\n    port",
        "    image: --privileged\n    port",
        [
            'deploymate.yaml:4:12: services.web.image: expected an image reference like registry.example.com/team/app:1.2, got "--privileged"'
        ],
    ),
    (
        "environment without servers",
        "    servers: [staging-1]\n",
        "    rollout: all\n",
        ["deploymate.yaml:16:5: environments.staging: missing servers"],
    ),
    (
        "environment with empty servers",
        "servers: [staging-1]",
        "servers: []",
        ["deploymate.yaml:16:14: environments.staging.servers: expected at least 1"],
    ),
    (
        "rollout unknown",
        "rollout: canary",
        "rollout: blue-green",
        [
            'deploymate.yaml:19:14: environments.production.rollout: expected one of all, canary, got "blue-green"'
        ],
    ),
    (
        "domain with a port",
        "domains: [shop.example.com]",
        "domains: [shop.example.com:8443]",
        [
            'deploymate.yaml:7:15: services.web.domains[0]: expected a lower-case host name like shop.example.com (no scheme, port, path or *), got "shop.example.com:8443"'
        ],
    ),
    (
        "domain wildcard",
        "domains: [shop.example.com]",
        "domains: ['*.example.com']",
        [
            'deploymate.yaml:7:15: services.web.domains[0]: expected a lower-case host name like shop.example.com (no scheme, port, path or *), got "*.example.com"'
        ],
    ),
    (
        "health path without slash",
        "health: {path: /up}",
        "health: {path: up}",
        [
            'deploymate.yaml:6:20: services.web.health.path: expected a path starting with / without spaces or quotes, got "up"'
        ],
    ),
    (
        "health type unknown",
        "health: {path: /up}",
        "health: {type: udp}",
        ['deploymate.yaml:6:20: services.web.health.type: expected one of http, tcp, got "udp"'],
    ),
    (
        "env value a number",
        "LOG_LEVEL: info",
        "LOG_LEVEL: 3",
        [
            'deploymate.yaml:11:18: env.LOG_LEVEL: expected a string on one line (quote numbers and booleans: "8000", "true"), got 3'
        ],
    ),
    (
        "env name invalid",
        "LOG_LEVEL: info",
        "1LOG: info",
        [
            "deploymate.yaml:11:7: env.1LOG: not a valid name; expected a variable name (letters, digits and _, not starting with a digit)"
        ],
    ),
    (
        "secret with a plain value",
        "LOG_LEVEL: info",
        "LOG_LEVEL: info, DATABASE_URL: postgres://x",
        [
            "deploymate.yaml:11:24: env.DATABASE_URL: DATABASE_URL is a secret; its value lives in DeployMate, not in the file"
        ],
    ),
    (
        "required env nobody provides",
        "required_env: [DATABASE_URL]",
        "required_env: [DATABASE_URL, API_KEY]",
        [
            "deploymate.yaml:13:30: required_env[1]: API_KEY is required but production, staging do not provide it; add it to env, to secrets, or to the environment's env"
        ],
    ),
    (
        "domain on a tcp health check",
        "health: {path: /up}",
        "health: {type: tcp}",
        [
            "deploymate.yaml:7:14: services.web.domains: web has domains but a tcp health check; a service behind a domain needs an HTTP health check"
        ],
    ),
    (
        "two services with one domain",
        "    command: [python, -m, shop.worker]",
        "    command: [python, -m, shop.worker]\n    port: 9000\n    domains: [shop.example.com]",
        [
            "deploymate.yaml:12:14: services.worker.domains: shop.example.com is also a domain of web; a host name routes to one service"
        ],
    ),
    (
        "domains without a port",
        "    port: 8000\n",
        "",
        ["deploymate.yaml:3:3: services.web: web has domains, so it needs a port"],
    ),
    (
        "environment of unknown kind",
        "  staging:",
        "  qa:",
        [
            "deploymate.yaml:15:3: environments.qa: say which kind of environment this is: kind: preview, staging or production"
        ],
    ),
    (
        "override for an unknown service",
        "    rollout: canary",
        "    rollout: canary\n    domains: {wbe: [www.example.com]}",
        [
            "deploymate.yaml:20:15: environments.production.domains.wbe: no service named wbe; did you mean web?"
        ],
    ),
    (
        "volume path relative",
        "    domains: [shop.example.com]",
        "    domains: [shop.example.com]\n    volumes: [{name: data, path: data}]",
        [
            'deploymate.yaml:8:34: services.web.volumes[0].path: expected an absolute path other than / (no commas, colons, = or ..), got "data"'
        ],
    ),
    (
        "smoke both kinds",
        "    domains: [shop.example.com]",
        "    domains: [shop.example.com]\n    smoke: [{http: /up, command: [test]}]",
        [
            "deploymate.yaml:8:13: services.web.smoke[0]: expected either `http: /path` or `command: [...]`"
        ],
    ),
    (
        "command not a list",
        "command: [python, -m, shop.worker]",
        "command: python -m shop.worker",
        [
            'deploymate.yaml:10:14: services.worker.command: expected a list of strings, like [python, -m, shop.worker], got "python -m shop.worker"'
        ],
    ),
    (
        "duplicate key",
        "    port: 8000\n",
        "    port: 8000\n    port: 8001\n",
        ["deploymate.yaml:6:5: duplicate key port: give it once"],
    ),
    (
        "tab indentation",
        "    port: 8000",
        "\tport: 8000",
        ["deploymate.yaml:5:1: not valid YAML: a tab character; YAML indents with spaces only"],
    ),
    (
        "not a mapping",
        None,
        "- just\n- a list\n",
        ["deploymate.yaml:1:1: expected a mapping (app:, services:, ...), got a list"],
    ),
    (
        "drift for an unknown service",
        "environments:",
        "drift: {command: [check], service: api}\nenvironments:",
        ["deploymate.yaml:14:36: drift.service: no service named api"],
    ),
    (
        "more than one replica per server",
        "    rollout: canary",
        "    rollout: canary\n    replicas: {web: 3}",
        [
            "deploymate.yaml:20:21: environments.production.replicas.web: one container per service per server for now: list more servers under servers: to run more copies"
        ],
    ),
    (
        "build context above the repository",
        "    image: registry.example.com/shop:1.4\n    port: 8000",
        "    build: {context: ../other}\n    port: 8000",
        [
            "deploymate.yaml:4:22: services.web.build.context: must stay inside the repository: a relative path without ../ above its root"
        ],
    ),
    (
        "secret given as a build arg",
        "    image: registry.example.com/shop:1.4\n    port: 8000",
        "    build: {context: ., args: {DATABASE_URL: x}}\n    port: 8000",
        [
            "deploymate.yaml:4:32: services.web.build.args.DATABASE_URL: DATABASE_URL is a secret: build args stay in the image's history; list it under build.secrets (a BuildKit secret) instead"
        ],
    ),
    (
        "preview ttl of 0",
        "    rollout: canary\n",
        "    rollout: canary\npreview: {ttl_hours: 0}\n",
        [
            "deploymate.yaml:20:22: preview.ttl_hours: expected a number of hours from 1 to 2160 (90 days), got 0"
        ],
    ),
    (
        "preview ttl over 90 days",
        "    rollout: canary\n",
        "    rollout: canary\npreview: {ttl_hours: 2161}\n",
        [
            "deploymate.yaml:20:22: preview.ttl_hours: expected a number of hours from 1 to 2160 (90 days), got 2161"
        ],
    ),
    (
        "drain negative",
        "    port: 8000",
        "    port: 8000\n    drain: -1",
        ["deploymate.yaml:6:12: services.web.drain: expected a number from 0 to 3600, got -1"],
    ),
]


def test_the_example_of_the_issue_is_valid() -> None:
    found = spec.load(BASE)
    assert found.name == "shop" and found.kind_of("production") == "production"
    assert set(found.data["services"]) == {"web", "worker"}


@pytest.mark.parametrize(("case", "old", "new", "expected"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_spec_names_each_problem_where_it_is(
    case: str, old: str | None, new: str, expected: list[str]
) -> None:
    assert old is None or old in BASE, case
    text = new if old is None else BASE.replace(old, new, 1)
    with pytest.raises(spec.SpecInvalid) as refused:
        spec.load(text)
    assert [p.render("deploymate.yaml") for p in refused.value.problems] == expected


def test_the_table_is_large_enough() -> None:
    assert len(BAD) >= 25


def test_anchors_that_expand_too_far_are_refused_without_expanding_them() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
    with pytest.raises(spec.SpecInvalid, match=f"expand to more than {spec.MAX_NODES} values"):
        spec.load(bomb)


def test_a_file_over_one_mib_is_refused() -> None:
    with pytest.raises(spec.SpecInvalid, match="larger than 1048576 bytes"):
        spec.load(BASE + "#" * spec.MAX_BYTES)


@pytest.mark.parametrize("text", ["", "just text\n", "42\n", "null\n"])
def test_anything_but_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(spec.SpecInvalid, match="expected a mapping"):
        spec.load(text)


def test_json_is_yaml_too_with_positions() -> None:
    data = spec.load(BASE).data
    as_json = json.dumps(data, indent=2).replace('"port": 8000', '"port": "80a"')
    with pytest.raises(spec.SpecInvalid) as refused:
        spec.load(as_json, filename="spec.json")
    (problem,) = refused.value.problems
    assert problem.path == "services.web.port" and problem.line > 1
    assert problem.render("spec.json").startswith(f"spec.json:{problem.line}:")


def test_servers_are_checked_when_the_instance_knows_them() -> None:
    with pytest.raises(spec.SpecInvalid) as refused:
        spec.load(BASE, servers={"staging-1", "prod-1", "web-3"})
    (problem,) = refused.value.problems
    assert problem.path == "environments.production.servers[1]"
    assert "no server named prod-2; did you mean prod-1?" in problem.message
    spec.load(BASE, servers={"staging-1", "prod-1", "prod-2"})


def test_the_kind_of_an_environment_comes_from_its_name_or_is_declared() -> None:
    text = BASE.replace("  staging:\n", "  staging-eu:\n").replace(
        "  production:\n", "  live:\n    kind: production\n"
    )
    found = spec.load(text)
    assert found.kind_of("staging-eu") == "staging" and found.kind_of("live") == "production"


def test_the_published_schema_is_a_json_schema_with_the_contract_keys() -> None:
    assert APP_SPEC["$schema"].endswith("2020-12/schema")
    assert {
        "app",
        "services",
        "env",
        "secrets",
        "required_env",
        "environments",
        "drift",
        "migrations",
        "shared_paths",
        "preview",
    } <= set(APP_SPEC["properties"])
    service = APP_SPEC["properties"]["services"]["additionalProperties"]["properties"]
    assert {
        "image",
        "build",
        "port",
        "command",
        "health",
        "domains",
        "volumes",
        "smoke",
        "paths",
    } <= set(service)
