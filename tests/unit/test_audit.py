"""Audit details: secret-named keys are redacted at any depth, other keys kept."""

from __future__ import annotations

from deploymate.audit.service import _scrub


def test_audit_details_scrub_secret_names_only_and_nested() -> None:
    scrubbed = _scrub(
        {
            "host_key_pinned": True,
            "password": "p",
            "nested": {"api_token": "t"},
            "items": [{"secret": "s", "name": "n"}],
        }
    )
    assert scrubbed == {
        "host_key_pinned": True,
        "password": "[redacted]",
        "nested": {"api_token": "[redacted]"},
        "items": [{"secret": "[redacted]", "name": "n"}],
    }
