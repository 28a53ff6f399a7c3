"""Readiness is recomputed once per pass: customers waiting for it are marked

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

A sync page writes its records and marks the customers they touch
``refresh_pending``; their primary contact and readiness are recomputed in batches
(when many are waiting, at the end of each stream, and before anything trusts
``ready``). The partial index finds the waiting ones without scanning the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WAITING = sa.text("refresh_pending")


def upgrade() -> None:
    # a plain ADD COLUMN: rebuilding ``customers`` on SQLite would cascade to its children
    op.add_column(
        "customers",
        sa.Column("refresh_pending", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_index(
        "ix_customers_refresh_pending",
        "customers",
        ["id"],
        postgresql_where=_WAITING,
        sqlite_where=_WAITING,
    )


def downgrade() -> None:
    op.drop_index("ix_customers_refresh_pending", table_name="customers")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("refresh_pending")
