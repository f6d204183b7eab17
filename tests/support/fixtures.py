"""Pytest plugin for end-to-end tests: lab hosts (sshd + dockerd in a netns) and test images.

Registered by the main conftest (`pytest_plugins = ["tests.support.fixtures"]`). A missing part
fails the test naming that part; nothing is silently skipped (the same locally and in CI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support import images
from tests.support.lab import Lab, LabHost, ensure_control_dockerd, missing_parts

_TIMINGS: list[tuple[str, float, float]] = []


def require_lab_parts() -> None:
    """Fail (never skip) when the machine lacks something the lab needs, naming it."""
    missing = missing_parts()
    if not images.BUSYBOX.exists() or not images.is_static_elf(images.BUSYBOX):
        missing.append(f"static {images.BUSYBOX} (Debian package busybox-static)")
    if missing:
        parts = ", ".join(missing)
        pytest.fail(
            f"required test part missing: {parts} (scripts/install-test-deps.sh)", pytrace=False
        )


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The session's lab; every host it made is torn down at session end, pass or fail."""
    require_lab_parts()
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        the_lab.teardown()
        _TIMINGS.extend(the_lab.timings)


@pytest.fixture(scope="module")
def lab_host(lab: Lab) -> Iterator[LabHost]:
    """One host shared by a module's tests (do not break it: use lab_host_factory for that)."""
    host = lab.add_host()
    yield host
    lab.remove_host(host)


@pytest.fixture
def lab_host_factory(lab: Lab) -> Iterator[Callable[..., LabHost]]:
    """`make(password_auth=False, disk_mb=None) -> LabHost`: fresh hosts for one test, removed
    after it (`disk_mb`: Docker's data root on a tmpfs of that size)."""
    made: list[LabHost] = []

    def make(*, password_auth: bool = False, disk_mb: int | None = None) -> LabHost:
        host = lab.add_host(password_auth=password_auth, disk_mb=disk_mb)
        made.append(host)
        return host

    yield make
    for host in made:
        lab.remove_host(host)


@pytest.fixture(scope="session")
def test_images() -> dict[str, str]:
    """The dm-test/* images on the control host's dockerd (tag -> image ID)."""
    require_lab_parts()
    ensure_control_dockerd()
    ids = images.build_images(None)
    ids[images.CADDY] = images.build_caddy_image(None)
    return ids


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Report each lab host's start-up and tear-down time, to keep an eye on suite speed."""
    if not _TIMINGS:
        return
    terminalreporter.section("lab hosts")
    for name, up, down in _TIMINGS:
        terminalreporter.write_line(f"{name}: start-up {up:.2f}s, tear-down {down:.2f}s")


def host_report(host: LabHost, lines: int = 40) -> str:
    """What a lab host says about itself: daemon log tails, its containers and their logs."""
    parts = [f"=== {host.name} ({host.address})"]
    for log in ("sshd.log", "dockerd.log"):
        path = host.dir / log
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        parts.append(f"--- {log} (last {lines} lines)\n" + "\n".join(text.splitlines()[-lines:]))
    try:
        ps = host.docker("ps", "--all", "--format", "{{.Names}}\t{{.Status}}", check=False)
        parts.append("--- containers\n" + (ps.stdout.strip() or ps.stderr.strip() or "(none)"))
        for name in [line.split("\t")[0] for line in ps.stdout.splitlines() if line.strip()]:
            logs = host.docker("logs", "--tail", "20", name, check=False, timeout=20)
            parts.append(f"--- logs of {name}\n" + (logs.stdout + logs.stderr).strip())
    except Exception as exc:  # the host may be the very thing that broke
        parts.append(f"--- docker unavailable: {exc}")
    return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """When an end-to-end test fails, attach every live lab host's logs to its report."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    the_lab = funcargs.get("lab") or next(
        (v.lab for v in funcargs.values() if isinstance(v, LabHost)), None
    )
    if report.failed and the_lab is not None and call.when in ("setup", "call"):
        hosts = list(the_lab.hosts)
        report.sections.append(
            ("lab hosts", "\n\n".join(host_report(h) for h in hosts) or "(no live host)")
        )
