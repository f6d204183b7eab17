"""CLI commands that deploy and inspect through a running instance's API (stored token)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table

from deploymate.cli import api_client, config_file
from deploymate.cli.output import FAILED, JsonOption, err, out, print_json, say, warn
from deploymate.core.errors import NotFound, Unavailable, ValidationFailed

deployments_app = typer.Typer(help="Deployments on this instance.", no_args_is_help=True)
PAGE = 500
CONTROL_HOST = "control host"  # how the API names the control host as a target

Name = Annotated[str, typer.Argument(help="Deployment name.", metavar="NAME")]


class HealthType(StrEnum):
    http = "http"
    tcp = "tcp"


class RestartPolicy(StrEnum):
    no = "no"
    always = "always"
    unless_stopped = "unless-stopped"
    on_failure = "on-failure"


# --- finding things -------------------------------------------------------------------------


def _find(
    config: config_file.CliConfig, name: str, target: str | None = None
) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = api_client.request(
        config, "GET", "/api/deployments", params={"name": name}
    )
    matches = [d for d in rows if d["name"] == name and (target is None or d["target"] == target)]
    if len(matches) > 1:
        where = ", ".join(d["target"] for d in matches)
        raise ValidationFailed(
            f"several deployments are named {name} (on {where}); pick one with --server or --local"
        )
    return matches[0] if matches else None


def _require(config: config_file.CliConfig, name: str) -> dict[str, Any]:
    found = _find(config, name)
    if found is None:
        raise NotFound(f"no deployment named {name} (see `deploymate deployments list`)")
    return found


def _server_id(config: config_file.CliConfig, server: str) -> int:
    rows: list[dict[str, Any]] = api_client.request(
        config, "GET", "/api/servers", params={"name": server}
    )
    for row in rows:
        if row["name"] == server:
            return int(row["id"])
    raise NotFound(f"no server named {server} (see `deploymate servers list`)")


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ValidationFailed(f"{option} takes KEY=VALUE, got {value!r}")
        pairs[key] = val
    return pairs


# --- streams and jobs -----------------------------------------------------------------------


def _sse(
    config: config_file.CliConfig, path: str, *, method: str = "GET", body: Any = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Events of a Server-Sent Events stream as (name, data)."""
    import httpx

    headers = {"Authorization": f"Bearer {config.token}", "Accept": "text/event-stream"}
    try:
        with httpx.stream(
            method,
            config.url + path,
            headers=headers,
            json=body,
            timeout=httpx.Timeout(30, read=None),
        ) as res:
            if not res.is_success:
                res.read()
                api_client.raise_for_error(res)
            name, data = "message", ""
            for line in res.iter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line == "" and data:
                    yield name, json.loads(data)
                    name, data = "message", ""
    except httpx.HTTPError as exc:
        raise Unavailable(f"lost the connection to {config.url}: {exc}") from None


