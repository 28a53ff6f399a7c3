"""Store helpers shared by the tests that manage a store themselves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

from crmsync.adapters.store import Store
from crmsync.adapters.tables import metadata


def empty(store: Store) -> None:
    """Delete every row of every table (the schema stays), on either backend."""
    with store.begin() as conn:
        if store.dialect == "postgresql":
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            return
        for table in reversed(metadata.sorted_tables):
            conn.execute(sa.delete(table))


def wait_until(condition: Callable[[], bool], what: str, *, seconds: float = 20) -> None:
    """Re-check ``condition`` (a state another thread or the database reaches) until it
    holds; fail naming ``what`` after ``seconds``. Nothing here decides an order."""
    deadline = time.monotonic() + seconds
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        pause.wait(0.02)


def waiting_on_locks(store: Store) -> int:
    """How many sessions of a PostgreSQL store's database wait for a lock right now."""
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )
