"""Credentials for private image registries, sealed like server credentials."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from deploymate.core.db import Base, UTCDateTime, utcnow


class Registry(Base):
    __tablename__ = "registries"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(String(260), unique=True)  # host[:port], as in image refs
    username: Mapped[str] = mapped_column(String(128))
    password: Mapped[str] = mapped_column(Text)  # Fernet token; never plaintext at rest
    shared: Mapped[bool] = mapped_column(default=False)  # members may pull with it
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
