"""Changed-surface detection: which services the files changed since a commit touch.

A service's `paths` and the spec's `shared_paths` are globs relative to the repository: a
pattern ending in `/` is a directory (everything under it), any other is matched with
fnmatch, where `*` also crosses `/`. A changed shared path marks every service; a service
that declares no paths is always marked (nothing says what it does not depend on)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any


def matches(path: str, pattern: str) -> bool:
    pattern = pattern.removeprefix("./")
    if pattern.endswith("/"):
        return path.startswith(pattern)
    return fnmatchcase(path, pattern) or path.startswith(pattern.rstrip("/") + "/")


def _first(files: list[str], patterns: list[str]) -> str | None:
    for path in files:
        for pattern in patterns:
            if matches(path, pattern):
                return f"{path} matches {pattern}"
    return None


def compute(spec: dict[str, Any], files: list[str]) -> dict[str, str]:
    """service -> why it changed, for the services the changed files touch."""
    if not files:
        return {}
    shared = _first(files, list(spec.get("shared_paths") or []))
    out: dict[str, str] = {}
    for name, svc in spec["services"].items():
        if shared:
            out[name] = f"shared path: {shared}"
        elif not svc.get("paths"):
            out[name] = "declares no paths"
        elif (why := _first(files, list(svc["paths"]))) is not None:
            out[name] = why
    return out
