"""Admin API; every route here requires the admin role through the router's dependency."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status
from sqlalchemy import select

from deploymate.auth import service as auth_service
from deploymate.auth.models import User
from deploymate.auth.schemas import UserCreate, UserCreated, UserOut
from deploymate.deps import AdminPrincipal, DbDep, require_admin

router = APIRouter(prefix="/api/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.get("/users")
async def list_users(db: DbDep) -> list[UserOut]:
    rows = await db.execute(select(User).order_by(User.username))
    return [UserOut.model_validate(u) for u in rows.scalars()]


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, principal: AdminPrincipal, db: DbDep) -> UserCreated:
    """New users change their password at first login."""
    user, generated = await auth_service.create_user(
        db,
        actor=principal.actor,
        username=body.username,
        role=body.role,
        password=body.password,
        must_change_password=True,
    )
    return UserCreated(user=UserOut.model_validate(user), temporary_password=generated)
