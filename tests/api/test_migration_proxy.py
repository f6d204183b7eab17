"""Upgrading an instance from before the proxy: its deployments keep their published port and
get the defaults of the new settings (migration 0007), readable through the API."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from deploymate.app import create_app
from deploymate.core.db import alembic_config
from tests.conftest import ADMIN_PASSWORD, make_settings
from tests.support.api import login


def _to_0006(path: Path) -> None:
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
    engine.dispose()


def test_a_deployment_from_before_the_proxy_reads_the_same_after_the_upgrade(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "old.db"
    _to_0006(db_file)
    with sqlite3.connect(db_file) as conn:
        conn.execute(
            "INSERT INTO deployments (name, image, internal_port, external_port, env, command,"
            " restart_policy, health_check, labels, status, created_at, updated_at)"
            " VALUES ('legacy', 'dm-test/web:v1', 80, 8123, '{}', NULL, 'unless-stopped',"
            ' \'{"type": "http", "path": "/"}\', \'{}\', \'running\','
            " '2026-11-01 10:00:00', '2026-11-01 10:00:00')"
        )
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{db_file}")
    with TestClient(create_app(settings)) as client:
        client.headers["X-CSRF-Token"] = login(client, "admin", ADMIN_PASSWORD)
        deps = client.get("/api/deployments").json()
        assert len(deps) == 1
        dep = deps[0]
        assert dep["name"] == "legacy" and dep["external_port"] == 8123
        assert dep["domains"] == [] and dep["volumes"] == [] and dep["required_env"] == []
        assert dep["smoke"] == [] and dep["tls"] == "auto" and dep["drain_seconds"] == 10.0
        page = client.get(f"/deployments/{dep['id']}")
        assert page.status_code == 200 and "8123" in page.text
