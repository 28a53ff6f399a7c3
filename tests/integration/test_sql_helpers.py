"""The store's batched SQL helpers, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from crmsync.adapters.batch import insert_rows, update_rows
from crmsync.adapters.sql import find, new_id, select_in
from crmsync.adapters.store import Store
from crmsync.adapters.tables import aliases, customers, sync_leases
from crmsync.sdk import utc_now


def lease(connector: str, owner: str = "w1") -> dict[str, object]:
    return {"connector": connector, "owner": owner, "expires_at": utc_now() + timedelta(hours=1)}


def customer(customer_id: str) -> dict[str, object]:
    now = utc_now()
    return {
        "id": customer_id,
        "tax_status": "TAXED",
        "tax_status_source": "default",
        "alias_conflicts": [],
        "ready": False,
        "blocked_reasons": [],
        "created_at": now,
        "updated_at": now,
    }


def alias(value: str, customer_id: str) -> dict[str, object]:
    return {
        "value": value,
        "folded": value.casefold(),
        "customer_id": customer_id,
        "source": "manual",
        "created_at": utc_now(),
    }


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


def test_insert_rows_skips_conflicts_only_on_the_key_it_is_told(store: Store) -> None:
    with store.begin() as conn:
        assert insert_rows(conn, aliases, []) == 0
        insert_rows(conn, customers, [customer("cus_1")])
        insert_rows(conn, aliases, [alias("A", "cus_1")])

        skipped = insert_rows(conn, aliases, [alias("A", "cus_1")], conflict_on=["value"])
        assert skipped == 0
        with pytest.raises(sa.exc.IntegrityError):  # same folded value, other key: refused
            insert_rows(conn, aliases, [alias("a", "cus_1")], conflict_on=["value"])


def test_update_rows_writes_datetimes_and_json_as_sqlalchemy_reads_them(store: Store) -> None:
    at = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    with store.begin() as conn:
        insert_rows(conn, customers, [customer("cus_1")])
        update_rows(
            conn,
            customers,
            ["id"],
            [{"id": "cus_1", "archived_at": at, "blocked_reasons": [{"code": "archived"}]}],
        )
        row = conn.execute(sa.select(customers).where(customers.c.id == "cus_1")).one()

    assert row.archived_at == at
    assert row.blocked_reasons == [{"code": "archived"}]


def test_new_ids_are_url_safe_unique_and_sort_in_the_order_they_were_made() -> None:
    first = [new_id("cus") for _ in range(1_000)]
    time.sleep(0.002)
    second = new_id("cus")

    assert len(set(first)) == 1_000
    assert all(re.fullmatch(r"cus_[0-9a-f]{32}", i) for i in first)
    assert second > max(first)


_LEASE_OWNERS = (sync_leases.c.connector, sync_leases.c.owner)


def test_find_reads_rows_by_thousands_of_keys_and_the_columns_it_is_told(store: Store) -> None:
    with store.begin() as conn:
        insert_rows(conn, sync_leases, [lease(f"c{i}", owner=f"w{i % 2}") for i in range(2_000)])

        found = find(
            conn,
            _LEASE_OWNERS,
            sync_leases.c.connector,
            [f"c{i}" for i in range(0, 2_000, 3)] + ["missing"],
            owner="w1",
        )

    assert sorted(tuple(row) for row in found) == sorted(
        (f"c{i}", "w1") for i in range(0, 2_000, 3) if i % 2 == 1
    )


def test_find_refuses_columns_whose_values_need_converting(store: Store) -> None:
    with store.begin() as conn, pytest.raises(TypeError, match="select_in"):
        find(conn, (sync_leases.c.expires_at,), sync_leases.c.connector, ["a"])
