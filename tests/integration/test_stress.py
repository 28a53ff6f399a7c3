"""Polling syncs, webhook-style re-imports and hand-made changes at once, on PostgreSQL."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
import sqlalchemy as sa
from tests.support import stress
from tests.support.changelog import billing_state, replayed
from tests.support.stores import empty

from crmsync.adapters.store import create_store
from crmsync.adapters.tables import aliases, contacts, customers, external_refs, pending_links

SECONDS = 4.0


@pytest.mark.postgres
def test_three_writers_racing_leave_every_newest_version_and_every_hand_made_choice(
    pg_url: str,
) -> None:
    store = create_store(pg_url)
    from tests.support.data import make_engine

    assert make_engine(store).run("crm", stress.base_crm(0), full=True).ok
    store.dispose()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(3)
        with ProcessPoolExecutor(3, mp_context=ctx) as pool:
            polled = pool.submit(stress.poll, pg_url, SECONDS, barrier)
            imported = pool.submit(stress.reimport, pg_url, SECONDS, barrier)
            handled = pool.submit(stress.handle, pg_url, SECONDS, barrier)
            poll = polled.result(timeout=300)
            reimport = imported.result(timeout=300)
            hand = handled.result(timeout=300)

    assert poll["runs"] >= 1
    assert poll["failed"] == 0
    assert reimport["failed"] == 0
    assert reimport["newest"]
    assert hand["picks"]
    assert hand["refused"] == []
    store = create_store(pg_url)
    try:
        with store.begin() as conn:
            names = dict(
                conn.execute(
                    sa.select(external_refs.c.external_id, customers.c.company_name).where(
                        external_refs.c.customer_id == customers.c.id
                    )
                ).all()
            )
            people = dict(conn.execute(sa.select(contacts.c.external_id, contacts.c.name)).all())
            for external_id, version in reimport["newest"].items():
                held = names if external_id.startswith("c") else people
                assert held[external_id].endswith(f" v{version}"), external_id
            assert conn.execute(sa.select(sa.func.count()).select_from(pending_links)).scalar() == 0
            for company_id, person in hand["picks"].items():
                picked = conn.execute(
                    sa.select(contacts.c.external_id).where(
                        contacts.c.id == customers.c.manual_primary_contact_id,
                        customers.c.id == external_refs.c.customer_id,
                        external_refs.c.external_id == company_id,
                    )
                ).scalar_one()
                assert picked == person, company_id
            held_aliases = set(conn.execute(sa.select(aliases.c.value)).scalars())
            for made in hand["aliases"].values():
                assert set(made) <= held_aliases
            folded = conn.execute(
                sa.select(aliases.c.folded, sa.func.count()).group_by(aliases.c.folded)
                .having(sa.func.count() > 1)
            ).all()  # fmt: skip
            assert folded == []
            everyone = list(conn.execute(sa.select(customers.c.id)).scalars())
        for cid in everyone:  # the change log replays to every customer's final state
            assert replayed(store, cid) == billing_state(store, cid), cid
    finally:
        empty(store)
        store.dispose()
