"""Which operations a deployment's page offers for each state."""

from __future__ import annotations

import pytest

from deploymate.deployments.pages import operations_for


@pytest.mark.parametrize(
    ("status", "serving", "offered"),
    [
        ("running", True, ["stop", "restart", "delete"]),
        ("stopped", True, ["start", "delete"]),
        ("failed", True, ["start", "restart", "delete"]),
        ("failed", False, ["delete"]),
        ("deploying", False, ["delete"]),
        ("deleted", True, []),
    ],
)
def test_only_the_operations_that_fit_the_state_are_offered(
    status: str, serving: bool, offered: list[str]
) -> None:
    assert operations_for(status, serving) == offered
