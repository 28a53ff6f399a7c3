"""Billing links: which billing customer each customer was pushed to, and how it went

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

``billing_links`` holds one row per customer that a push has tried to send: the
billing platform's customer id (unique: one billing customer is never linked to two
customers), the customer version last pushed (a customer whose version equals it costs
no request), the last outcome (created, updated, conflict, failed) with its error, when
the last push of it ended and how many attempts failed in a row. A new table only: the
``customers`` table is left as it is (a batch rebuild of it on SQLite would cascade
deletes to its children).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_links",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("billing_customer_id", sa.String(length=255), nullable=True),
        sa.Column("pushed_version", sa.Integer(), nullable=True),
        sa.Column("last_outcome", sa.String(length=20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name="fk_billing_links_customer_id_customers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name="pk_billing_links"),
        sa.UniqueConstraint("billing_customer_id", name="uq_billing_links_billing_customer_id"),
    )


def downgrade() -> None:
    op.drop_table("billing_links")
