"""JSON API for login, logout, the current user, password change and API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from deploymate.auth import service
from deploymate.auth.cookies import clear_session_cookie, set_session_cookie
from deploymate.auth.schemas import (
    ChangePasswordRequest,
    LoginRequest,
    LoginResponse,
    TokenCreate,
    TokenCreated,
    TokenOut,
    UserOut,
)
from deploymate.core import scopes
from deploymate.deps import (
    CallerDep,
    DbDep,
    IdPath,
    SettingsDep,
    client_address,
    csrf_token,
    session_secret,
)

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post("/login")
async def login(
    body: LoginRequest, request: Request, response: Response, db: DbDep, settings: SettingsDep
) -> LoginResponse:
    new = await service.login(
        db,
        settings=settings,
        username=body.username,
        password=body.password,
        client_address=client_address(request),
        user_agent=request.headers.get("user-agent"),
        previous_secret=session_secret(request, settings),
    )
    set_session_cookie(response, settings, new.secret)
    return LoginResponse(user=UserOut.model_validate(new.user), csrf_token=new.csrf_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(me: CallerDep, response: Response, db: DbDep, settings: SettingsDep) -> None:
    await service.logout(db, caller=me)
    clear_session_cookie(response, settings)


@router.get("/me")
async def who_am_i(me: CallerDep, db: DbDep) -> LoginResponse:
    assert me.user_id is not None
    user = await service.get(db, user_id=me.user_id)
    return LoginResponse(user=UserOut.model_validate(user), csrf_token=csrf_token(me))


@router.post("/change-password")
async def change_password(
    body: ChangePasswordRequest,
    request: Request,
    response: Response,
    me: CallerDep,
    db: DbDep,
    settings: SettingsDep,
) -> LoginResponse:
    """Ends every session and API token of the user, then opens a fresh session for this
    browser (a token-authenticated call gets none: its token has ended too)."""
    user = await service.change_password(
        db, caller=me, current_password=body.current_password, new_password=body.new_password
    )
    if me.via == "token":
        return LoginResponse(user=UserOut.model_validate(user), csrf_token=None)
    new = await service.issue_session(
        db,
        settings=settings,
        user=user,
        client_address=client_address(request),
        user_agent=request.headers.get("user-agent"),
    )
    set_session_cookie(response, settings, new.secret)
    return LoginResponse(user=UserOut.model_validate(new.user), csrf_token=new.csrf_token)


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
async def create_token(body: TokenCreate, me: CallerDep, db: DbDep) -> TokenCreated:
    row, token = await service.create_api_token(
        db,
        caller=me,
        name=body.name,
        scopes=scopes.normalise(body.scopes),
        expires_in_days=body.expires_in_days,
    )
    return TokenCreated(
        id=row.id,
        name=row.name,
        token=token,
        scopes=list(row.scope_list or ()),
        expires_at=row.expires_at,
    )


@router.get("/tokens")
async def list_tokens(me: CallerDep, db: DbDep) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in await service.list_api_tokens(db, caller=me)]


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(token_id: IdPath, me: CallerDep, db: DbDep) -> None:
    await service.revoke_api_token(db, caller=me, token_id=token_id)
