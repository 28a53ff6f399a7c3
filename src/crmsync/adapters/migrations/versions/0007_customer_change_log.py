"""A change log per customer, a version per customer, and merged customers kept

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

``customers.version`` counts a customer's logged changes (every existing customer
starts at 1); ``customer_changes`` holds one entry per customer and version: what
changed (field, old, new), why (``cause``) and when (``at``). ``customers.merged_into``
marks a customer a CRM merge folded into another: it is kept (a billing platform may
know it) instead of deleted.

Every existing customer gets a baseline entry, version 1, recording its state as the
upgrade found it (cause ``store upgrade``), so that replaying any customer's log from
version 1 gives its state. What the state holds is copied here, not imported (see
``crmsync.domain.changes``), so this migration keeps doing what it did when written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_BATCH = 1_000
_CAUSE = "store upgrade: the customer's state when the change log began"

# the scalar fields of the state a customers row holds, in log order
_FIELDS = (
    "company_name",
    "line1",
    "line2",
    "city",
    "state",
    "postal_code",
    "country",
    "tax_status",
    "tax_status_source",
    "manual_primary_contact_id",
)
_customers = sa.table(
    "customers",
    sa.column("id", sa.String),
    *(sa.column(name, sa.Text) for name in _FIELDS),
    sa.column("alias_conflicts", _JSON),
    sa.column("ready", sa.Boolean),
    sa.column("blocked_reasons", _JSON),
    sa.column("archived_at", sa.DateTime(timezone=True)),
)
_contacts = sa.table(
    "contacts",
    sa.column("id", sa.String),
    sa.column("customer_id", sa.String),
    sa.column("name", sa.Text),
    sa.column("email", sa.Text),
    sa.column("billing_preference", sa.String),
    sa.column("removed_at", sa.DateTime(timezone=True)),
)
_aliases = sa.table("aliases", sa.column("value", sa.String), sa.column("customer_id", sa.String))
_changes = sa.table(
    "customer_changes",
    sa.column("customer_id", sa.String),
    sa.column("version", sa.Integer),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("cause", sa.String),
    sa.column("changes", _JSON),
)


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("merged_into", sa.String(length=40), nullable=True))
    op.create_table(
        "customer_changes",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cause", sa.String(length=200), nullable=False),
        sa.Column("changes", _JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name="fk_customer_changes_customer_id_customers",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "version", name="pk_customer_changes"),
    )
    _log_baselines(op.get_bind())


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _baseline(row: Any, contacts: list[Any], aliases: list[str]) -> list[list[Any]]:
    """The entry that takes an empty customer to ``row``'s state: [field, old, new]."""
    changes: list[list[Any]] = [
        [name, None, row._mapping[name]] for name in _FIELDS if row._mapping[name] is not None
    ]
    primary = next((c for c in contacts if c.billing_preference == "PRIMARY"), None)
    if primary is not None:
        person = {"id": primary.id, "name": primary.name, "email": primary.email}
        changes.append(["primary_contact", None, person])
    changes.append(["alias_conflicts", None, list(row.alias_conflicts or [])])
    changes.append(["ready", None, bool(row.ready)])
    codes = [str(reason["code"]) for reason in row.blocked_reasons or []]
    if codes:
        changes.append(["blocked", None, codes])
    if row.archived_at is not None:
        changes.append(["archived_at", None, _iso(row.archived_at)])
    changes += [["aliases", None, value] for value in sorted(aliases)]
    changes += [["contacts", None, contact_id] for contact_id in sorted(c.id for c in contacts)]
    return changes


def _log_baselines(conn: sa.Connection) -> None:
    now = datetime.now(UTC)
    at = now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now
    last = ""
    while True:
        rows = conn.execute(
            sa.select(_customers)
            .where(_customers.c.id > last)
            .order_by(_customers.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        ids = [row.id for row in rows]
        people: dict[str, list[Any]] = {cid: [] for cid in ids}
        for contact in conn.execute(
            sa.select(_contacts).where(
                _contacts.c.customer_id.in_(ids), _contacts.c.removed_at.is_(None)
            )
        ):
            people[contact.customer_id].append(contact)
        names: dict[str, list[str]] = {cid: [] for cid in ids}
        for value, customer_id in conn.execute(
            sa.select(_aliases.c.value, _aliases.c.customer_id).where(
                _aliases.c.customer_id.in_(ids)
            )
        ):
            names[customer_id].append(value)
        conn.execute(
            sa.insert(_changes),
            [
                {
                    "customer_id": row.id,
                    "version": 1,
                    "at": at,
                    "cause": _CAUSE,
                    "changes": _baseline(row, people[row.id], names[row.id]),
                }
                for row in rows
            ],
        )
        last = ids[-1]


def downgrade() -> None:
    op.drop_table("customer_changes")
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("merged_into")
        batch.drop_column("version")
