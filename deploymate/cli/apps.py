"""`deploymate app ...`: applications described by deploymate.yaml."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from deploymate.cli.output import JsonOption, print_json, say

app_app = typer.Typer(help="Applications described by deploymate.yaml.", no_args_is_help=True)
SPEC_FILE = "deploymate.yaml"
# The app a command is about; by default the one the repository's committed spec names.
AppOption = Annotated[
    str | None, typer.Option("--app", help="The app (default: the spec's).", metavar="APP")
]


@app_app.command("validate")
def validate(
    file: Annotated[
        Path | None,
        typer.Argument(help=f"The spec (default: ./{SPEC_FILE}); - reads stdin.", metavar="FILE"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a spec against the schema and the rules, with no server and no instance; every
    problem with its line and column. Exit 0 when valid, 1 when not."""
    from deploymate.apps import spec as app_spec

    path = file or Path(SPEC_FILE)
    name = "<stdin>" if str(path) == "-" else str(path)
    try:
        text = sys.stdin.read() if name == "<stdin>" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{name}: cannot read it: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    try:
        found = app_spec.load(text, filename=name)
    except app_spec.SpecInvalid as exc:
        if as_json:
            print_json({"valid": False, "problems": [p.as_dict() for p in exc.problems]})
        else:
            for problem in exc.problems:
                print(problem.render(name), file=sys.stderr)
        raise typer.Exit(1) from None
    if as_json:
        print_json({"valid": True, "app": found.name})
    else:
        services = ", ".join(found.data["services"])
        environments = ", ".join(f"{e} ({found.kind_of(e)})" for e in found.data["environments"])
        say(f"{name}: app {found.name} is valid; services {services}; environments {environments}")


@app_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of deploymate.yaml (for editors and CI)."""
    from deploymate.apps.schema import APP_SPEC

    print(json.dumps(APP_SPEC, indent=2))


previews_app = typer.Typer(help="Preview environments, one per branch.", no_args_is_help=True)
app_app.add_typer(previews_app, name="previews")


@previews_app.command("list")
def previews_list(
    app: AppOption = None,
    as_json: JsonOption = False,
) -> None:
    """The app's previews: branch, environment, domains, age and expiry."""
    from deploymate.cli import api_client, config_file

    name = app or _committed_app_name()
    rows = api_client.request(config_file.load(), "GET", f"/api/apps/{name}/previews")
    if as_json:
        print_json(rows)
        return
    for p in rows:
        hosts = ", ".join(h for hosts in p["domains"].values() for h in hosts) or "no domain"
        say(
            f"{p['environment']}  {p['branch']}  {hosts}  since {p['created_at'][:16]}Z, "
            f"expires {p['expires_at'][:16]}Z"
        )
    if not rows:
        say(f"{name} has no preview; `deploymate app deploy preview` on a branch makes one")


@previews_app.command("destroy")
def previews_destroy(
    branch: Annotated[str, typer.Argument(help="The preview's branch.", metavar="BRANCH")],
    app: AppOption = None,
) -> None:
    """Remove the branch's preview now: its containers, routes and volumes (its data)."""
    from deploymate.cli import api_client, config_file

    name = app or _committed_app_name()
    gone = api_client.request(
        config_file.load(), "DELETE", f"/api/apps/{name}/previews", params={"branch": branch}
    )
    say(f"preview {gone['environment']} of {branch} is being removed, with its volumes")


secrets_app = typer.Typer(help="Secrets of an app's environments.", no_args_is_help=True)


@secrets_app.command("set")
def secrets_set(
    app: Annotated[str, typer.Argument(help="The app.", metavar="APP")],
    environment: Annotated[str, typer.Argument(help="Its environment.", metavar="ENV")],
    name: Annotated[str, typer.Argument(help="A name under secrets: in the spec.", metavar="NAME")],
) -> None:
    """Store one secret's value, read from standard input (or a hidden prompt): never from an
    argument, where shell history and the process list would keep it."""
    from deploymate.cli import api_client, config_file
    from deploymate.core.errors import ValidationFailed

    if sys.stdin.isatty():
        value = typer.prompt(f"{name} for {app} {environment}", hide_input=True)
    else:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not value:
        raise ValidationFailed('no value: pipe it in (`printf %s "$VALUE" | ...`) or type it')
    path = f"/api/apps/{app}/secrets/{environment}/{name}"
    api_client.request(config_file.load(), "PUT", path, json={"value": value})
    say(f"{name} stored for {app} {environment} (sealed; it is never shown again)")


def _git(*args: str, cwd: Path) -> str:
    import subprocess

    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        from deploymate.core.errors import ValidationFailed

        raise ValidationFailed(
            f"git {' '.join(args)} failed: {done.stderr.strip() or 'not a git repository?'}; "
            "run this in the app's repository, with at least one commit"
        )
    return done.stdout


