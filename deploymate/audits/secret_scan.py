"""`deploymate audit secrets PATH`: secrets committed or left in a tree: private keys, tokens
of well-known formats, and long random-looking values assigned to secret-sounding names.
Symlinks are never followed (no loops), unreadable files are reported, not fatal; a finding
shows where and a masked prefix, never the secret; an allow-list accepts known findings."""

from __future__ import annotations

import hashlib
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from deploymate.audits.findings import Finding, masked

MAX_FILE = 2 * 1_048_576
SKIP_DIRS = {".git", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache", ".tox"}
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private_key", re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{60,})")),
    ("gitlab_token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20}\b")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("stripe_key", re.compile(r"\b[rs]k_live_[A-Za-z0-9]{16,}")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("deploymate_token", re.compile(r"\bdmt_[A-Za-z0-9_-]{40,}")),
)
ASSIGNMENT = re.compile(
    r"""(?ix)\b([a-z0-9_.-]*(?:secret|token|passw(?:or)?d|api[_-]?key|private[_-]?key|credential)[a-z0-9_.-]*)
    \s*[:=]\s*["']?([A-Za-z0-9+/=_\-.~]{20,})["']?"""
)
MIN_ENTROPY = 3.5


def entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def fingerprint(value: str) -> str:
    """How an allow-list names a finding without holding the secret."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def _files(root: Path, problems: list[Finding]) -> Iterator[Path]:
    if root.is_symlink():
        problems.append(Finding("unreadable", "a symlink: not followed", str(root), "warn"))
        return
    if root.is_file():
        yield root
        return

    def failed(exc: OSError) -> None:
        problems.append(
            Finding("unreadable", f"skipped: {exc.strerror}", str(exc.filename), "warn")
        )

    for directory, dirs, names in os.walk(root, onerror=failed, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(directory) / name
            if not path.is_symlink():
                yield path


def _text(path: Path, problems: list[Finding]) -> str | None:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE:
            return None  # a pipe or a device would block or never end; huge files are data
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(Finding("unreadable", f"skipped: {exc.strerror}", str(path), "warn"))
        return None
    if b"\x00" in raw[:8192]:
        return None  # binary
    return raw.decode("utf-8", errors="replace")


def load_allowed(path: Path | None) -> set[str]:
    """Lines of `sha256:…` fingerprints (as findings print them); # starts a comment."""
    if path is None:
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()}


def scan(root: Path, allowed: set[str] | None = None) -> list[Finding]:
    allowed = allowed or set()
    problems: list[Finding] = []
    found: list[Finding] = []
    for path in _files(root, problems):
        text = _text(path, problems)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            hits: list[tuple[str, str]] = [
                (kind, m.group(0)) for kind, pattern in PATTERNS for m in pattern.finditer(line)
            ]
            for m in ASSIGNMENT.finditer(line):
                value = m.group(2)
                if entropy(value) >= MIN_ENTROPY and not any(value in h for _, h in hits):
                    hits.append((f"high_entropy_{m.group(1).lower()}"[:60], value))
            for kind, value in hits:
                mark = fingerprint(value)
                if mark in allowed:
                    continue
                found.append(
                    Finding(
                        kind,
                        f"{masked(value)} {mark} (accept it by adding that to the allow-list)",
                        f"{path}:{number}",
                    )
                )
    return found + problems
