"""Who is asking: one type for the signed-in user, the CLI on the control host and the system.

Built fresh for every request from the user's current row, so a right taken away (local
deployments, the admin role) is gone from the next request on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Via = Literal["session", "token", "cli", "system"]


class UserLike(Protocol):
    """What a Caller is built from (the auth domain's User row fits)."""

    @property
    def id(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def can_deploy_local(self) -> bool: ...
    @property
    def must_change_password(self) -> bool: ...


@dataclass(frozen=True)
class Caller:
    user_id: int | None
    username: str
    role: str = "member"  # admin | member (the CLI and the system act with admin rights)
    can_deploy_local: bool = False
    must_change_password: bool = False
    client_address: str | None = None
    via: Via = "system"
    session_secret: str | None = field(default=None, repr=False)
    # An API token's scopes (core.scopes); None: the user's full rights.
    scopes: tuple[str, ...] | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def owns(self, owner_id: int | None) -> bool:
        """Admins see and use everything; members what they own."""
        return self.is_admin or (owner_id is not None and owner_id == self.user_id)

    @classmethod
    def of(
        cls,
        user: UserLike,
        *,
        via: Via,
        client_address: str | None,
        session_secret: str | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> Caller:
        return cls(
            user_id=user.id,
            username=user.username,
            role=user.role,
            can_deploy_local=user.can_deploy_local,
            must_change_password=user.must_change_password,
            client_address=client_address,
            via=via,
            session_secret=session_secret,
            scopes=scopes,
        )

    @classmethod
    def system(cls, name: str = "system", address: str | None = None) -> Caller:
        via: Via = "cli" if name == "cli" else "system"
        return cls(user_id=None, username=name, role="admin", client_address=address, via=via)

    @classmethod
    def anonymous(cls, username: str, address: str | None) -> Caller:
        """Someone not signed in yet (a login attempt), for the audit log."""
        return cls(user_id=None, username=username[:64], role="", client_address=address)