def _committed_app_name() -> str:
    """The app the repository's committed spec names (when --app is not given)."""
    return _committed_spec(SPEC_FILE)[2]


def _committed_spec(file: str) -> tuple[Path, str, str]:
    """(repository root, the spec's text at HEAD, the app it names); invalid: exit 1 with
    every problem."""
    from deploymate.apps import spec as app_spec

    root = Path(_git("rev-parse", "--show-toplevel", cwd=Path.cwd()).strip())
    spec_text = _git("show", f"HEAD:{file}", cwd=root)
    try:
        found = app_spec.load(spec_text, filename=file)
    except app_spec.SpecInvalid as exc:
        for problem in exc.problems:
            print(problem.render(file), file=sys.stderr)
        raise typer.Exit(1) from None
    return root, spec_text, found.name


def _surface(
    root: Path, spec: dict[str, Any], since: str, commit: str, *, quiet: bool
) -> dict[str, str]:
    """The services the files changed since `since` touch, said with the reason for each."""
    from deploymate.apps import surface
    from deploymate.core.errors import ValidationFailed

    ref = f"{since}^{{commit}}"
    if since.startswith("-") or not _git_ok(root, "rev-parse", "--verify", "--quiet", ref):
        raise ValidationFailed(
            f"no commit {since!r} in this repository (try a branch, a tag or a commit id "
            "that `git log` shows)",
            field="changed_since",
        )
    files = _git("diff", "--name-only", ref, commit, cwd=root).split()
    found = surface.compute(spec, files)
    if not quiet:
        say(f"{len(files)} file(s) changed since {since}")
        for name in spec["services"]:
            say(f"  {name}: " + (f"deploy ({found[name]})" if name in found else "unchanged"))
        if not found:
            say("nothing to deploy: no change touches a service's paths or a shared path")
    return found


def _git_ok(root: Path, *args: str) -> bool:
    import subprocess

    return (
        subprocess.run(["git", *args], cwd=root, capture_output=True, check=False).returncode == 0
    )


