"""Imports every domain's models so Alembic and the app see the whole schema."""

from deploymate.audit.models import AuditEvent
from deploymate.auth.models import ApiToken, AuthSession, User

__all__ = ["ApiToken", "AuditEvent", "AuthSession", "User"]
