"""Image builds on the control host, as command data: `docker build` of a directory made from
a commit (never a working tree), and the BuildKit check that build secrets need."""

from __future__ import annotations

from pathlib import Path

from deploymate.runtime.executor import Command

BUILD_TIMEOUT = 30 * 60.0


def tag_for(app: str, service: str, commit: str) -> str:
    """`<app>-<service>:<commit>`: one image per service and commit, built once."""
    return f"{app}-{service}:{commit}"


def build(
    tag: str,
    context: Path,
    dockerfile: Path,
    *,
    target: str | None = None,
    args: dict[str, str] | None = None,
    secret_files: dict[str, Path] | None = None,
) -> Command:
    """`docker build`; secrets go in as BuildKit secrets read from files (never build args,
    which an image's history keeps)."""
    argv = [
        "docker",
        "build",
        "--file",
        str(dockerfile),
        "--tag",
        tag,
        "--label",
        "deploymate.build=1",
    ]
    if target:
        argv += ["--target", target]
    for key, value in sorted((args or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    for name, path in sorted((secret_files or {}).items()):
        argv += ["--secret", f"id={name},src={path}"]
    if secret_files:
        argv = ["env", "DOCKER_BUILDKIT=1", *argv, "--progress=plain"]
    argv.append(str(context))
    return Command(tuple(argv), timeout=BUILD_TIMEOUT, check=False, merge_stderr=True)


def buildkit_version() -> Command:
    """Answers (exit 0) only where BuildKit's client, buildx, is installed."""
    return Command.of("docker", "buildx", "version", check=False)
