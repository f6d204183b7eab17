"""App specs for lab hosts: a web service behind the proxy and a worker, from the dm-test/web
images, on the servers each environment names."""

from __future__ import annotations

import json

import httpx

from tests.support.lab import LabHost

WORKER = ["/bin/sh", "-c", "trap 'exit 0' TERM; echo worker up; while true; do sleep 1; done"]


def app_spec(
    name: str,
    version: str,
    environments: dict[str, dict[str, object]],
    *,
    worker: list[str] = WORKER,
) -> str:
    """deploymate.yaml text; `environments` maps a name to its keys (servers, rollout, env...),
    written as JSON (YAML's flow style)."""
    lines = [
        f"app: {name}",
        "services:",
        "  web:",
        f"    image: dm-test/web:{version}",
        "    port: 80",
        "    health: {path: /version, interval: 0.2, retries: 25}",
        f"    domains: [web.{name}.test]",
        "    tls: off",
        "    drain: 0",
        "    smoke: [{http: /version, expect: 200}]",
        "  worker:",
        f"    image: dm-test/web:{version}",
        f"    command: {json.dumps(worker)}",
        "    drain: 0",
        "environments:",
    ]
    lines += [f"  {env}: {json.dumps(keys)}" for env, keys in environments.items()]
    return "\n".join(lines) + "\n"


def via_proxy(host: LabHost, domain: str) -> str:
    """What the host's proxy answers for `domain` at /version (or why it did not)."""
    try:
        res = httpx.get(f"http://{host.address}/version", headers={"Host": domain}, timeout=3)
    except httpx.HTTPError as exc:
        return f"error {type(exc).__name__}"
    return res.text.strip() if res.status_code == 200 else f"HTTP {res.status_code}"
