"""Several processes writing the same store at once (as several workers do)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import sqlalchemy as sa
from tests.support.data import company, make_engine
from tests.support.memory import MemoryConnector
from tests.support.workers import claim_aliases, upsert_all

from crmsync.adapters.store import create_store
from crmsync.adapters.tables import aliases, contacts, customers, external_refs

N = 120


def test_two_processes_upserting_the_same_records_leave_no_duplicates(store_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(2)
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            futures = [
                pool.submit(upsert_all, store_url, N, reverse, barrier) for reverse in (False, True)
            ]
            results = [f.result(timeout=300) for f in futures]

    assert [r["failed"] for r in results] == [0, 0]
    assert sum(r["created"] for r in results) >= N  # each record created by one of them
    store = create_store(store_url)
    with store.begin() as conn:

        def count(table: sa.Table) -> int:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

        assert count(customers) == N
        assert count(external_refs) == N
        assert count(contacts) == N * 3 * 2  # each contact belongs to two companies
        assert count(aliases) == N + N + 7  # ids, acct-i, and the first holder of each team-k
        primaries = conn.execute(
            sa.select(contacts.c.customer_id, sa.func.count())
            .where(contacts.c.billing_preference == "PRIMARY")
            .group_by(contacts.c.customer_id)
            .having(sa.func.count() > 1)
        ).all()
        assert primaries == []
    store.dispose()


def test_an_alias_goes_to_exactly_one_of_several_concurrent_writers(store_url: str) -> None:
    store = create_store(store_url)
    make_engine(store).run("crm", MemoryConnector(companies=[company(i) for i in range(4)]))
    with store.begin() as conn:
        ids = list(conn.execute(sa.select(customers.c.id).order_by(customers.c.id)).scalars())
    store.dispose()
    wanted = [f"shared-{k}" if k % 2 else f"SHARED-{k}" for k in range(15)]

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(4)
        with ProcessPoolExecutor(4, mp_context=ctx) as pool:
            futures = [
                pool.submit(
                    claim_aliases,
                    store_url,
                    cid,
                    # each writer asks in its own order, some with case variants
                    [
                        a.lower() if n % 2 else a
                        for a in (wanted if n < 2 else list(reversed(wanted)))
                    ],
                    barrier,
                )
                for n, cid in enumerate(ids)
            ]
            won = [f.result(timeout=300) for f in futures]

    winners = [alias.casefold() for got in won for alias in got]
    assert sorted(winners) == sorted(a.casefold() for a in wanted)  # each exactly once
    store = create_store(store_url)
    with store.begin() as conn:
        stored = conn.execute(sa.select(aliases.c.folded).where(aliases.c.source == "manual"))
        assert sorted(stored.scalars()) == sorted(a.casefold() for a in wanted)
    store.dispose()
