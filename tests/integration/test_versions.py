"""Which version of a record the store keeps when writers race: decided by the database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import MemoryConnector
from tests.support.stores import empty, wait_until, waiting_on_locks

from crmsync.adapters import runs
from crmsync.adapters.store import Store, create_store
from crmsync.adapters.tables import contacts, customers, external_refs
from crmsync.sdk import CompanyRecord, ContactRecord, Cursor, ObjectType, Page

READ = datetime(2026, 12, 4, 12, tzinfo=UTC)


def name_of(store: Store, external_id: str) -> str:
    with store.begin() as conn:
        return str(
            conn.execute(
                sa.select(customers.c.company_name).where(
                    customers.c.id == external_refs.c.customer_id,
                    external_refs.c.external_id == external_id,
                )
            ).scalar_one()
        )


def apply(store: Store, *records: CompanyRecord | ContactRecord, read_at: datetime) -> None:
    """Commit one page read at ``read_at`` (as a polling sync or a webhook import does)."""
    stream = ObjectType.COMPANY if isinstance(records[0], CompanyRecord) else ObjectType.CONTACT
    page = Page(stream, Cursor(), records, read_at=read_at)
    with store.begin() as conn:
        make_engine(store).apply_page(conn, "crm", page, None, runs.RunCounts())


def test_a_page_read_earlier_and_committed_later_does_not_undo_a_newer_read(
    store: Store,
) -> None:
    # HubSpot leaves the modification time alone when a billing-contact label moves.
    # The label moves from p1 to p2. A webhook import reads the new state at +2 s and
    # commits; a polling page that read the old state at +1 s commits after it.
    old_state = (contact(1, "c1", billing=("c1",)), contact(2, "c1"))
    new_state = (contact(1, "c1"), contact(2, "c1", billing=("c1",)))
    apply(store, company(1), read_at=READ)
    apply(store, *old_state, read_at=READ)
    apply(store, *new_state, read_at=READ + timedelta(seconds=2))

    apply(store, *old_state, read_at=READ + timedelta(seconds=1))

    with store.begin() as conn:
        designated = conn.execute(
            sa.select(contacts.c.external_id).where(contacts.c.crm_designated.is_(True))
        ).scalars()
        assert list(designated) == ["p2"]


def test_of_two_reads_with_the_same_modification_time_the_later_read_wins(
    store: Store,
) -> None:
    apply(store, company(1, name="First read"), read_at=READ)

    apply(store, company(1, name="Second read"), read_at=READ + timedelta(seconds=1))
    apply(store, company(1, name="Late commit"), read_at=READ - timedelta(seconds=1))

    assert name_of(store, "c1") == "Second read"


def test_a_stale_record_is_counted_as_stale_not_applied(store: Store) -> None:
    apply(store, company(1, name="New", modified_at=later(5)), read_at=READ)

    result = make_engine(store).run(
        "crm", MemoryConnector(companies=[company(1, name="Old", modified_at=later(1))]), full=True
    )

    assert result.counts.stale == 1
    assert name_of(store, "c1") == "New"


@pytest.mark.postgres
def test_an_older_version_queued_behind_a_newer_one_never_overwrites_it(
    pg_url: str,
) -> None:
    """Defect: both writers read the stored version 0 without a lock, both wait on a row
    lock a third transaction holds, and the one that commits last (version 1) stays."""
    store = create_store(pg_url)
    try:
        apply(store, company(1, name="V0", modified_at=later(0)), read_at=READ)
        holder = store.engine.connect()
        blocker = holder.begin()
        holder.execute(
            sa.select(external_refs.c.external_id)
            .where(external_refs.c.external_id == "c1")
            .with_for_update()
        )
        errors: list[BaseException] = []

        def write(name: str, minutes: int) -> Callable[[], None]:
            def run() -> None:
                try:
                    apply(
                        store,
                        company(1, name=name, modified_at=later(minutes)),
                        read_at=READ + timedelta(minutes=minutes),
                    )
                except BaseException as exc:
                    errors.append(exc)

            return run

        newer = threading.Thread(target=write("V2", 2))
        newer.start()
        wait_until(lambda: waiting_on_locks(store) >= 1, "the webhook import waits")
        older = threading.Thread(target=write("V1", 1))
        older.start()
        wait_until(lambda: waiting_on_locks(store) >= 2, "the polling page waits too")
        blocker.rollback()
        holder.close()
        newer.join(30)
        older.join(30)

        assert errors == []
        assert name_of(store, "c1") == "V2"
    finally:
        empty(store)
        store.dispose()


def _members(store: Store, external_id: str) -> list[str]:
    with store.begin() as conn:
        return list(
            conn.execute(
                sa.select(contacts.c.external_id).where(
                    contacts.c.customer_id == external_refs.c.customer_id,
                    external_refs.c.external_id == external_id,
                )
            ).scalars()
        )


def _race(store: Store, first: Page, second: Page) -> None:
    """``first`` is applied in an open transaction; ``second`` starts on a thread, and
    ``first`` commits once ``second`` waits on a lock (or has finished without one)."""
    engine = make_engine(store)
    conn = store.engine.connect()
    transaction = conn.begin()
    engine.apply_page(conn, "crm", first, None, runs.RunCounts())
    done = threading.Event()
    errors: list[BaseException] = []

    def run_second() -> None:
        try:
            with store.begin() as other:
                engine.apply_page(other, "crm", second, None, runs.RunCounts())
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run_second)
    thread.start()
    wait_until(lambda: done.is_set() or waiting_on_locks(store) >= 1, "the second writer waits")
    transaction.commit()
    conn.close()
    thread.join(30)
    assert errors == []


@pytest.mark.postgres
@pytest.mark.parametrize("company_first", [True, False])
def test_a_contact_and_its_company_written_at_once_are_always_joined(
    pg_url: str, company_first: bool
) -> None:
    """Defect: a contact imported while another transaction creates its company waited
    in pending_links until a full pass."""
    store = create_store(pg_url)
    try:
        company_page = Page(ObjectType.COMPANY, Cursor(), [company(1)])
        contact_page = Page(ObjectType.CONTACT, Cursor(), [contact(1, "c1")])
        if company_first:
            _race(store, company_page, contact_page)
        else:
            _race(store, contact_page, company_page)

        assert _members(store, "c1") == ["p1"]
        with store.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pending_links")).scalar() == 0
    finally:
        empty(store)
        store.dispose()
