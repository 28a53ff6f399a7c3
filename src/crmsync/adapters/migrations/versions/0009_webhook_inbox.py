"""The webhook inbox: deliveries stored before they are acknowledged

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

``webhook_inbox`` holds every event of an accepted webhook delivery, one row per
connector and event key (the unique key drops a re-delivery), until the worker has
applied it (``done``) or set it aside after too many attempts (``failed``). A pending
event is due from ``next_attempt_at``; a claim pushes that forward, so an event a
dead worker had claimed comes back by itself. The partial index finds the due
events of a connector without reading the processed ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "webhook_inbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connector", sa.String(length=100), nullable=False),
        sa.Column("event_key", sa.String(length=300), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("object_type", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("merged_ids", _JSON, nullable=False),
        sa.Column("related_ids", _JSON, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_inbox"),
        sa.UniqueConstraint("connector", "event_key", name="uq_webhook_inbox_connector_event_key"),
    )
    op.create_index(
        "ix_webhook_inbox_due",
        "webhook_inbox",
        ["connector", "next_attempt_at"],
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    op.create_index("ix_webhook_inbox_status", "webhook_inbox", ["status", "processed_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_status", table_name="webhook_inbox")
    op.drop_index("ix_webhook_inbox_due", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
