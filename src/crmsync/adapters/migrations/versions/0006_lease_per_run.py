"""A lease belongs to a run, and says which process on which machine holds it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

``token`` identifies the run holding a connector's lease (a second run of the same
process is refused); ``machine``, ``pid`` and ``process_started`` let a run on the
same machine tell a dead holder from a live one without trusting a reused pid.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_leases") as batch:
        batch.add_column(sa.Column("token", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("machine", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("process_started", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_leases") as batch:
        for column in ("process_started", "pid", "machine", "token"):
            batch.drop_column(column)
