"""CLI commands that deploy and inspect through a running instance's API (stored token)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from deploymate.cli import api_client, config_file
from deploymate.core.errors import NotFound, Unavailable, ValidationFailed

deployments_app = typer.Typer(help="Deployments on this instance.", no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
PAGE = 500


def _find(
    config: config_file.CliConfig, name: str, server: str | None = None
) -> dict[str, Any] | None:
    rows: list[dict[str, Any]] = api_client.request(
        config, "GET", "/api/deployments", params={"name": name}
    )
    matches = [d for d in rows if d["name"] == name and (server is None or d["target"] == server)]
    if len(matches) > 1:
        raise ValidationFailed(f"several deployments are named {name}; pick one with --server")
    return matches[0] if matches else None


def _require(config: config_file.CliConfig, name: str) -> dict[str, Any]:
    found = _find(config, name)
    if found is None:
        raise NotFound(f"no deployment named {name}")
    return found


def _server_id(config: config_file.CliConfig, server: str | None) -> int | None:
    if server is None or server == "local":
        return None
    rows: list[dict[str, Any]] = api_client.request(
        config, "GET", "/api/servers", params={"name": server}
    )
    for row in rows:
        if row["name"] == server:
            return int(row["id"])
    raise NotFound(f"no server named {server} (see `deploymate inventory`)")


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise ValidationFailed(f"{option} takes KEY=VALUE, got {value!r}")
        pairs[key] = val
    return pairs


def _sse(config: config_file.CliConfig, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Events of a Server-Sent Events stream as (name, data)."""
    import httpx

    headers = {"Authorization": f"Bearer {config.token}", "Accept": "text/event-stream"}
    try:
        with httpx.stream(
            "GET", config.url + path, headers=headers, timeout=httpx.Timeout(30, read=None)
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


def follow_job(config: config_file.CliConfig, job_id: int) -> str:
    """Print a job's progress as it happens; returns its final status."""
    for name, data in _sse(config, f"/api/jobs/{job_id}/events"):
        if name == "log":
            style = "red" if data.get("level") == "error" else None
            out.print(f"  {data['message']}", style=style, markup=False)
        elif name == "end":
            return str(data["status"])
    return "unknown"


def _finish(config: config_file.CliConfig, job_id: int, what: str) -> None:
    status = follow_job(config, job_id)
    if status != "succeeded":
        out.print(f"{what} {status}", style="bold red")
        raise typer.Exit(1)
    out.print(f"{what} succeeded", style="bold green")


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


@deployments_app.command("list")
def list_deployments() -> None:
    """Every deployment you can see, with its status and serving release."""
    config = config_file.load()
    table = Table("name", "target", "status", "release", "image", "port", box=None)
    for d in all_deployments(config):
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


def deploy(
    name: Annotated[str, typer.Argument(help="Deployment name (DNS label).")],
    image: Annotated[str, typer.Option(help="Image reference to deploy.")],
    server: Annotated[
        str | None, typer.Option(help="Server name; omit or `local` for the control host.")
    ] = None,
    port: Annotated[int, typer.Option(help="Port the app listens on inside the container.")] = 80,
    external_port: Annotated[
        int | None, typer.Option(help="Public port (default: a suggested free one).")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE (repeatable).")
    ] = None,
    secret_env: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE stored encrypted (repeatable).")
    ] = None,
    health_path: Annotated[str, typer.Option(help="HTTP path that must answer 200.")] = "/",
    health_retries: Annotated[
        int, typer.Option(help="Health attempts before the release fails.")
    ] = 30,
    health_interval: Annotated[float, typer.Option(help="Seconds between health attempts.")] = 1.0,
) -> None:
    """Create NAME, or redeploy it with IMAGE, and show the progress live (exit 1 if it fails)."""
    config = config_file.load()
    existing = _find(config, name, server if server and server != "local" else None)
    if existing is None:
        body: dict[str, Any] = {
            "name": name,
            "server_id": _server_id(config, server),
            "image": image,
            "internal_port": port,
            "env": _pairs(env or [], "--env"),
            "secret_env": _pairs(secret_env or [], "--secret-env"),
            "health_check": {
                "type": "http",
                "path": health_path,
                "retries": health_retries,
                "interval": health_interval,
            },
        }
        if external_port is not None:
            body["external_port"] = external_port
        created = api_client.request(config, "POST", "/api/deployments", json=body)
        out.print(f"creating {name} on {created['target']}, public port {created['external_port']}")
        _finish(config, created["job_id"], f"deploy of {name}")
        return
    changes: dict[str, Any] = {"image": image}
    if env:
        changes["env"] = {**existing["env"], **_pairs(env, "--env")}
    if secret_env:
        changes["secret_env"] = _pairs(secret_env, "--secret-env")
    accepted = api_client.request(
        config, "PATCH", f"/api/deployments/{existing['id']}", json=changes
    )
    out.print(f"redeploying {name} with {image}")
    _finish(config, accepted["job_id"], f"deploy of {name}")


def rollback(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    to: Annotated[
        int | None, typer.Option("--to", help="Release number (default: the last healthy one).")
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
            raise NotFound(f"{name} has no release {to}")
        body["release_id"] = match["id"]
    accepted = api_client.request(
        config, "POST", f"/api/deployments/{dep['id']}/rollback", json=body
    )
    _finish(config, accepted["job_id"], f"rollback of {name}")


def logs(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[int, typer.Option(help="Lines from the end.")] = 100,
) -> None:
    """Print the serving container's logs."""
    config = config_file.load()
    dep = _require(config, name)
    if not follow:
        for line in api_client.request(
            config, "GET", f"/api/deployments/{dep['id']}/logs", params={"tail": tail}
        )["lines"]:
            out.print(line, markup=False)
        return
    for event, data in _sse(config, f"/api/deployments/{dep['id']}/logs?follow=true&tail={tail}"):
        if event == "log":
            out.print(data["line"], markup=False)
        elif event == "end":
            return


def status(name: Annotated[str, typer.Argument(help="Deployment name.")]) -> None:
    """Status, serving release, live health and recent activity of one deployment."""
    config = config_file.load()
    dep = _require(config, name)
    release = dep["current_release"]
    out.print(f"{dep['name']} on {dep['target']}: {dep['status']}", style="bold", markup=False)
    if dep["status_message"]:
        out.print(f"  {dep['status_message']}", markup=False)
    if release:
        out.print(
            f"  serving release {release['number']}: {release['image']} ({release['image_id']})",
            markup=False,
        )
        health = api_client.request(config, "GET", f"/api/deployments/{dep['id']}/health")
        out.print(
            f"  health: {'healthy' if health['healthy'] else 'UNHEALTHY'} ({health['detail']})",
            markup=False,
        )
    out.print(f"  port {dep['external_port']} -> {dep['internal_port']}; image {dep['image']}")
    for event in api_client.request(config, "GET", f"/api/deployments/{dep['id']}/activity")[:5]:
        out.print(
            f"  {event['created_at'][:19]} {event['actor'] or '-'}: {event['message']}",
            markup=False,
        )