def _at(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def follow_job(
    config: config_file.CliConfig, job_id: int, *, quiet: bool = False
) -> tuple[str, str | None, float]:
    """Print a job's steps as they happen (unless quiet: --json output), each with the seconds
    since the job was queued; returns its final status, its error and how long it took."""
    first: datetime | None = None
    elapsed = 0.0
    for name, data in _sse(config, f"/api/jobs/{job_id}/events"):
        if name == "log":
            at = _at(data.get("at"))
            first = first or at
            elapsed = (at - first).total_seconds() if at and first else elapsed
            style = "red" if data.get("level") == "error" else None
            if not quiet:
                out.print(f"{elapsed:7.1f}s  {data['message']}", style=style, markup=False)
        elif name == "end":
            return str(data["status"]), data.get("error"), elapsed
    return "unknown", None, elapsed


def _finish(config: config_file.CliConfig, job_id: int, what: str) -> None:
    status, error, elapsed = follow_job(config, job_id)
    if status != "succeeded":
        warn(f"{what} {status} after {elapsed:.1f}s" + (f": {error}" if error else ""))
        raise typer.Exit(FAILED)
    out.print(f"{what} succeeded in {elapsed:.1f}s", style="bold green", markup=False)


def all_deployments(config: config_file.CliConfig) -> Iterator[dict[str, Any]]:
    """Every deployment you can see, page by page."""
    offset = 0
    while True:
        page: list[dict[str, Any]] = api_client.request(
            config, "GET", "/api/deployments", params={"limit": PAGE, "offset": offset}
        )
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE


def _smoke_instance(url: str, as_json: bool) -> None:
    import os

    from deploymate.audits import instance

    checks = instance.run(
        url,
        os.environ.get("DEPLOYMATE_SMOKE_USERNAME"),
        os.environ.get("DEPLOYMATE_SMOKE_PASSWORD"),
    )
    failed = [c.name for c in checks if not c.ok]
    if as_json:
        print_json({"url": url, "ok": not failed, "checks": [c.__dict__ for c in checks]})
    else:
        for c in checks:
            say(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail} ({c.seconds:.2f}s)")
        say(f"{url}: " + (f"failed: {', '.join(failed)}" if failed else "every check passed"))
    if failed:
        raise typer.Exit(FAILED)


# --- read commands --------------------------------------------------------------------------


@deployments_app.command("list")
def list_deployments(as_json: JsonOption = False) -> None:
    """Every deployment you can see, with its status and serving release."""
    config = config_file.load()
    rows = list(all_deployments(config))
    if as_json:
        print_json(rows)
        return
    table = Table("name", "target", "status", "release", "image", "port", box=None)
    for d in rows:
        release = d["current_release"]
        table.add_row(
            d["name"],
            d["target"],
            d["status"],
            f"r{release['number']}" if release else "-",
            d["image"],
            str(d["external_port"]),
        )
    out.print(table)


def status(name: Name, as_json: JsonOption = False) -> None:
    """Status, serving release, live health and recent activity of one deployment."""
    config = config_file.load()
    dep = _require(config, name)
    release = dep["current_release"]
    health = None
    if release:
        health = api_client.request(config, "GET", f"/api/deployments/{dep['id']}/health")
    activity = api_client.request(config, "GET", f"/api/deployments/{dep['id']}/activity")[:5]
    if as_json:
        print_json({"deployment": dep, "health": health, "activity": activity})
        return
    out.print(f"{dep['name']} on {dep['target']}: {dep['status']}", style="bold", markup=False)
    if dep["status_message"]:
        say(f"  {dep['status_message']}")
    if release:
        say(f"  serving release {release['number']}: {release['image']} ({release['image_id']})")
    if health is not None:
        say(f"  health: {'healthy' if health['healthy'] else 'UNHEALTHY'} ({health['detail']})")
    say(f"  port {dep['external_port']} -> {dep['internal_port']}; image {dep['image']}")
    for event in activity:
        say(f"  {event['created_at'][:19]} {event['actor'] or '-'}: {event['message']}")


def logs(
    name: Name,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[int, typer.Option(help="Lines from the end.", metavar="LINES", min=1)] = 100,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="Start each line with its time (UTC).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Print the serving container's logs."""
    config = config_file.load()
    dep = _require(config, name)
    if follow and as_json:
        raise ValidationFailed("--json prints the last lines once; it does not go with --follow")
    query = f"tail={tail}&timestamps={str(timestamps).lower()}"
    if not follow:
        found = api_client.request(config, "GET", f"/api/deployments/{dep['id']}/logs?{query}")
        if as_json:
            print_json(found)
            return
        for line in found["lines"]:
            say(line)
        return
    for event, data in _sse(config, f"/api/deployments/{dep['id']}/logs?follow=true&{query}"):
        if event == "log":
            say(data["line"])
        elif event == "end":
            return


# --- deploy ---------------------------------------------------------------------------------

Pairs = list[str] | None


def _health_changes(
    health_type: HealthType | None,
    path: str | None,
    expected_status: int | None,
    retries: int | None,
    interval: float | None,
    timeout: float | None,
    start_period: float | None,
) -> dict[str, Any]:
    given = {
        "type": health_type.value if health_type else None,
        "path": path,
        "expected_status": expected_status,
        "retries": retries,
        "interval": interval,
        "timeout": timeout,
        "start_period": start_period,
    }
    return {k: v for k, v in given.items() if v is not None}


def deploy(
    name: Name,
    image: Annotated[
        str | None,
        typer.Option(help="Image to deploy (required to create).", metavar="IMAGE"),
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(help="Server to create it on (`deploymate servers list`).", metavar="SERVER"),
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Create it on the control host instead of a server.")
    ] = False,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port the app listens on inside the container (default: 80).", metavar="PORT"
        ),
    ] = None,
    external_port: Annotated[
        int | None,
        typer.Option(help="Public port (default: a free one).", metavar="PORT"),
    ] = None,
    env: Annotated[
        Pairs, typer.Option("--env", "-e", help="KEY=VALUE; repeat for more.", metavar="KEY=VALUE")
    ] = None,
    secret_env: Annotated[
        Pairs,
        typer.Option(help="KEY=VALUE stored encrypted; repeat for more.", metavar="KEY=VALUE"),
    ] = None,
    label: Annotated[
        Pairs, typer.Option("--label", help="KEY=VALUE; repeat for more.", metavar="KEY=VALUE")
    ] = None,
    command: Annotated[
        list[str] | None,
        typer.Option(
            "--cmd", help="Override the image's command: one argument per use.", metavar="ARG"
        ),
    ] = None,
    restart_policy: Annotated[
        RestartPolicy | None,
        typer.Option(
            help="When Docker restarts it: no, always, on-failure or unless-stopped (default).",
            metavar="POLICY",
        ),
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory limit, e.g. 256m.", metavar="SIZE")
    ] = None,
    cpus: Annotated[float | None, typer.Option(help="CPU limit, e.g. 0.5.", metavar="CPUS")] = None,
    health_type: Annotated[
        HealthType | None, typer.Option(help="http or tcp (default: http).", metavar="TYPE")
    ] = None,
    health_path: Annotated[
        str | None, typer.Option(help="HTTP path that must answer (default: /).", metavar="PATH")
    ] = None,
    health_status: Annotated[
        int | None, typer.Option(help="Status the path must answer (default: 200).", metavar="CODE")
    ] = None,
    health_retries: Annotated[
        int | None,
        typer.Option(help="Attempts before the release fails (default: 30).", metavar="N"),
    ] = None,
    health_interval: Annotated[
        float | None, typer.Option(help="Seconds between attempts (default: 1).", metavar="SECONDS")
    ] = None,
    health_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds an attempt may take (default: 2).", metavar="SECONDS"),
    ] = None,
    health_start_period: Annotated[
        float | None,
        typer.Option(
            help="Seconds to wait before the first attempt (default: 0).", metavar="SECONDS"
        ),
    ] = None,
    domain: Annotated[
        list[str] | None,
        typer.Option(
            "--domain",
            help="Host name served through the proxy on 80/443 (repeat; replaces the list).",
            metavar="HOST",
        ),
    ] = None,
    tls: Annotated[
        str | None,
        typer.Option(
            help="auto (public certificates), internal (Caddy's CA) or off.", metavar="MODE"
        ),
    ] = None,
    volume: Annotated[
        list[str] | None,
        typer.Option(
            "--volume",
            help="NAME:/path for a named volume, /host/dir:/path for a bind mount (admins), "
            "optional :ro; repeat (replaces the list).",
            metavar="SPEC",
        ),
    ] = None,
    require_env: Annotated[
        list[str] | None,
        typer.Option(
            "--require-env",
            help="Variable the app's process must have (repeat; replaces the list).",
            metavar="NAME",
        ),
    ] = None,
    smoke_http: Annotated[
        list[str] | None,
        typer.Option(
            "--smoke-http",
            help="PATH[=STATUS] checked through the proxy after each switch (repeat; replaces "
            "the smoke checks).",
            metavar="PATH",
        ),
    ] = None,
    drain: Annotated[
        float | None,
        typer.Option(
            help="Seconds the old container keeps serving in-flight requests (default 10).",
            metavar="SECONDS",
        ),
    ] = None,
) -> None:
    """Create NAME, or change and redeploy it, and show each step live with its time.

    An existing deployment gets every option given (env and labels are merged into the ones it
    has, the health options into its health check) as a new release; with no option it is
    redeployed as it is. Exit 1 if the release fails (the previous one keeps serving).
    """
    if server and local:
        raise ValidationFailed("--server and --local name two places; give one")
    config = config_file.load()
    target = CONTROL_HOST if local else server
    existing = _find(config, name, target)
    health = _health_changes(
        health_type,
        health_path,
        health_status,
        health_retries,
        health_interval,
        health_timeout,
        health_start_period,
    )
    settings: dict[str, Any] = {
        k: v
        for k, v in {
            "image": image,
            "internal_port": port,
            "external_port": external_port,
            "command": command,
            "restart_policy": restart_policy.value if restart_policy else None,
            "memory_limit": memory,
            "cpu_limit": cpus,
            "domains": domain,
            "tls": tls,
            "volumes": [_volume(v) for v in volume] if volume is not None else None,
            "required_env": require_env,
            "smoke": [_smoke(v) for v in smoke_http] if smoke_http is not None else None,
            "drain_seconds": drain,
        }.items()
        if v is not None
    }
    env_given, labels_given = _pairs(env, "--env"), _pairs(label, "--label")
    secrets = _pairs(secret_env, "--secret-env")
    if existing is None:
        _create(config, name, server, local, settings, env_given, labels_given, secrets, health)
        return
    changes = dict(settings)
    if env_given:
        changes["env"] = {**existing["env"], **env_given}
    if labels_given:
        changes["labels"] = {**existing["labels"], **labels_given}
    if secrets:
        changes["secret_env"] = secrets
    if health:
        changes["health_check"] = {**existing["health_check"], **health}
    dep_path = f"/api/deployments/{existing['id']}"
    if not changes:
        accepted = api_client.request(config, "POST", f"{dep_path}/redeploy", json={})
        say(f"redeploying {name} on {existing['target']} with {existing['image']}")
    else:
        accepted = api_client.request(config, "PATCH", dep_path, json=changes)
        say(f"changing {', '.join(sorted(changes))} of {name} on {existing['target']}")
    _finish(config, accepted["job_id"], f"deploy of {name}")


