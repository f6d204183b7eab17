"""A commit's source archive: unpacked only when every path stays inside it; a build context
and Dockerfile found inside it; the build command as data. No Docker, no instance."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from deploymate.apps import sources
from deploymate.core.config import Settings
from deploymate.core.errors import NotFound, ValidationFailed
from deploymate.runtime import build

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", env="development")


def _archive(settings: Settings, members: list[tarfile.TarInfo], data: bytes = b"x") -> None:
    path = sources.archive_path(settings, "shop", COMMIT)
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)


def _file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 1
    return info


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def test_a_tree_unpacks_and_its_context_and_dockerfile_are_found(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _archive(settings, [_file("web/Dockerfile"), _file("web/app.py"), _file("web/ci.Dockerfile")])
    root = tmp_path / "tree"
    sources.unpack(settings, "shop", COMMIT, root)
    context, dockerfile = sources.build_paths(root, "web", None)
    assert context == (root / "web").resolve() and dockerfile.name == "Dockerfile"
    assert sources.build_paths(root, "web/", "ci.Dockerfile")[1].name == "ci.Dockerfile"
    with pytest.raises(ValidationFailed, match=r"no Dockerfile at web/Dockerfile\.prod"):
        sources.build_paths(root, "web", "Dockerfile.prod")
    with pytest.raises(ValidationFailed, match="not a directory"):
        sources.build_paths(root, "api", None)


@pytest.mark.parametrize(
    "member",
    [_file("../outside.txt"), _link("web/escape", "../../../etc"), _link("web/abs", "/etc")],
    ids=["dot-dot", "symlink-up", "symlink-absolute"],
)
def test_a_path_leaving_the_tree_refuses_the_whole_archive(
    tmp_path: Path, member: tarfile.TarInfo
) -> None:
    settings = _settings(tmp_path)
    _archive(settings, [_file("web/Dockerfile"), member])
    with pytest.raises(ValidationFailed, match="leaves the repository"):
        sources.unpack(settings, "shop", COMMIT, tmp_path / "tree")
    assert not (tmp_path / "outside.txt").exists()


def test_an_absolute_member_lands_inside_the_tree(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _archive(settings, [_file(f"{tmp_path}/planted.txt")])
    sources.unpack(settings, "shop", COMMIT, tmp_path / "tree")
    assert not (tmp_path / "planted.txt").exists()
    assert (tmp_path / "tree" / str(tmp_path).lstrip("/") / "planted.txt").is_file()


def test_a_symlinked_context_inside_the_tree_that_points_out_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    (root / "web").mkdir(parents=True)
    (root / "web" / "Dockerfile").write_text("FROM scratch\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    (root / "link").symlink_to(outside)
    with pytest.raises(ValidationFailed, match="leads outside the repository"):
        sources.build_paths(root, "link", None)
    (root / "web" / "Dockerfile.out").symlink_to(outside / "Dockerfile")
    with pytest.raises(ValidationFailed, match=r"Dockerfile Dockerfile\.out leads outside"):
        sources.build_paths(root, "web", "Dockerfile.out")


def test_a_missing_archive_says_how_to_send_it(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="`deploymate app deploy` in the repository sends it"):
        sources.unpack(_settings(tmp_path), "shop", COMMIT, tmp_path / "tree")


def test_the_build_command_is_an_argument_list_with_secrets_as_files(tmp_path: Path) -> None:
    plain = build.build(
        "shop-web:" + COMMIT,
        tmp_path / "web",
        tmp_path / "web" / "Dockerfile",
        target="prod",
        args={"VERSION": "1.4; rm -rf /"},
    )
    assert plain.argv[:2] == ("docker", "build") and plain.argv[-1] == str(tmp_path / "web")
    at = plain.argv.index("--build-arg")
    assert plain.argv[at + 1] == "VERSION=1.4; rm -rf /"  # one argument, inert
    assert "--target" in plain.argv and "--secret" not in plain.argv
    secret = build.build(
        "t:1", tmp_path, tmp_path / "Dockerfile", secret_files={"NPM_TOKEN": tmp_path / "s"}
    )
    assert secret.argv[:2] == ("env", "DOCKER_BUILDKIT=1")
    assert f"id=NPM_TOKEN,src={tmp_path / 's'}" in secret.argv
    assert build.tag_for("shop", "web", COMMIT) == f"shop-web:{COMMIT}"
