"""contacts.email_valid may be NULL: an address not checked yet

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

CRM contacts are stored with their address as the CRM holds it, and its syntax is
checked when it first matters (the primary billing contact's, by the readiness
refresh) instead of for every contact of a bulk import. Existing rows keep the
outcome of their check.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.alter_column("email_valid", existing_type=sa.Boolean(), nullable=True)


def downgrade() -> None:
    # An unchecked address counts as not valid until the next refresh checks it.
    op.execute("UPDATE contacts SET email_valid = false WHERE email_valid IS NULL")
    with op.batch_alter_table("contacts") as batch:
        batch.alter_column("email_valid", existing_type=sa.Boolean(), nullable=False)
