"""app releases: the migration files at the commit, and those production had not applied

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app_releases", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("migration_files", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("pending_migrations", sa.JSON(), nullable=False, server_default="[]")
        )


def downgrade() -> None:
    with op.batch_alter_table("app_releases", schema=None) as batch_op:
        batch_op.drop_column("pending_migrations")
        batch_op.drop_column("migration_files")