def _send_source(
    config: Any, root: Path, name: str, commit: str, spec_text: str, *, quiet: bool = False
) -> None:
    """The commit's archive to the control host, where its services are built (once per
    commit: nothing is sent when it is there already). A new app is stored first."""
    import subprocess

    from deploymate.cli import api_client
    from deploymate.core.errors import NotFound

    try:
        api_client.request(config, "GET", f"/api/apps/{name}")
    except NotFound:
        api_client.request(config, "POST", "/api/apps", json={"spec": spec_text})
    try:
        api_client.request(config, "GET", f"/api/apps/{name}/sources/{commit}")
        return
    except NotFound:
        pass
    archive = subprocess.run(
        ["git", "archive", "--format=tar.gz", commit],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    if not quiet:
        say(f"sending the source of commit {commit[:12]} ({len(archive) // 1024} KiB, git archive)")
    api_client.request(
        config,
        "PUT",
        f"/api/apps/{name}/sources/{commit}",
        content=archive,
        headers={"Content-Type": "application/gzip"},
        timeout=None,
    )


@app_app.command("save")
def save(
    file: Annotated[
        str, typer.Option("--file", "-f", help="The spec's path in the repository.", metavar="PATH")
    ] = SPEC_FILE,
    as_json: JsonOption = False,
) -> None:
    """Store the committed spec (HEAD) on the instance without deploying: the first step of a
    new app, so its secrets can be set before its first deploy."""
    from deploymate.cli import api_client, config_file

    _root, spec_text, name = _committed_spec(file)
    stored = api_client.request(config_file.load(), "POST", "/api/apps", json={"spec": spec_text})
    if as_json:
        print_json(stored)
        return
    say(
        f"app {name} stored; environments {', '.join(stored['environments'])}. Next: set its "
        f"secrets (`deploymate secrets set {name} ENV NAME`), then `deploymate app deploy ENV`"
    )


@app_app.command("deploy")
def deploy(
    environment: Annotated[
        str, typer.Argument(help="A non-production environment.", metavar="ENV")
    ],
    file: Annotated[
        str, typer.Option("--file", "-f", help="The spec's path in the repository.", metavar="PATH")
    ] = SPEC_FILE,
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty",
            help="Deploy although files are changed or untracked (marks the release dirty; "
            "never for production).",
        ),
    ] = False,
    skip_drift: Annotated[
        bool,
        typer.Option(
            "--skip-drift", help="Do not run the drift check (audited; never for a ship)."
        ),
    ] = False,
    changed_since: Annotated[
        str | None,
        typer.Option(
            "--changed-since",
            help="Deploy only the services whose paths changed since this commit (shared "
            "paths: all); the others keep what serves.",
            metavar="REF",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Deploy what is committed (HEAD) to ENV: the spec as committed, every service on every
    server of the environment, together. Production is reached by shipping, not deploying."""
    from deploymate.cli import api_client, config_file
    from deploymate.cli.deployments import FAILED, _finish, follow_job
    from deploymate.core.errors import ValidationFailed

    root, spec_text, name = _committed_spec(file)
    commit = _git("rev-parse", "HEAD", cwd=root).strip()
    branch = _git("rev-parse", "--abbrev-ref", "HEAD", cwd=root).strip()
    changed = [
        line[3:]
        for line in _git("status", "--porcelain", "--untracked-files=all", cwd=root).splitlines()
        if line.strip()
    ]
    if changed and not allow_dirty:
        listed = ", ".join(changed[:20]) + (
            f" and {len(changed) - 20} more" if len(changed) > 20 else ""
        )
        raise ValidationFailed(
            f"the working tree is not clean ({listed}); commit or stash, or pass --allow-dirty "
            "for a non-production environment (only what is committed ships)"
        )
    from deploymate.apps import spec as app_spec

    found = app_spec.load(spec_text, filename=file)
    migrations_path = (found.data.get("migrations") or {}).get("path")
    migrations = (
        sorted(
            _git("ls-tree", "-r", "--name-only", "HEAD", "--", migrations_path, cwd=root).split()
        )
        if migrations_path
        else []
    )
    surface = None
    if changed_since is not None:
        surface = _surface(root, found.data, changed_since, commit, quiet=as_json)
        if not surface:
            if as_json:
                print_json({"deployed": False, "surface": {}, "changed_since": changed_since})
            return
    config = config_file.load()
    if any("build" in svc for svc in found.data["services"].values()):
        _send_source(config, root, name, commit, spec_text, quiet=as_json)
    accepted = api_client.request(
        config,
        "POST",
        f"/api/apps/{name}/deploy",
        json={
            "environment": environment,
            "spec": spec_text,
            "commit": commit,
            "branch": branch,
            "clean": not changed,
            "skip_drift": skip_drift,
            "migrations": migrations,
            "surface": surface,
        },
    )
    target = accepted.get("environment", environment)
    if as_json:  # for CI: one object, exit 0 deployed, 1 failed (2: refused before, above)
        status, error, elapsed = follow_job(config, accepted["job_id"], quiet=True)
        print_json(
            {
                "deployed": status == "succeeded",
                "status": status,
                "error": error,
                "app": name,
                "environment": target,
                "release": accepted["release"],
                "job_id": accepted["job_id"],
                "commit": commit,
                "branch": branch,
                "clean": not changed,
                "surface": surface,
                "seconds": round(elapsed, 1),
            }
        )
        if status != "succeeded":
            raise typer.Exit(FAILED)
        return
    say(
        f"deploying {name} release {accepted['release']} to {target}: commit "
        f"{commit[:12]} on {branch}" + (" (dirty)" if changed else "")
    )
    _finish(config, accepted["job_id"], f"app release {accepted['release']} of {name}")
    if target != environment:  # a preview: where it answers, and until when
        for p in api_client.request(config, "GET", f"/api/apps/{name}/previews"):
            if p["environment"] == target:
                hosts = [h for hosts in p["domains"].values() for h in hosts]
                say(
                    f"preview {target} of {branch}: "
                    + (", ".join(f"http://{h}" for h in hosts) or "no domain (preview.domain)")
                    + f"; expires {p['expires_at'][:16]}Z unless deployed again"
                )


@app_app.command("ship")
def ship(
    environment: Annotated[
        str, typer.Argument(help="The production environment.", metavar="ENV")
    ] = "production",
    app: AppOption = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from", help="The staging environment (when there are several).", metavar="STAGING"
        ),
    ] = None,
    confirm: Annotated[
        str | None,
        typer.Option(
            "--confirm", help="The app's name, to confirm a ship to production.", metavar="APP"
        ),
    ] = None,
) -> None:
    """Promote exactly what serves on staging to production: the same image IDs and the spec
    at that commit, with production's own env and secrets. Nothing is rebuilt."""
    from deploymate.cli import api_client, config_file
    from deploymate.cli.deployments import _finish

    name = app or _committed_app_name()
    config = config_file.load()
    body = {"environment": environment, "from": source, "confirm": confirm}
    accepted = api_client.request(config, "POST", f"/api/apps/{name}/ship", json=body)
    if "request_id" in accepted:
        say(
            f"production is protected: ship request #{accepted['request_id']} waits for an "
            "admin (`deploymate approvals list`)"
        )
        return
    say(f"shipping {name} to {environment} (release {accepted['release']})")
    pending = accepted.get("pending_migrations") or []
    if pending:
        say(
            f"{len(pending)} migration(s) {environment} has not applied (not run; run them by "
            f"hand, e.g. `deploymate app run {environment} -- ...`):"
        )
        for item in pending:
            say(f"  {item}")
    _finish(config, accepted["job_id"], f"ship of {name} to {environment}")


@app_app.command("rollback")
def rollback(
    environment: Annotated[str, typer.Argument(help="The environment.", metavar="ENV")],
    app: AppOption = None,
    to: Annotated[
        int | None,
        typer.Option(
            "--to", help="The app release to go back to (default: the one before).", metavar="N"
        ),
    ] = None,
    confirm: Annotated[
        str | None,
        typer.Option("--confirm", help="The app's name (production).", metavar="APP"),
    ] = None,
) -> None:
    """Bring ENV back to an earlier app release, whole: every service together, by image ID."""
    from deploymate.cli import api_client, config_file
    from deploymate.cli.deployments import _finish

    name = app or _committed_app_name()
    config = config_file.load()
    body = {"environment": environment, "to": to, "confirm": confirm}
    accepted = api_client.request(config, "POST", f"/api/apps/{name}/rollback", json=body)
    say(f"rolling {name} {environment} back (app release {accepted['release']})")
    _finish(config, accepted["job_id"], f"rollback of {name} {environment}")


approvals_app = typer.Typer(help="Ship requests waiting for an admin.", no_args_is_help=True)


@approvals_app.command("list")
def approvals_list(
    everything: Annotated[bool, typer.Option("--all", help="Decided requests too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Ship requests waiting (admins: all; members: their own)."""
    from deploymate.cli import api_client, config_file

    rows = api_client.request(
        config_file.load(), "GET", "/api/approvals", params={"all": str(everything).lower()}
    )
    if as_json:
        print_json(rows)
        return
    for r in rows:
        say(
            f"#{r['id']} {r['status']}: app {r['app_id']} to {r['environment']} "
            f"(staging release id {r['source_release_id']}) by {r['requested_by']}"
            + (f", decided by {r['decided_by']}" if r["decided_by"] else "")
        )
    if not rows:
        say("no ship request waits")


@approvals_app.command("approve")
def approvals_approve(
    request_id: Annotated[int, typer.Argument(help="The request.", metavar="ID")],
) -> None:
    """Ship the release the request is for (refused if staging moved on since)."""
    from deploymate.cli import api_client, config_file
    from deploymate.cli.deployments import _finish

    config = config_file.load()
    done = api_client.request(config, "POST", f"/api/approvals/{request_id}/approve")
    say(f"request #{request_id} approved; shipping")
    _finish(config, done["job_id"], f"ship of request #{request_id}")


@approvals_app.command("reject")
def approvals_reject(
    request_id: Annotated[int, typer.Argument(help="The request.", metavar="ID")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for the requester.", metavar="TEXT")
    ] = None,
) -> None:
    """Refuse a ship request."""
    from deploymate.cli import api_client, config_file

    api_client.request(
        config_file.load(), "POST", f"/api/approvals/{request_id}/reject", json={"reason": reason}
    )
    say(f"request #{request_id} rejected")


@app_app.command("run")
def run(
    environment: Annotated[str, typer.Argument(help="The environment.", metavar="ENV")],
    command: Annotated[
        list[str], typer.Argument(help="The command and its arguments, after --.", metavar="CMD")
    ],
    service: Annotated[
        str | None,
        typer.Option(
            "--service", "-s", help="The service (default: the first).", metavar="SERVICE"
        ),
    ] = None,
    app: AppOption = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds it may run, up to 3600.", metavar="SECONDS")
    ] = 600,
) -> None:
    """Run a one-off command in a new container of the serving release (same image, env,
    secrets and network; removed afterwards), stream its output and exit with its status:
    `deploymate app run staging -- python -m shop.migrate --check`."""
    from deploymate.cli import config_file
    from deploymate.cli.deployments import _sse

    name = app or _committed_app_name()
    config = config_file.load()
    body = {"environment": environment, "service": service, "command": command, "timeout": timeout}
    for event, data in _sse(config, f"/api/apps/{name}/run", method="POST", body=body):
        if event == "out":
            say(data["line"])
        elif event == "end":
            if data.get("error"):
                print(f"error: {data['error']}", file=sys.stderr)
                raise typer.Exit(1)
            raise typer.Exit(int(data.get("exit_code") or 0))
    print("error: the stream ended before the command did", file=sys.stderr)
    raise typer.Exit(1)
