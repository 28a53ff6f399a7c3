"""Records absent from a complete export are noticed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

For sources whose full pass is a complete snapshot (export files), the engine stamps
each record a full pass delivers (``seen_at`` on ``external_refs`` and ``contacts``)
and keeps when the pass began (``sync_state.pass_started_at``); a record not stamped
since then was removed at the source and is marked deleted when the pass completes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("external_refs", "contacts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("seen_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("sync_state") as batch:
        batch.add_column(sa.Column("pass_started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("pass_started_at")
    for table in ("contacts", "external_refs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("seen_at")
