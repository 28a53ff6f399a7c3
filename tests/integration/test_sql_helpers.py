"""The store's batched SQL helpers, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from crmsync.adapters.sql import insert_rows, select_in, update_rows
from crmsync.adapters.store import Store
from crmsync.adapters.tables import sync_leases
from crmsync.sdk import utc_now


def lease(connector: str, owner: str = "w1") -> dict[str, object]:
    return {"connector": connector, "owner": owner, "expires_at": utc_now() + timedelta(hours=1)}


def test_insert_rows_counts_only_the_rows_it_inserted_when_skipping_conflicts(
    store: Store,
) -> None:
    with store.begin() as conn:
        assert insert_rows(conn, sync_leases, [lease("a"), lease("b")]) == 2

        inserted = insert_rows(
            conn,
            sync_leases,
            [lease("b", "w2"), lease("c", "w2"), lease("c", "w3")],
            skip_conflicts=True,
        )

        assert inserted == 1
        owners = dict(conn.execute(sa.select(sync_leases.c.connector, sync_leases.c.owner)).all())
    assert owners == {"a": "w1", "b": "w1", "c": "w2"}  # of two conflicting rows the first wins


def test_update_rows_applies_the_rows_in_order(store: Store) -> None:
    with store.begin() as conn:
        insert_rows(conn, sync_leases, [lease("a"), lease("b")])

        update_rows(
            conn,
            sync_leases,
            ["connector"],
            [{"connector": "a", "owner": "w2"}, {"connector": "a", "owner": "w3"}],
        )

        owners = dict(conn.execute(sa.select(sync_leases.c.connector, sync_leases.c.owner)).all())
    assert owners == {"a": "w3", "b": "w1"}


def test_select_in_finds_rows_by_thousands_of_keys_and_none_by_no_keys(store: Store) -> None:
    with store.begin() as conn:
        insert_rows(conn, sync_leases, [lease(f"c{i}") for i in range(3_000)])
        wanted = [f"c{i}" for i in range(0, 3_000, 2)] + ["missing", "c0"]

        found = select_in(conn, [sync_leases.c.connector], sync_leases.c.connector, wanted)
        nothing = select_in(conn, [sync_leases.c.connector], sync_leases.c.connector, [])

    assert sorted(row.connector for row in found) == sorted(f"c{i}" for i in range(0, 3_000, 2))
    assert nothing == []
