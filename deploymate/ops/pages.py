"""The console's home, /app: first steps, deployment cards and, for admins, the ops overview."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from deploymate.deployments import presenters
from deploymate.deployments import service as deployments
from deploymate.deps import CallerDep, DbDep
from deploymate.ops import service
from deploymate.web.render import STATIC_DIR, render

router = APIRouter(include_in_schema=False)
CARDS = 24  # deployment cards on the home page; the API and the CLI list them all


@router.get("/app", response_class=HTMLResponse)
async def home(request: Request, me: CallerDep, db: DbDep) -> Response:
    deps = await deployments.list_for(db, caller=me, limit=CARDS)
    dismissed = await service.steps_dismissed(db, caller=me)
    context: dict[str, Any] = {
        "steps": None if dismissed else await service.first_steps(db, caller=me),
        "ops": await service.overview(db) if me.is_admin else None,
        "deployment_cards": await presenters.cards(db, deps=deps),
    }
    return render(request, "overview.html", context, me=me)


@router.post("/app/steps/dismiss")
async def dismiss_steps(me: CallerDep, db: DbDep) -> Response:
    """Hide the getting-started steps for good (per user)."""
    await service.dismiss_steps(db, caller=me)
    return RedirectResponse("/app", status_code=303)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """Browsers ask for it at the root, whatever the page says."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")
