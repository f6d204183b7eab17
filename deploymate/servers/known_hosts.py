"""Writing pinned host keys to an OpenSSH known_hosts file, for operators' own ssh use."""

from __future__ import annotations

import os
from pathlib import Path


def host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def render(host: str, port: int, key_lines: list[str]) -> str:
    pattern = host_pattern(host, port)
    return "".join(f"{pattern} {line.strip()}\n" for line in key_lines)


def write_entry(path: Path, host: str, port: int, key_lines: list[str]) -> None:
    """Replace this host's entries, keep every other line; written atomically, mode 0644."""
    pattern = host_pattern(host, port)
    kept: list[str] = []
    if path.exists():
        kept = [
            line
            for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if line.split(" ", 1)[0] != pattern
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept) + render(host, port, key_lines), encoding="utf-8")
    os.chmod(tmp, 0o644)
    tmp.replace(path)
