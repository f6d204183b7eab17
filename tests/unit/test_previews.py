"""Preview slugs and branch names: the table the closing note quotes. No instance."""

from __future__ import annotations

import pytest

from deploymate.apps import previews
from deploymate.apps.models import AppPreview
from deploymate.core.errors import ValidationFailed

SLUGS = [
    ("main", "main"),
    ("feature/Login", "feature-login"),
    ("feature-login", "feature-login"),
    ("Fix_Bug#12", "fix-bug-12"),
    ("release/2026.12", "release-2026-12"),
    ("--weird--", "weird"),
    ("a" * 60, "a" * 40),
    ("x" * 39 + "/y", "x" * 39),  # cut at 40, then the trailing - trimmed
    ("___", "branch"),
]


@pytest.mark.parametrize(("branch", "slug"), SLUGS)
def test_a_branch_becomes_a_dns_label_of_at_most_40(branch: str, slug: str) -> None:
    assert previews.slugify(branch) == slug


def test_a_colliding_slug_gets_a_short_hash_that_stays_a_label() -> None:
    hashed = previews._hashed("feature-login")
    assert hashed.startswith("feature-login-") and len(hashed) == len("feature-login-") + 6
    long = previews._hashed("b" * 80)
    assert len(long) <= 40 and long != previews._hashed("b" * 81)


@pytest.mark.parametrize(
    "branch",
    ["x" * 201, "feat;rm -rf /", "$(reboot)", "a b", "../main", "-rf", "topic/", "x.lock", ""],
)
def test_branch_names_a_shell_could_misread_are_refused(branch: str) -> None:
    with pytest.raises(ValidationFailed, match="is not a branch name DeployMate accepts"):
        previews.check_branch(branch)


def test_the_preview_environment_has_its_domain_env_and_the_staging_servers() -> None:
    spec = {
        "app": "shop",
        "services": {"web": {"domains": ["shop.example.com"]}, "api": {"domains": ["a.test"]}},
        "environments": {"staging": {"servers": ["s1"]}, "production": {"servers": ["p1"]}},
        "preview": {"domain": "pr.example.com", "env": {"DB_NAME": "shop_{slug}"}},
    }
    preview = AppPreview(slug="feature-login", environment="preview-feature-login")
    env = previews.environment_for(spec, preview)
    assert env == {
        "kind": "preview",
        "servers": ["s1"],
        "domains": {
            "web": ["feature-login.pr.example.com"],
            "api": ["api-feature-login.pr.example.com"],
        },
        "env": {"DB_NAME": "shop_feature-login"},
    }
