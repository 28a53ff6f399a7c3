"""Readiness is recomputed once per customer per pass, not once per page that touches
it, and never trusted while it waits (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import random
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import MemoryConnector
from tests.support.snapshot import snapshot
from tests.support.stores import empty, wait_until, waiting_on_locks

from crmsync.adapters import readiness
from crmsync.adapters.runs import RunCounts
from crmsync.adapters.store import Store, create_store
from crmsync.adapters.tables import customers
from crmsync.domain import DEFAULT_PRIMARY_ORDER
from crmsync.sdk import ObjectType, Page
from crmsync.sdk.records import Cursor
from crmsync.service.sync import SyncEngine

N_COMPANIES = 40


def spread_portal(seed: int = 7) -> MemoryConnector:
    """Contacts in creation order, each at a random company (as HubSpot lists them)."""
    rng = random.Random(seed)
    companies = [company(i, modified_at=later(i)) for i in range(N_COMPANIES)]
    contacts = []
    for i in range(400):
        at = f"c{rng.randrange(N_COMPANIES)}"
        contacts.append(contact(i, at, billing=(at,) if i % 3 == 0 else (), modified_at=later(i)))
    return MemoryConnector(companies=companies, contacts=contacts, page_size=10)


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many customers each readiness refresh evaluated."""
    counted: list[int] = []
    original = readiness._refresh_batch

    def counting(conn: Any, batch: list[str], *args: Any) -> int:
        counted.append(len(batch))
        return original(conn, batch, *args)

    monkeypatch.setattr(readiness, "_refresh_batch", counting)
    return counted


def pending(store: Store) -> int:
    with store.begin() as conn:
        return readiness.pending_count(conn)


def test_a_full_pass_evaluates_each_customer_about_once(
    store: Store, evaluations: list[int]
) -> None:
    result = make_engine(store).run("crm", spread_portal(), full=True)

    assert result.status == "succeeded"
    # 40 pages of contacts each touch ~10 customers: per page, that was ~400 evaluations
    assert sum(evaluations) <= 1.1 * N_COMPANIES
    assert pending(store) == 0
    state = snapshot(store)
    assert sum(1 for k, v in state.items() if k != "__quarantine__" and v["ready"]) > 0


def test_deferred_refresh_ends_where_a_refresh_per_page_ends(store: Store) -> None:
    make_engine(store).run("crm", spread_portal(), full=True)
    deferred = snapshot(store)
    empty(store)

    # the same records, one import call per page: each is refreshed in its own transaction
    engine = make_engine(store)
    source = spread_portal()
    for kind, records in ((ObjectType.COMPANY, source.companies),
                          (ObjectType.CONTACT, source.contacts)):  # fmt: skip
        for start in range(0, len(records), 10):
            ids = [r.external_id for r in records[start : start + 10]]
            engine.import_records("crm", source, {kind: ids})

    assert snapshot(store) == deferred


def test_customers_a_killed_run_left_waiting_are_refreshed_by_the_next_run(
    store: Store,
) -> None:
    engine = make_engine(store)
    engine.run("crm", MemoryConnector(companies=[company(1)]), full=True)
    page = Page(ObjectType.CONTACT, Cursor(), [contact(1, "c1", billing=("c1",))])
    with store.begin() as conn:  # a page committed; the process died before its refresh
        engine.apply_page(conn, "crm", page, None, RunCounts(), defer=True)
    assert pending(store) == 1
    assert snapshot(store)["crm/c1"]["ready"] is False  # not trusted: still waiting

    engine.run("crm", MemoryConnector())  # nothing new in the CRM

    assert pending(store) == 0
    assert snapshot(store)["crm/c1"]["ready"] is True


@pytest.mark.postgres
def test_a_page_committed_during_a_refresh_leaves_its_customer_waiting(pg_url: str) -> None:
    """The refresh has read the customer's contacts; a page adds one and marks the
    customer; the refresh then clears its mark. The page's mark must survive."""
    store = create_store(pg_url)
    try:
        engine = make_engine(store)
        engine.run("crm", MemoryConnector(companies=[company(1)]), full=True)
        with store.begin() as conn:
            conn.execute(sa.update(customers).values(refresh_pending=True))
        refresher = store.engine.connect()
        txn = refresher.begin()
        readiness.refresh_customers(  # locks the customer, finds no contact, not committed
            refresher,
            list(refresher.execute(sa.select(customers.c.id)).scalars()),
            order_for=lambda _c: DEFAULT_PRIMARY_ORDER,
            now=later(10),
        )
        errors: list[BaseException] = []

        def page() -> None:
            try:
                with store.begin() as conn:
                    one = Page(ObjectType.CONTACT, Cursor(), [contact(1, "c1", billing=("c1",))])
                    engine.apply_page(conn, "crm", one, None, RunCounts(), defer=True)
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=page)
        writer.start()
        wait_until(lambda: waiting_on_locks(store) >= 1, "the page waits for the refresh")
        txn.commit()
        refresher.close()
        writer.join(30)

        assert errors == []
        assert pending(store) == 1
        SyncEngine.refresh_waiting(engine, "test")
        assert snapshot(store)["crm/c1"]["ready"] is True
    finally:
        empty(store)
        store.dispose()


def test_when_many_customers_wait_a_refresh_runs_before_the_stream_ends(
    store: Store, evaluations: list[int]
) -> None:
    seen_waiting: list[int] = []

    def progress(*_args: Any) -> None:
        seen_waiting.append(pending(store))

    engine = make_engine(store, refresh_when_waiting=5, progress=progress)
    engine.run("crm", spread_portal(), full=True)

    contact_pages = seen_waiting[-40:]  # waiting after each page of the contact stream
    assert any(after < before for before, after in itertools.pairwise(contact_pages))
    assert pending(store) == 0
