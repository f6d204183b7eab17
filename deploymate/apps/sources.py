"""The source of a commit on the control host: an archive `git archive` made of it (never a
working tree), stored once per app and commit, and unpacked for a build with every path
checked to stay inside it."""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from anyio import to_thread

from deploymate.core.config import Settings
from deploymate.core.errors import NotFound, PayloadTooLarge, ValidationFailed

COMMIT = re.compile(r"^[0-9a-f]{40}$")
MAX_MEMBERS = 100_000


def archive_path(settings: Settings, app: str, commit: str) -> Path:
    return settings.data_dir / "sources" / app / f"{commit}.tar.gz"


def has(settings: Settings, app: str, commit: str) -> bool:
    return archive_path(settings, app, commit).is_file()


def _check_archive(path: Path) -> int:
    """The number of members; refuses what is not a gzip tar archive."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            count = 0
            for _ in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise ValidationFailed(
                        f"the archive holds more than {MAX_MEMBERS} files", field="source"
                    )
            return count
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValidationFailed(
            f"not a gzip tar archive ({exc}); send what `git archive --format=tar.gz COMMIT` makes",
            field="source",
        ) from None


async def store(
    settings: Settings, app: str, commit: str, body: AsyncIterator[bytes], limit: int
) -> int:
    """Write the archive (atomically, once per commit); its size in bytes."""
    if not COMMIT.match(commit):
        raise ValidationFailed("expected a full commit id: 40 hex digits", field="commit")
    final = archive_path(settings, app, commit)
    final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=final.parent, suffix=".part")
    size = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in body:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(
                        f"the source archive is over {limit} bytes "
                        "(DEPLOYMATE_MAX_SOURCE_BYTES); keep build inputs out of the repository "
                        "or raise the limit"
                    )
                fh.write(chunk)
        await to_thread.run_sync(_check_archive, Path(tmp))
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # nothing left once replaced
    return size


def unpack(settings: Settings, app: str, commit: str, into: Path) -> None:
    """Extract the commit's archive into `into`; a member that would land outside it (an
    absolute path, ../, a link escaping the tree) refuses the whole archive."""
    path = archive_path(settings, app, commit)
    if not path.is_file():
        raise NotFound(
            f"the source of commit {commit[:12]} is not on the control host; "
            "`deploymate app deploy` in the repository sends it"
        )
    with tarfile.open(path, "r:gz") as tar:
        try:
            tar.extractall(into, filter="data")
        except tarfile.FilterError as exc:
            raise ValidationFailed(
                f"the commit's tree has a path that leaves the repository: {exc}", field="source"
            ) from None


def build_paths(root: Path, context: str, dockerfile: str | None) -> tuple[Path, Path]:
    """The context directory and the Dockerfile, both inside the unpacked tree (symlinks
    resolved), the Dockerfile present."""
    top = root.resolve()
    where = (root / context).resolve()
    if where != top and top not in where.parents:
        raise ValidationFailed(
            f"build context {context} leads outside the repository (a symlink?)", field="build"
        )
    if not where.is_dir():
        raise ValidationFailed(f"build context {context} is not a directory at this commit")
    file = (where / (dockerfile or "Dockerfile")).resolve()
    if top not in file.parents:
        raise ValidationFailed(
            f"Dockerfile {dockerfile} leads outside the repository (a symlink?)", field="build"
        )
    if not file.is_file():
        named = posixpath.normpath(f"{context}/{dockerfile or 'Dockerfile'}")
        raise ValidationFailed(f"no Dockerfile at {named} in this commit", field="build")
    return where, file


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="dm-build-"))


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
