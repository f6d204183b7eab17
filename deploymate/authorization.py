"""`python -m deploymate.authorization > docs/authorization.md`: the authorization matrix of
this application's routes (see deploymate.web.access_matrix), for review and for the test that
fails when the document no longer matches the routes."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from deploymate.app import create_app
from deploymate.core.config import Settings
from deploymate.web.access_matrix import markdown, rules


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), env="development")
        sys.stdout.write(markdown(rules(create_app(settings))))


if __name__ == "__main__":
    main()
