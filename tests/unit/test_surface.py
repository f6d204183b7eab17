"""Changed-surface detection: the files changed since a commit, mapped to services."""

from __future__ import annotations

from deploymate.apps import surface

SPEC = {
    "services": {
        "web": {"paths": ["web/", "templates/**"]},
        "worker": {"paths": ["worker/*.py", "jobs.yaml"]},
    },
    "shared_paths": ["lib/", "requirements.txt"],
}


def test_a_change_under_one_service_marks_only_that_service() -> None:
    assert surface.compute(SPEC, ["worker/tasks.py"]) == {
        "worker": "worker/tasks.py matches worker/*.py"
    }
    assert surface.compute(SPEC, ["web/app/views.py", "jobs.yaml"]) == {
        "web": "web/app/views.py matches web/",
        "worker": "jobs.yaml matches jobs.yaml",
    }


def test_a_shared_path_marks_every_service() -> None:
    assert surface.compute(SPEC, ["lib/db.py"]) == {
        "web": "shared path: lib/db.py matches lib/",
        "worker": "shared path: lib/db.py matches lib/",
    }


def test_a_change_outside_every_path_marks_nothing() -> None:
    assert surface.compute(SPEC, ["README.md", "docs/intro.md"]) == {}
    assert surface.compute(SPEC, []) == {}


def test_a_service_without_paths_is_always_marked() -> None:
    spec = {"services": {"web": {"paths": ["web/"]}, "cron": {}}}
    assert surface.compute(spec, ["README.md"]) == {"cron": "declares no paths"}


def test_patterns() -> None:
    assert surface.matches("web/a/b.py", "web")  # a directory named without the slash
    assert not surface.matches("webhooks/a.py", "web/")
    assert surface.matches("templates/x/y.html", "./templates/**")