def _volume(spec: str) -> dict[str, Any]:
    """`data:/var/lib/app`, `/srv/files:/files:ro`."""
    parts = spec.split(":")
    read_only = len(parts) == 3 and parts[2] == "ro"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not read_only) or not all(parts[:2]):
        raise ValidationFailed(
            f"--volume {spec!r}: give NAME:/path or /host/dir:/path, with an optional :ro"
        )
    source, path = parts[0], parts[1]
    key = "source" if source.startswith("/") else "name"
    return {key: source, "path": path, **({"read_only": True} if read_only else {})}


def _smoke(spec: str) -> dict[str, Any]:
    """`/healthz` or `/healthz=204`."""
    path, _, status = spec.partition("=")
    if status and not status.isdigit():
        raise ValidationFailed(f"--smoke-http {spec!r}: give PATH or PATH=STATUS, like /up=200")
    return {"http": path, **({"expect": int(status)} if status else {})}


def _create(
    config: config_file.CliConfig,
    name: str,
    server: str | None,
    local: bool,
    settings: dict[str, Any],
    env: dict[str, str],
    labels: dict[str, str],
    secrets: dict[str, str],
    health: dict[str, Any],
) -> None:
    if not server and not local:
        raise ValidationFailed(
            f"there is no deployment named {name} yet; to create it, say where: "
            "--server SERVER (see `deploymate servers list`) or --local for the control host"
        )
    if "image" not in settings:
        raise ValidationFailed(f"to create {name}, give the image to run: --image IMAGE")
    body: dict[str, Any] = {
        "name": name,
        "server_id": _server_id(config, server) if server else None,
        "internal_port": 80,
        **settings,
        "env": env,
        "labels": labels,
        "secret_env": secrets,
    }
    if health:
        body["health_check"] = health
    created = api_client.request(config, "POST", "/api/deployments", json=body)
    where = (
        ", ".join(created["domains"])
        if created.get("domains")
        else f"public port {created['external_port']}"
    )
    say(f"creating {name} on {created['target']}, {where}")
    _finish(config, created["job_id"], f"deploy of {name}")


