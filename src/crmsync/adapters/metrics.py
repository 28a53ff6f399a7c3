"""What ``GET /metrics`` reads from the store: a few grouped counts, one query each."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters import inbox
from crmsync.adapters.tables import quarantine, sync_runs

__all__ = ["StoreFigures", "read_figures"]


@dataclass(slots=True)
class StoreFigures:
    """The store's state as the service's metrics show it."""

    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    """Runs per (connector, status)."""
    records: dict[tuple[str, str], int] = field(default_factory=dict)
    """Records the runs counted, per (connector, outcome: created, updated ...)."""
    quarantined: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    """Customers held, per reason code."""
    inbox: list[inbox.InboxDepth] = field(default_factory=list)


_OUTCOMES = ("created", "updated", "unchanged", "stale", "skipped", "quarantined")


def _held(conn: Connection) -> dict[str, int]:
    if conn.dialect.name == "postgresql":
        sql = (
            "SELECT r->>'code', count(*) FROM customers,"
            " jsonb_array_elements(customers.blocked_reasons) AS r"
            " WHERE NOT customers.ready AND customers.merged_into IS NULL GROUP BY 1"
        )
    else:
        sql = (
            "SELECT json_extract(r.value, '$.code'), count(*) FROM customers,"
            " json_each(customers.blocked_reasons) AS r"
            " WHERE NOT customers.ready AND customers.merged_into IS NULL GROUP BY 1"
        )
    return {str(code): int(count) for code, count in conn.exec_driver_sql(sql)}


def read_figures(conn: Connection) -> StoreFigures:
    """The figures, read in one (read-only) transaction."""
    figures = StoreFigures()
    sums = [sa.func.coalesce(sa.func.sum(sync_runs.c[name]), 0) for name in _OUTCOMES]
    rows = conn.execute(
        sa.select(sync_runs.c.connector, sync_runs.c.status, sa.func.count(), *sums).group_by(
            sync_runs.c.connector, sync_runs.c.status
        )
    )
    for connector, status, count, *counted in rows:
        figures.runs[(connector, status)] = int(count)
        for outcome, value in zip(_OUTCOMES, counted, strict=True):
            key = (connector, outcome)
            figures.records[key] = figures.records.get(key, 0) + int(value)
    figures.quarantined = {
        connector: int(count)
        for connector, count in conn.execute(
            sa.select(quarantine.c.connector, sa.func.count()).group_by(quarantine.c.connector)
        )
    }
    figures.held = _held(conn)
    figures.inbox = inbox.depth(conn)
    return figures
