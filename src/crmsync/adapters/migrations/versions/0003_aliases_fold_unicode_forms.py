"""aliases.folded compares Unicode forms too (NFKC and case folding)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

Until now two customers could hold ``CAFÉ-1`` written composed (NFC) and decomposed
(NFD): the unique key folded case only. The key is now the NFKC normalisation of the
case-folded value. Existing keys are recomputed; where two stored aliases now share a
key, the older keeps it and the other is removed and recorded as an alias conflict of
its customer (held as ``alias_conflict`` until a person resolves it). Only aliases with
characters outside ASCII can change. The fold is copied here, not imported, so this
migration keeps doing what it did when it was written.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MAX = 255

_aliases = sa.table(
    "aliases",
    sa.column("value", sa.String),
    sa.column("folded", sa.String),
    sa.column("customer_id", sa.String),
    sa.column("created_at", sa.DateTime),
)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_customers = sa.table(
    "customers",
    sa.column("id", sa.String),
    sa.column("alias_conflicts", _JSON),
    sa.column("blocked_reasons", _JSON),
    sa.column("ready", sa.Boolean),
)


def _fold(value: str) -> str:
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    if len(folded) <= _MAX:
        return folded
    digest = hashlib.sha256(folded.encode()).hexdigest()
    return f"{folded[: _MAX - len(digest) - 1]}#{digest}"


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_aliases.c.value, _aliases.c.folded, _aliases.c.customer_id)
        .order_by(_aliases.c.created_at, _aliases.c.value)
        .execution_options(yield_per=10_000)
    )
    changed = [
        (row.value, _fold(row.value), row.customer_id)
        for row in rows
        if not row.value.isascii() and _fold(row.value) != row.folded
    ]
    for value, key, customer_id in changed:
        holder = conn.execute(
            sa.select(_aliases.c.value).where(_aliases.c.folded == key, _aliases.c.value != value)
        ).first()
        if holder is None:
            conn.execute(sa.update(_aliases).where(_aliases.c.value == value).values(folded=key))
            continue
        conn.execute(sa.delete(_aliases).where(_aliases.c.value == value))
        row = conn.execute(
            sa.select(_customers.c.alias_conflicts, _customers.c.blocked_reasons).where(
                _customers.c.id == customer_id
            )
        ).one()
        reason = {
            "code": "alias_conflict",
            "message": f"The CRM gives this customer the alias {value!r}, which another "
            "customer already holds; aliases must be unique.",
        }
        conn.execute(
            sa.update(_customers)
            .where(_customers.c.id == customer_id)
            .values(
                alias_conflicts=[*(row.alias_conflicts or []), value],
                blocked_reasons=[*(row.blocked_reasons or []), reason],
                ready=False,
            )
        )


def downgrade() -> None:
    # The case-only key of revision 0002; run while no two aliases share it.
    conn = op.get_bind()
    for value, folded in conn.execute(sa.select(_aliases.c.value, _aliases.c.folded)).all():
        if folded != value.casefold():
            conn.execute(
                sa.update(_aliases).where(_aliases.c.value == value).values(folded=value.casefold())
            )
