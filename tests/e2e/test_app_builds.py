"""Services built from the commit on the control host: never the working tree, never twice,
and a failed build leaves the environment as it was."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.e2e.conftest import key_server
from tests.support.apps import via_proxy
from tests.support.deploy import job_text, wait_job
from tests.support.lab import LabHost
from tests.support.repo import cli, commit_all, git, login_and_add_server
from tests.support.server import RunningServer

pytestmark = pytest.mark.usefixtures("test_images")

SPEC = """app: built
services:
  web:
    build: {context: web%s}
    port: 80
    health: {path: /version, interval: 0.2, retries: 25}
    domains: [web.built.test]
    tls: off
    drain: 0
environments:
  staging:
    servers: [edge]
"""


def test_a_build_takes_the_commit_never_the_working_tree_and_happens_once(
    tmp_path: Path, running_server: RunningServer, lab_host: LabHost
) -> None:
    cfg = tmp_path / "cli.json"
    login_and_add_server(running_server, lab_host, "edge", cfg, tmp_path)
    repo = tmp_path / "built"
    (repo / "web").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "deploymate.yaml").write_text(SPEC % "")
    (repo / "web" / "Dockerfile").write_text("FROM dm-test/web:v1\nCOPY version /www/version\n")
    (repo / "web" / "version").write_text("b1")
    commit = commit_all(repo, "b1")
    # Uncommitted and untracked changes in the build context never reach the image.
    (repo / "web" / "version").write_text("uncommitted")
    (repo / "web" / "stray.txt").write_text("untracked")

    first = cli(["app", "deploy", "staging", "--allow-dirty"], cfg, repo)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"sending the source of commit {commit[:12]}" in first.stdout
    assert f"[web] building built-web:{commit} from web (docker build)" in first.stdout
    assert "COPY version /www/version" in first.stdout  # the build's output, live
    assert via_proxy(lab_host, "web.built.test") == "b1"

    again = cli(["app", "deploy", "staging", "--allow-dirty"], cfg, repo)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"built-web:{commit} already built" in again.stdout
    assert "sending the source" not in again.stdout and "docker build" not in again.stdout

    # A Dockerfile that is not in the commit: the build fails, nothing is touched.
    (repo / "web" / "version").write_text("b2")
    (repo / "deploymate.yaml").write_text(SPEC % ", dockerfile: Nope.dockerfile")
    (repo / "web" / "stray.txt").unlink()
    commit_all(repo, "b2 with a wrong Dockerfile path")
    broken = cli(["app", "deploy", "staging"], cfg, repo)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "no Dockerfile at web/Nope.dockerfile in this commit" in broken.stdout + broken.stderr
    assert "nothing was deployed" in broken.stdout + broken.stderr
    assert via_proxy(lab_host, "web.built.test") == "b1"

    # A symlink in the commit that leaves the repository refuses the whole source.
    (repo / "deploymate.yaml").write_text(SPEC % "")
    (repo / "web" / "escape").symlink_to("/etc")
    commit_all(repo, "an escaping symlink")
    escaping = cli(["app", "deploy", "staging"], cfg, repo)
    assert escaping.returncode == 1, escaping.stdout + escaping.stderr
    assert "leaves the repository" in escaping.stdout + escaping.stderr
    assert via_proxy(lab_host, "web.built.test") == "b1"


TWO = """app: duo
services:
  web:
    build: {context: web}
    port: 80
    health: {path: /version, interval: 0.2, retries: 25}
    domains: [web.duo.test]
    tls: off
    drain: 0
    paths: [web/]
  worker:
    build: {context: worker}
    command: ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    drain: 0
    paths: [worker/]
shared_paths: [lib/]
environments:
  staging:
    servers: [edge2]
