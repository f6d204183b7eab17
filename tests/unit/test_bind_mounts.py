"""Who may bind-mount a host directory, and where (the rule behind `volumes[].source`)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from deploymate.core.caller import Caller
from deploymate.core.config import Settings as AppSettings
from deploymate.core.errors import ValidationFailed
from deploymate.deployments.schemas import Settings
from deploymate.deployments.service import _check_mounts

ADMIN = Caller(user_id=1, username="root", role="admin")
MEMBER = Caller(user_id=2, username="mia", role="member")


def _context(roots: str) -> Any:
    return SimpleNamespace(settings=AppSettings(bind_mount_roots=roots))


def _with(source: str) -> Settings:
    return Settings.model_validate(
        {
            "image": "registry.test/app:1",
            "internal_port": 80,
            "volumes": [{"source": source, "path": "/files"}],
        }
    )


def test_an_admin_may_mount_under_an_allowed_root() -> None:
    _check_mounts(_context("/srv/shared, /data"), ADMIN, _with("/srv/shared/uploads"))
    _check_mounts(_context("/srv/shared"), ADMIN, _with("/srv/shared"))


@pytest.mark.parametrize("source", ["/srv/sharedother", "/etc", "/srv"])
def test_outside_the_roots_is_refused(source: str) -> None:
    with pytest.raises(ValidationFailed, match="outside the directories allowed"):
        _check_mounts(_context("/srv/shared"), ADMIN, _with(source))


def test_a_member_may_not_bind_mount_at_all() -> None:
    with pytest.raises(ValidationFailed, match="only admins"):
        _check_mounts(_context("/srv/shared"), MEMBER, _with("/srv/shared/x"))


def test_named_volumes_need_no_permission() -> None:
    named = Settings.model_validate(
        {
            "image": "registry.test/app:1",
            "internal_port": 80,
            "volumes": [{"name": "data", "path": "/data"}],
        }
    )
    _check_mounts(_context(""), MEMBER, named)
