"""Alembic environment: migrations run on the connection crm-sync hands over."""

from __future__ import annotations

from alembic import context

from crmsync.adapters.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - crm-sync always passes a connection
    raise RuntimeError("run migrations through `crm-sync db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
