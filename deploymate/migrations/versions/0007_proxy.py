"""deployments behind the proxy: domains, TLS, volumes, required env, smoke checks, drain

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 03:00:00

Existing deployments keep their published port and get the defaults (no domains, no volumes,
no checks beyond their health check), so they run exactly as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.alter_column("external_port", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("domains", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("tls", sa.String(length=16), nullable=False, server_default="auto")
        )
        batch_op.add_column(sa.Column("volumes", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("required_env", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(sa.Column("smoke", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("drain_seconds", sa.Float(), nullable=False, server_default="10")
        )
        batch_op.add_column(sa.Column("routed_to", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("smoke_result", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        for column in (
            "smoke_result",
            "routed_to",
            "drain_seconds",
            "smoke",
            "required_env",
            "volumes",
            "tls",
            "domains",
        ):
            batch_op.drop_column(column)
        batch_op.alter_column("external_port", existing_type=sa.Integer(), nullable=False)