def rollback(
    name: Name,
    to: Annotated[
        int | None,
        typer.Option(
            "--to", help="Release number (default: the last healthy one).", metavar="RELEASE"
        ),
    ] = None,
) -> None:
    """Roll back to an earlier release, by its pinned image ID and its whole configuration."""
    config = config_file.load()
    dep = _require(config, name)
    body: dict[str, Any] = {}
    if to is not None:
        releases = api_client.request(config, "GET", f"/api/deployments/{dep['id']}/releases")
        match = next((r for r in releases if r["number"] == to), None)
        if match is None:
            raise NotFound(f"{name} has no release {to} (see `deploymate status {name}`)")
        body["release_id"] = match["id"]
    accepted = api_client.request(
        config, "POST", f"/api/deployments/{dep['id']}/rollback", json=body
    )
    _finish(config, accepted["job_id"], f"rollback of {name}")


# --- operations -----------------------------------------------------------------------------


def _operate(name: str, kind: str) -> None:
    config = config_file.load()
    dep = _require(config, name)
    accepted = api_client.request(config, "POST", f"/api/deployments/{dep['id']}/{kind}")
    _finish(config, accepted["job_id"], f"{kind} of {name}")


def stop(name: Name) -> None:
    """Stop the serving container (it stays, for `start`)."""
    _operate(name, "stop")


