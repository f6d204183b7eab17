"""The bundle analysis as a pure function (no database, no app)."""

from __future__ import annotations

from deploymate.backup import analysis


def test_the_analysis_refuses_oversized_bundles_itself() -> None:
    report = analysis.analyse(
        b"{}" * 600, current=analysis.CurrentState(), can_decrypt=bool, max_bytes=1024
    )
    assert report.fatal is not None and report.fatal.code == "bundle_too_large"
    assert report.http_status == 413 and "limit is 1024 bytes" in report.fatal.message
