"""The store's tables (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Migrations under ``migrations/`` create and change these tables; this module is
what the code queries. Rules the database itself enforces:

- one PRIMARY contact per customer (a partial unique index);
- aliases unique across all customers, also when they differ only by case (a
  unique index on the case-folded value), and the customer's own id is an alias;
- one customer per CRM record (the primary key of ``external_refs``);
- one contact per (customer, CRM contact).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

__all__ = [
    "aliases",
    "billing_links",
    "billing_schedules",
    "contacts",
    "customer_changes",
    "customers",
    "external_refs",
    "invoices",
    "metadata",
    "pending_links",
    "quarantine",
    "sync_leases",
    "sync_runs",
    "sync_state",
    "webhook_inbox",
]


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonType: Any = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

ID = sa.String(40)
NAME = sa.String(100)
EXTERNAL_ID = sa.String(255)
HASH = sa.String(32)


def _customer_fk() -> sa.ForeignKey:
    return sa.ForeignKey("customers.id", ondelete="CASCADE")


customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("company_name", sa.Text),
    sa.Column("line1", sa.Text),
    sa.Column("line2", sa.Text),
    sa.Column("city", sa.Text),
    sa.Column("state", sa.Text),
    sa.Column("postal_code", sa.Text),
    sa.Column("country", sa.Text),
    sa.Column("tax_status", sa.String(20), nullable=False),
    sa.Column("tax_status_source", sa.String(10), nullable=False),
    sa.Column("manual_primary_contact_id", ID),
    sa.Column("manual_primary_set_at", UtcDateTime),
    sa.Column("alias_conflicts", JsonType, nullable=False),
    sa.Column("ready", sa.Boolean, nullable=False, index=True),
    sa.Column("blocked_reasons", JsonType, nullable=False),
    sa.Column("archived_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    # bumped by every logged change (adapters/changelog.py); the log's entries carry it
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    # set when a CRM merge folded this customer into another: kept, never listed or ready
    sa.Column("merged_into", ID),
    # touched by a write whose readiness recompute is still to come (adapters/readiness.py)
    sa.Column("refresh_pending", sa.Boolean, nullable=False, server_default=sa.false()),
)
sa.Index(
    "ix_customers_refresh_pending",
    customers.c.id,
    postgresql_where=customers.c.refresh_pending,
    sqlite_where=customers.c.refresh_pending,
)

customer_changes = sa.Table(
    "customer_changes",
    metadata,
    sa.Column("customer_id", ID, _customer_fk(), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("at", UtcDateTime, nullable=False),  # no index: pruning is rare, writes are not
    sa.Column("cause", sa.String(200), nullable=False),
    sa.Column("changes", JsonType, nullable=False),
)

external_refs = sa.Table(
    "external_refs",
    metadata,
    sa.Column("connector", NAME, primary_key=True),
    sa.Column("object_type", sa.String(20), primary_key=True),
    sa.Column("external_id", EXTERNAL_ID, primary_key=True),
    sa.Column(
        "customer_id",
        ID,
        # Deferred so that a writer can claim the CRM record before creating the
        # customer (the claim is what concurrent writers race on).
        sa.ForeignKey("customers.id", ondelete="CASCADE", deferrable=True, initially="DEFERRED"),
        nullable=False,
        index=True,
    ),
    sa.Column("content_hash", HASH, nullable=False),
    sa.Column("source_modified_at", UtcDateTime),
    sa.Column("deleted_at", UtcDateTime),
    sa.Column("merged_into", EXTERNAL_ID),
    sa.Column("seen_at", UtcDateTime),  # last full pass of a snapshot source that held it
    sa.Column("source_read_at", UtcDateTime),  # when crm-sync read the stored version
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("customer_id", ID, _customer_fk(), nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("email", sa.Text),
    # NULL until checked: the readiness refresh checks the primary's address when it
    # first matters, readers check the others when they show them.
    sa.Column("email_valid", sa.Boolean),
    sa.Column("billing_preference", sa.String(10), nullable=False),
    sa.Column("origin", sa.String(10), nullable=False),
    sa.Column("connector", NAME),
    sa.Column("external_id", EXTERNAL_ID),
    sa.Column("crm_designated", sa.Boolean, nullable=False),
    sa.Column("designated_at", UtcDateTime),
    sa.Column("content_hash", HASH),
    sa.Column("source_modified_at", UtcDateTime),
    sa.Column("removed_at", UtcDateTime),
    sa.Column("seen_at", UtcDateTime),  # last full pass of a snapshot source that held it
    sa.Column("source_read_at", UtcDateTime),  # when crm-sync read the stored version
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("customer_id", "connector", "external_id"),
    sa.Index("ix_contacts_connector_external_id", "connector", "external_id"),
    sa.Index(
        "uq_contacts_one_primary_per_customer",
        "customer_id",
        unique=True,
        sqlite_where=sa.text("billing_preference = 'PRIMARY'"),
        postgresql_where=sa.text("billing_preference = 'PRIMARY'"),
    ),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("value", sa.String(255), primary_key=True),
    sa.Column("folded", sa.String(255), nullable=False, unique=True),
    sa.Column("customer_id", ID, _customer_fk(), nullable=False, index=True),
    sa.Column("source", sa.String(10), nullable=False),
    sa.Column("connector", NAME),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

pending_links = sa.Table(
    "pending_links",
    metadata,
    sa.Column("connector", NAME, primary_key=True),
    sa.Column("contact_external_id", EXTERNAL_ID, primary_key=True),
    sa.Column("company_external_id", EXTERNAL_ID, primary_key=True),
    sa.Column("record", JsonType, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index("ix_pending_links_company", "connector", "company_external_id"),
)

billing_schedules = sa.Table(
    "billing_schedules",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("customer_id", ID, _customer_fk(), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("archived_at", UtcDateTime),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

invoices = sa.Table(
    "invoices",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("customer_id", ID, _customer_fk(), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)

sync_state = sa.Table(
    "sync_state",
    metadata,
    sa.Column("connector", NAME, primary_key=True),
    sa.Column("stream", sa.String(20), primary_key=True),
    sa.Column("cursor", JsonType, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("pass_started_at", UtcDateTime),  # when the full pass under way began
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connector", NAME, nullable=False, index=True),
    sa.Column("mode", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("heartbeat_at", UtcDateTime, nullable=False),
    sa.Column("finished_at", UtcDateTime),
    sa.Column("seen", sa.Integer, nullable=False),
    sa.Column("created", sa.Integer, nullable=False),
    sa.Column("updated", sa.Integer, nullable=False),
    sa.Column("unchanged", sa.Integer, nullable=False),
    sa.Column("quarantined", sa.Integer, nullable=False),
    sa.Column("stale", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    sa.Column("worker", sa.String(200), nullable=False),
)

sync_leases = sa.Table(
    "sync_leases",
    metadata,
    sa.Column("connector", NAME, primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("token", sa.String(32)),  # the run holding it (see adapters/leases.py)
    sa.Column("machine", sa.String(300)),
    sa.Column("pid", sa.Integer),
    sa.Column("process_started", sa.Float),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connector", NAME, nullable=False),
    sa.Column("object_type", sa.String(20), nullable=False),
    sa.Column("record_key", sa.String(300), nullable=False),
    sa.Column("external_id", EXTERNAL_ID),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Column("occurrences", sa.Integer, nullable=False),
    sa.Column("first_seen_at", UtcDateTime, nullable=False),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("connector", "object_type", "record_key"),
)

webhook_inbox = sa.Table(
    "webhook_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("connector", NAME, nullable=False),
    # the connector's identity of the event: a re-delivery has the same key
    sa.Column("event_key", sa.String(300), nullable=False),
    sa.Column("action", sa.String(10), nullable=False),  # upsert, delete, merge
    sa.Column("object_type", sa.String(20), nullable=False),
    sa.Column("external_id", EXTERNAL_ID, nullable=False),
    sa.Column("merged_ids", JsonType, nullable=False),
    sa.Column("related_ids", JsonType, nullable=False),
    sa.Column("occurred_at", UtcDateTime),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    # due from then; a claim pushes it forward (see adapters/inbox.py)
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # pending, done, failed
    sa.Column("last_error", sa.Text),
    sa.Column("processed_at", UtcDateTime),
    sa.UniqueConstraint("connector", "event_key"),
    sa.Index(
        "ix_webhook_inbox_due",
        "connector",
        "next_attempt_at",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index("ix_webhook_inbox_status", "status", "processed_at"),
)

billing_links = sa.Table(
    "billing_links",
    metadata,
    # one row per customer a push has tried to send (service/push.py)
    sa.Column("customer_id", ID, _customer_fk(), primary_key=True),
    # the billing platform's id; unique: one billing customer is never linked twice
    sa.Column("billing_customer_id", sa.String(255), unique=True),
    sa.Column("pushed_version", sa.Integer),  # the customer version last sent (NULL: none)
    sa.Column("last_outcome", sa.String(20), nullable=False),  # created, updated, conflict, failed
    sa.Column("last_error", sa.Text),
    sa.Column("pushed_at", UtcDateTime, nullable=False),  # when the last push of it ended
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),  # failed in a row
)