def start(name: Name) -> None:
    """Start the stopped serving container again."""
    _operate(name, "start")


def restart(name: Name) -> None:
    """Restart the serving container."""
    _operate(name, "restart")


def delete(
    name: Name,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask; for scripts.", show_default=False)
    ] = False,
    volumes: Annotated[
        bool,
        typer.Option(
            "--volumes", help="Also remove its named volumes and their data.", show_default=False
        ),
    ] = False,
) -> None:
    """Remove the deployment's container, its proxy route and its port; its history stays, and
    so do its volumes unless --volumes."""
    config = config_file.load()
    dep = _require(config, name)
    if not yes:
        if not sys.stdin.isatty():
            raise ValidationFailed(f"deleting {name} needs a yes: add --yes")
        what = "container and its volumes' data" if volumes else "container"
        typed = typer.prompt(f"This removes {name}'s {what} on {dep['target']}. Type its name")
        if typed != name:
            raise ValidationFailed(f"{typed!r} is not {name}; nothing was deleted")
    accepted = api_client.request(
        config,
        "DELETE",
        f"/api/deployments/{dep['id']}",
        params={"volumes": "true"} if volumes else None,
    )
    _finish(config, accepted["job_id"], f"delete of {name}")


def exec_command(
    name: Name,
    command: Annotated[
        list[str],
        typer.Argument(help="The command and its arguments, after --.", metavar="COMMAND"),
    ],
    timeout: Annotated[
        float, typer.Option(help="Seconds it may run, up to 3600.", metavar="SECONDS")
    ] = 600,
) -> None:
    """Run a one-off command in the serving container and stream its output:
    `deploymate exec web -- ls -la /app`. Exit 1 if it exits non-zero."""
    config = config_file.load()
    dep = _require(config, name)
    body = {"command": command, "timeout": timeout}
    path = f"/api/deployments/{dep['id']}/exec"
    for event, data in _sse(config, path, method="POST", body=body):
        if event == "out":
            say(data["line"])
        elif event == "end":
            code = data.get("exit_code")
            if data.get("error"):
                warn(f"error: {data['error']}")
                raise typer.Exit(FAILED)
            if code:
                warn(f"{command[0]} exited with status {code}")
                raise typer.Exit(FAILED)
            return
    err.print("error: the stream ended before the command did", markup=False)
    raise typer.Exit(FAILED)


def smoke(
    name: Annotated[
        str | None, typer.Argument(help="A deployment (or --url).", metavar="NAME")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help="Check a live DeployMate instance instead: health, sign-in "
            "(DEPLOYMATE_SMOKE_USERNAME, DEPLOYMATE_SMOKE_PASSWORD), console pages, API lists.",
            metavar="URL",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run NAME's smoke checks now against its serving release, or check the instance at
    --url; exit 1 if a check fails."""
    if url is not None:
        _smoke_instance(url, as_json)
        return
    if name is None:
        raise ValidationFailed("give a deployment's NAME, or --url URL for an instance")
    config = config_file.load()
    dep = _find(config, name, None)
    if dep is None:
        raise ValidationFailed(f"there is no deployment named {name}")
    result = api_client.request(config, "POST", f"/api/deployments/{dep['id']}/smoke")
    if as_json:
        print_json(result)
    else:
        for check in result["checks"]:
            mark = "ok  " if check["ok"] else "FAIL"
            say(f"{mark} {check['check']}: {check['detail']} ({check['seconds']:.2f}s)")
        if not result["checks"]:
            say(f"{name} has no smoke checks (deploy --smoke-http PATH adds one)")
    if not all(c["ok"] for c in result["checks"]):
        raise typer.Exit(1)
