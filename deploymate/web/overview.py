"""The first-time path shown on the overview: what is done and what comes next."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deploymate import models  # noqa: F401  (every table registered)
from deploymate.db import Base
from deploymate.deps import Principal


async def _count(db: AsyncSession, table_name: str) -> int:
    table = Base.metadata.tables.get(table_name)
    if table is None:
        return 0
    return int((await db.execute(select(func.count()).select_from(table))).scalar_one())


async def first_steps(db: AsyncSession, principal: Principal) -> list[dict[str, Any]]:
    servers = await _count(db, "servers")
    deployments = await _count(db, "deployments")
    return [
        {
            "title": "Secure your account",
            "done": not principal.user.must_change_password,
            "detail": "Choose your own password.",
            "href": "/app/change-password",
        },
        {
            "title": "Add a server",
            "done": servers > 0,
            "detail": f"{servers} server(s) registered."
            if servers
            else "Register an SSH target and pin its host key.",
            "href": "/app/server-review",
        },
        {
            "title": "Create a deployment",
            "done": deployments > 0,
            "detail": f"{deployments} deployment(s)."
            if deployments
            else "Deploy a container image with a health check.",
            "href": "/app/deployment-workflow",
        },
    ]
