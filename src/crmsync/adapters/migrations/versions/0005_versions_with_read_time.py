"""A record's version is its CRM modification time, then when crm-sync read it

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

``source_read_at`` (on ``external_refs`` and ``contacts``) orders two reads of a record
whose CRM modification time does not tell them apart; ``sync_runs.stale`` counts the
records a run skipped because the store already held a newer version, and
``sync_runs.skipped`` the records deleted in the CRM before crm-sync ever saw them
(they used to be counted as unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("external_refs", "contacts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("source_read_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("stale", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("skipped")
        batch.drop_column("stale")
    for table in ("contacts", "external_refs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("source_read_at")
