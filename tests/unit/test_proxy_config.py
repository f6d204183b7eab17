"""The proxy's configuration as data, and the settings that feed it, validated at the edge."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest
from pydantic import ValidationError

from deploymate.deployments.schemas import Settings
from deploymate.runtime import docker, proxy
from deploymate.runtime.proxy import Route


def _servers(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config["apps"]["http"]["servers"])


def test_routes_go_by_host_name_and_tls_mode() -> None:
    config = proxy.render(
        [
            Route("web", ("shop.test", "www.shop.test"), "dm-web-r3:8000", "internal"),
            Route("api", ("api.test",), "dm-api-r1:80", "off"),
        ]
    )
    servers = _servers(config)
    assert servers["http"]["listen"] == [":80"]
    assert [r["match"][0]["host"] for r in servers["http"]["routes"]] == [["api.test"]]
    assert servers["https"]["routes"][0]["handle"][0]["upstreams"] == [{"dial": "dm-web-r3:8000"}]
    # Every route is also on the unpublished check listener, without TLS.
    assert len(servers["checks"]["routes"]) == 2
    assert servers["checks"]["automatic_https"] == {"disable": True}
    policies = config["apps"]["tls"]["automation"]["policies"]
    assert policies == [
        {"subjects": ["shop.test", "www.shop.test"], "issuers": [{"module": "internal"}]}
    ]
    # The admin API is a Unix socket, never a TCP port; Caddy saves what it is given, to resume
    # from it when Docker restarts it.
    assert config["admin"]["listen"].startswith("unix/")
    assert config["admin"]["config"] == {"persist": True}


def test_no_route_no_https_server() -> None:
    config = proxy.render([])
    assert "https" not in _servers(config) and "tls" not in config["apps"]


def test_the_rendering_does_not_depend_on_the_order_of_the_records() -> None:
    a = Route("a", ("a.test",), "dm-a-r1:80", "off")
    b = Route("b", ("b.test",), "dm-b-r1:80", "off")
    assert proxy.render([a, b]) == proxy.render([b, a])


def test_the_config_travels_as_a_tar_stream_for_docker_cp() -> None:
    config = proxy.render([Route("a", ("a.test",), "dm-a-r1:80", "off")])
    command = proxy.write_config(proxy.CONTAINER, config)
    assert command.argv == ("docker", "cp", "-", f"{proxy.CONTAINER}:{proxy.CONFIG_DIR}")
    with tarfile.open(fileobj=io.BytesIO(command.stdin or b"")) as tar:
        member = tar.extractfile("caddy.json")
        assert member is not None and json.loads(member.read()) == config


def test_the_proxy_runs_caddy_explicitly_publishing_only_80_and_443() -> None:
    argv = proxy.create("registry.test/caddy:2").argv
    assert argv[-5:] == ("caddy", "run", "--config", proxy.CONFIG_FILE, "--resume")
    published = [argv[i + 1] for i, a in enumerate(argv) if a == "--publish"]
    assert published == ["80:80", "443:443"]


def test_mounts_cannot_grow_options() -> None:
    mount = docker.Mount("volume", "dm-web-data", "/data", read_only=True)
    assert mount.option() == "type=volume,source=dm-web-data,target=/data,readonly"


BASE = {"image": "registry.test/app:1", "internal_port": 80}


@pytest.mark.parametrize(
    "domain",
    [
        "*.shop.test",
        "shop.test:8443",
        "shop.test/admin",
        "http://shop.test",
        "sh op.test",
        "-shop.test",
        "a" * 64 + ".test",
        "10.0.0.1",
        "user@shop.test",
        "",
    ],
)
def test_a_bad_domain_is_refused(domain: str) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({**BASE, "domains": [domain]})


def test_domains_are_lower_cased_and_deduplicated() -> None:
    settings = Settings.model_validate({**BASE, "domains": ["Shop.Test", "shop.test."]})
    assert settings.domains == ["shop.test"]


def test_domains_and_a_public_port_exclude_each_other() -> None:
    with pytest.raises(ValidationError, match="leave the external port empty"):
        Settings.model_validate({**BASE, "domains": ["shop.test"], "external_port": 8000})


@pytest.mark.parametrize(
    "volume",
    [
        {"name": "data", "path": "data"},
        {"name": "data", "path": "/"},
        {"name": "data", "path": "/data,readonly=false"},
        {"name": "data", "path": "/a/../etc"},
        {"name": "Data!", "path": "/data"},
        {"name": "data", "source": "/srv", "path": "/data"},
        {"path": "/data"},
    ],
)
def test_a_bad_volume_is_refused(volume: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({**BASE, "volumes": [volume]})


@pytest.mark.parametrize(
    "check",
    [
        {"command": ["sh", "-c", "true\x00rm -rf /"]},
        {"http": "no-slash"},
        {"http": "/ok", "command": ["true"]},
        {},
        {"http": "/ok", "contains": "two\nlines"},
    ],
)
def test_a_bad_smoke_check_is_refused(check: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({**BASE, "smoke": [check]})


@pytest.mark.parametrize("seconds", [-1, 3601])
def test_the_drain_period_is_between_0_and_an_hour(seconds: float) -> None:
    with pytest.raises(ValidationError):
        Settings.model_validate({**BASE, "drain_seconds": seconds})