"""


def test_changed_surface_deploys_only_the_services_a_change_touches(
    tmp_path: Path, running_server: RunningServer, lab_host: LabHost
) -> None:
    import json

    cfg = tmp_path / "cli.json"
    login_and_add_server(running_server, lab_host, "edge2", cfg, tmp_path)
    repo = tmp_path / "duo"
    for part in ("web", "worker", "lib"):
        (repo / part).mkdir(parents=True)
        (repo / part / "version").write_text(f"{part}-1")
        if part != "lib":
            (repo / part / "Dockerfile").write_text(
                "FROM dm-test/web:v1\nCOPY version /www/version\n"
            )
    (repo / "deploymate.yaml").write_text(TWO)
    git(repo, "init", "-q", "-b", "main")
    first = commit_all(repo, "one")
    assert cli(["app", "deploy", "staging"], cfg, repo).returncode == 0

    def deploy_since(ref: str) -> tuple[int, dict[str, object]]:
        done = cli(["app", "deploy", "staging", "--changed-since", ref, "--json"], cfg, repo)
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)

    def serving() -> dict[str, str]:
        with httpx.Client(base_url=running_server.url) as http:
            http.post(
                "/api/auth/login",
                json={"username": "admin", "password": running_server.admin_password},
            )
            release = http.get("/api/apps/duo/releases").json()[0]
        return {s: p["edge2"]["image_id"] for s, p in release["parts"].items()}

    before = serving()
    (repo / "worker" / "version").write_text("worker-2")
    second = commit_all(repo, "worker only")
    code, out = deploy_since(first)
    assert code == 0 and out["deployed"] is True, out
    assert out["surface"] == {"worker": "worker/version matches worker/"}
    after = serving()
    assert after["web"] == before["web"] and after["worker"] != before["worker"]
    names = lab_host.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert "dm-duo-staging-web-r1" in names and "dm-duo-staging-worker-r2" in names
    with httpx.Client(base_url=running_server.url) as http:
        http.post(
            "/api/auth/login", json={"username": "admin", "password": running_server.admin_password}
        )
        page = http.get("/app/apps/duo").text
    assert "changed: worker/version matches worker/" in page and ">unchanged</span>" in page

    (repo / "lib" / "version").write_text("lib-2")
    third = commit_all(repo, "shared")
    code, out = deploy_since(second)
    assert code == 0 and set(out["surface"]) == {"web", "worker"}, out  # type: ignore[arg-type]
    assert "shared path: lib/version matches lib/" in str(out["surface"])

    (repo / "README.md").write_text("docs only")
    commit_all(repo, "readme")
    quiet = cli(["app", "deploy", "staging", "--changed-since", third], cfg, repo)
    assert quiet.returncode == 0 and "nothing to deploy" in quiet.stdout, quiet.stderr
    assert "web: unchanged" in quiet.stdout and "worker: unchanged" in quiet.stdout
    unknown = cli(["app", "deploy", "staging", "--changed-since", "no-such-ref"], cfg, repo)
    assert unknown.returncode == 2 and "no commit 'no-such-ref'" in unknown.stderr


def test_build_secrets_without_buildkit_are_refused_saying_so_and_never_shown(
    e2e_client: TestClient, lab_host: LabHost
) -> None:
    import io
    import tarfile

    client = e2e_client
    assert client.post("/api/servers", json=key_server(lab_host, "edge3")).status_code == 201
    spec = (
        SPEC.replace("build: {context: web%s}", "build: {context: web, secrets: [NPM_TOKEN]}")
        .replace("app: built", "app: sealed")
        .replace("web.built.test", "web.sealed.test")
        .replace("[edge]", "[edge3]")
        + "secrets: [NPM_TOKEN]\n"
    )
    assert client.post("/api/apps", json={"spec": spec}).status_code == 201, spec
    token = "npm_Secret-Token-4242"
    put = client.put("/api/apps/sealed/secrets/staging/NPM_TOKEN", json={"value": token})
    assert put.status_code == 204, put.text
    commit = "e" * 40
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, data in (
            (
                "web/Dockerfile",
                b"FROM dm-test/web:v1\nRUN --mount=type=secret,id=NPM_TOKEN wc -c "
                b"/run/secrets/NPM_TOKEN > /www/tokenlen\n",
            ),
            ("web/version", b"s1"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sent = client.put(
        f"/api/apps/sealed/sources/{commit}",
        content=archive.getvalue(),
        headers={"Content-Type": "application/gzip"},
    )
    assert sent.status_code == 201, sent.text
    res = client.post("/api/apps/sealed/deploy", json={"environment": "staging", "commit": commit})
    assert res.status_code == 202, res.text
    job = wait_job(client, res.json()["job_id"])
    assert token not in job_text(job) + (job["error"] or "")
    buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, check=False)
    if buildx.returncode == 0:  # BuildKit here: the secret reached the build, not the image
        assert job["status"] == "succeeded", job_text(job)
        history = subprocess.run(
            ["docker", "history", "--no-trunc", f"sealed-web:{commit}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert token not in history
        return
    assert job["status"] == "failed"
    assert "build secrets need BuildKit (docker buildx)" in job["error"]
    assert "nothing was deployed" in job["error"]
    assert "dm-sealed-staging-web-r1" not in lab_host.docker("ps", "-a").stdout
