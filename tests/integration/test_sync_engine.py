"""The sync engine against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import Boom, MemoryConnector
from tests.support.snapshot import max_updated_at, row_counts, snapshot

from crmsync.adapters import runs
from crmsync.adapters.readiness import refresh_customers
from crmsync.adapters.store import Store
from crmsync.adapters.tables import customers
from crmsync.domain import DEFAULT_PRIMARY_ORDER, TaxStatus
from crmsync.sdk import BadRecord, ObjectType, Page, ReadPlan, ReadRequest, utc_now


def sample() -> MemoryConnector:
    companies = [company(i, modified_at=later(i)) for i in range(25)]
    contacts = [
        contact(
            i, f"c{i % 25}", billing=(f"c{i % 25}",) if i % 5 == 0 else (), modified_at=later(i)
        )
        for i in range(60)
    ]
    bad = {
        ObjectType.CONTACT: [
            BadRecord(
                object_type=ObjectType.CONTACT,
                external_id="pX",
                raw="{}",
                reason="modified_at: not a date",
            )
        ]
    }
    return MemoryConnector(companies=companies, contacts=contacts, bad=bad, page_size=7)


def test_a_first_sync_creates_every_customer_and_counts_what_it_did(store: Store) -> None:
    result = make_engine(store).run("crm", sample(), full=True)

    assert result.status == "succeeded"
    assert (result.counts.seen, result.counts.created, result.counts.quarantined) == (86, 85, 1)
    assert row_counts(store)["customers"] == 25
    assert row_counts(store)["contacts"] == 60


def test_a_second_sync_over_unchanged_data_changes_nothing(store: Store) -> None:
    make_engine(store).run("crm", sample(), full=True)
    before, counts, stamps = snapshot(store), row_counts(store), max_updated_at(store)

    result = make_engine(store).run("crm", sample(), full=True)

    assert result.counts.created == 0
    assert result.counts.updated == 0
    assert result.counts.unchanged == 85
    assert snapshot(store) == before
    assert row_counts(store) == counts
    assert max_updated_at(store) == stamps


SIDE_BY_SIDE = ReadPlan(read_ahead=2, side_by_side=True)
READINGS = [
    pytest.param(ReadPlan(read_ahead=0), id="inline"),
    pytest.param(ReadPlan(read_ahead=2), id="read-ahead"),
    pytest.param(SIDE_BY_SIDE, id="side-by-side"),
]


class CompaniesLast(MemoryConnector):
    """Serves the companies only once every contact has been read (side by side)."""

    def __init__(self, source: MemoryConnector) -> None:
        super().__init__(source.companies, source.contacts, source.bad, source.page_size)
        self.contacts_read = threading.Event()

    def read(self, request: ReadRequest) -> Iterator[Page]:
        if request.stream is ObjectType.COMPANY:
            assert self.contacts_read.wait(10)
            yield from super().read(request)
            return
        yield from super().read(request)
        self.contacts_read.set()


def test_streams_read_side_by_side_end_as_streams_read_one_after_the_other(
    store_url: str, tmp_path: object
) -> None:
    from crmsync.adapters.store import create_store

    together = create_store(store_url)
    result = make_engine(together).run("crm", CompaniesLast(sample()), reading=SIDE_BY_SIDE)
    assert result.status == "succeeded", result.error
    assert result.counts.created == 85  # every contact waited for its company, then joined
    got = snapshot(together)
    together.dispose()

    apart = create_store(f"sqlite:///{tmp_path}/apart.db")
    apart.ensure_schema()
    make_engine(apart).run("crm", sample(), reading=ReadPlan(read_ahead=0))
    assert got == snapshot(apart)
    apart.dispose()


@pytest.mark.parametrize("reading", READINGS)
@pytest.mark.parametrize("crash_after", [0, 1, 3, 4, 9, 12])
def test_a_run_killed_mid_way_and_resumed_ends_identical_to_a_clean_run(
    store_url: str, crash_after: int, reading: ReadPlan, tmp_path: object
) -> None:
    from crmsync.adapters.store import create_store

    crashed = create_store(store_url)
    broken = sample()
    broken.fail_after_pages = crash_after
    first = make_engine(crashed).run("crm", broken, full=True, reading=reading)
    assert first.status == "failed"
    assert "injected failure" in (first.error or "")

    resumed = make_engine(crashed).run("crm", sample(), full=True, reading=reading)
    assert resumed.status == "succeeded"
    result = snapshot(crashed)
    crashed.dispose()

    clean_url = f"sqlite:///{tmp_path}/clean.db"
    clean = create_store(clean_url)
    clean.ensure_schema()
    make_engine(clean).run("crm", sample(), full=True)
    assert result == snapshot(clean)
    clean.dispose()


def test_a_failed_page_commits_neither_its_records_nor_its_cursor(store: Store) -> None:
    broken = sample()
    broken.fail_after_pages = 2
    make_engine(store).run("crm", broken, full=True)

    assert row_counts(store)["customers"] == 14  # two pages of seven


def test_the_cursor_resumes_an_interrupted_pass_without_rereading_it(store: Store) -> None:
    broken = sample()
    broken.fail_after_pages = 2
    make_engine(store).run("crm", broken, full=True)

    again = sample()
    result = make_engine(store).run("crm", again, full=True)

    assert result.counts.created == 25 - 14 + 60
    assert result.counts.unchanged == 0


def test_an_incremental_run_reads_only_records_modified_since_the_cursor(store: Store) -> None:
    make_engine(store).run("crm", sample(), full=True)
    changed = sample()
    changed.companies[3] = company(3, name="Renamed Ltd", modified_at=later(100))

    result = make_engine(store).run("crm", changed)

    assert result.counts.updated == 1
    # the changed record, plus the boundary record of each stream (read again with >=)
    assert result.streams["company"].seen == 2
    assert result.streams["contact"].seen - result.streams["contact"].quarantined == 1
    assert snapshot(store)["crm/c3"]["name"] == "Renamed Ltd"


def test_a_record_older_than_the_stored_one_never_overwrites_it(store: Store) -> None:
    make_engine(store).run(
        "crm", MemoryConnector(companies=[company(1, modified_at=later(10), name="Fresh")])
    )
    make_engine(store).run(
        "crm",
        MemoryConnector(companies=[company(1, modified_at=later(1), name="Stale")]),
        full=True,
    )

    assert snapshot(store)["crm/c1"]["name"] == "Fresh"


def test_a_contact_older_than_the_stored_one_never_overwrites_it(store: Store) -> None:
    fresh = contact(1, "c1", name="Fresh", modified_at=later(10))
    make_engine(store).run("crm", MemoryConnector(companies=[company(1)], contacts=[fresh]))

    stale = contact(1, "c1", name="Stale", modified_at=later(1))
    result = make_engine(store).run(
        "crm", MemoryConnector(companies=[company(1)], contacts=[stale]), full=True
    )

    assert (result.counts.unchanged, result.counts.stale) == (1, 1)
    assert [c[1] for c in snapshot(store)["crm/c1"]["contacts"]] == ["Fresh"]


def test_the_readiness_a_sync_stores_is_what_the_rules_compute_from_the_store(
    store: Store,
) -> None:
    # contacts of c8 arrive a run before their company; c4 and c5 (later page) and c6
    # and c7 (same page) want the same alias; some companies never get contacts
    make_engine(store).run("crm", MemoryConnector(contacts=[contact(8, "c8", billing=("c8",))]))
    varied = MemoryConnector(
        companies=[
            company(1),
            company(2),
            company(3, country="US", state=None),
            company(4, aliases=("shared",)),
            company(5, aliases=("SHARED", "own-5")),
            company(6, aliases=("dup",)),
            company(7, aliases=("dup",)),
            company(8, name=None, tax_status=TaxStatus.TAX_EXEMPT),
        ],
        contacts=[contact(1, "c1", billing=("c1",)), contact(2, "c1"), contact(3, "c2")],
        page_size=2,
    )
    make_engine(store).run("crm", varied, full=True)
    stored = snapshot(store)

    with store.begin() as conn:
        ids = list(conn.execute(sa.select(customers.c.id)).scalars())
        changed = refresh_customers(
            conn, ids, order_for=lambda _name: DEFAULT_PRIMARY_ORDER, now=utc_now()
        )

    assert changed == 0
    assert snapshot(store) == stored
    assert stored["crm/c5"]["conflicts"] == ["SHARED"]
    assert stored["crm/c8"]["contacts"][0][4] == "PRIMARY"


def test_a_bulk_import_keeps_the_postgresql_planner_statistics_current(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite plans without table statistics")
    count = sa.text("SELECT reltuples FROM pg_class WHERE relname = 'customers'")
    with store.begin() as conn:
        conn.execute(sa.text("ANALYZE customers"))
        assert conn.execute(count).scalar_one() <= 0  # empty (or never analyzed)

    companies = [company(i) for i in range(1_200)]
    make_engine(store).run("crm", MemoryConnector(companies=companies, page_size=500))

    with store.begin() as conn:
        assert conn.execute(count).scalar_one() >= 1_000  # analyzed after 1,000 records


def test_bad_records_are_quarantined_with_their_reason_and_the_run_goes_on(store: Store) -> None:
    result = make_engine(store).run("crm", sample(), full=True)

    assert result.status == "succeeded"
    assert snapshot(store)["__quarantine__"] == [("contact", "pX", "modified_at: not a date")]


def test_a_quarantined_record_that_arrives_valid_leaves_the_quarantine(store: Store) -> None:
    make_engine(store).run("crm", sample(), full=True)
    fixed = sample()
    fixed.bad = {}
    fixed.contacts.append(contact("X", "c1"))

    make_engine(store).run("crm", fixed, full=True)

    assert snapshot(store)["__quarantine__"] == []


def test_a_second_worker_cannot_sync_a_connector_that_is_being_synced(store: Store) -> None:
    from dataclasses import replace
    from datetime import timedelta

    from crmsync.adapters import leases
    from crmsync.service.sync import ConnectorBusy

    other = replace(leases.this_process(), label="other-host:42", machine="elsewhere")
    with store.begin() as conn:
        assert leases.acquire(conn, "crm", other, timedelta(minutes=5)) is None

    with pytest.raises(ConnectorBusy, match="other-host:42"):
        make_engine(store).run("crm", sample())


def test_resync_reimports_named_records_without_moving_the_cursor(store: Store) -> None:
    make_engine(store).run("crm", sample(), full=True)
    source = sample()
    source.companies[2] = company(2, name="Fixed By Hand In CRM", modified_at=later(50))

    with store.begin() as conn:
        before = [
            runs.load_cursor(conn, "crm", s) for s in (ObjectType.COMPANY, ObjectType.CONTACT)
        ]

    result = make_engine(store).resync("crm", source, ObjectType.COMPANY, ["c2"])

    assert result.counts.updated == 1
    assert snapshot(store)["crm/c2"]["name"] == "Fixed By Hand In CRM"
    with store.begin() as conn:
        after = [runs.load_cursor(conn, "crm", s) for s in (ObjectType.COMPANY, ObjectType.CONTACT)]
    assert after == before


def test_a_connector_error_fails_the_run_and_records_why(store: Store) -> None:
    broken = sample()
    broken.fail_after_pages = 0

    result = make_engine(store).run("crm", broken)

    assert result.status == "failed"
    assert isinstance(Boom("x"), RuntimeError)
    assert result.error is not None
    assert "Boom" in result.error


def test_a_lease_left_by_a_dead_process_on_this_machine_is_taken_over(store: Store) -> None:
    import subprocess
    import sys
    from dataclasses import replace
    from datetime import timedelta

    import sqlalchemy as sa

    from crmsync.adapters import leases, runs
    from crmsync.adapters.tables import sync_runs
    from crmsync.sdk import utc_now

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = replace(leases.this_process(), label="here:dead", pid=int(gone.stdout))
    with store.begin() as conn:
        assert leases.acquire(conn, "crm", dead, timedelta(minutes=5)) is None
        runs.start_run(conn, "crm", "full", dead.label, utc_now())

    result = make_engine(store).run("crm", sample())

    assert result.status == "succeeded"
    with store.begin() as conn:
        statuses = dict(conn.execute(sa.select(sync_runs.c.worker, sync_runs.c.status)).all())
    assert statuses[dead.label] == "abandoned"
