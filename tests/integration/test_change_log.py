"""Every change to a customer is logged once, with a version, a cause and old -> new."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from tests.support.changelog import billing_state, log_of, replayed
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import MemoryConnector

from crmsync.adapters import changelog
from crmsync.adapters.store import MIGRATIONS, Store, create_store
from crmsync.adapters.tables import customer_changes, customers
from crmsync.adapters.writer import Writer
from crmsync.domain import DEFAULT_PRIMARY_ORDER, TaxStatus
from crmsync.sdk import CompanyRecord, ContactRecord, utc_now
from crmsync.service.customers import CustomerService

service = CustomerService(order_for=lambda _name: DEFAULT_PRIMARY_ORDER)


def sync(
    store: Store, companies: list[CompanyRecord], people: list[ContactRecord] | None = None
) -> None:
    connector = MemoryConnector(companies=companies, contacts=people or [])
    result = make_engine(store).run("crm", connector, full=True)
    assert result.status == "succeeded", result.error


def customer_id(store: Store, name: str = "c1") -> str:
    with store.begin() as conn:
        return service.resolve(conn, name)


def version_of(store: Store, cid: str) -> int:
    with store.begin() as conn:
        return int(
            conn.execute(sa.select(customers.c.version).where(customers.c.id == cid)).scalar_one()
        )


def fields(entry: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {c["field"]: (c["old"], c["new"]) for c in entry["changes"]}


@pytest.fixture
def synced(store: Store) -> str:
    """A ready customer (c1) with one billing contact, and the id it got."""
    sync(store, [company(1, aliases=("acct-1",))], [contact(1, "c1", billing=("c1",))])
    return customer_id(store)


def test_a_new_customer_starts_at_version_1_with_an_entry_recording_its_fields(
    store: Store,
) -> None:
    sync(store, [company(1)])
    cid = customer_id(store)

    entries = log_of(store, cid)
    assert version_of(store, cid) == 1
    assert [e["version"] for e in entries] == [1]
    assert entries[0]["cause"].startswith("sync run ")
    assert fields(entries[0])["company_name"] == (None, "Company 1")
    assert fields(entries[0])["aliases"] == (None, cid)


def test_a_company_field_changed_in_the_crm_is_one_entry_with_old_and_new(
    store: Store, synced: str
) -> None:
    before = version_of(store, synced)

    sync(store, [company(1, aliases=("acct-1",), city="Leeds", modified_at=later(1))])

    entries = log_of(store, synced)
    assert version_of(store, synced) == before + 1
    assert entries[-1]["version"] == before + 1
    assert entries[-1]["changes"] == [{"field": "city", "old": "London", "new": "Leeds"}]


def test_an_unchanged_resync_logs_nothing_and_keeps_the_version(store: Store, synced: str) -> None:
    before, entries = version_of(store, synced), log_of(store, synced)

    sync(store, [company(1, aliases=("acct-1",))], [contact(1, "c1", billing=("c1",))])

    assert version_of(store, synced) == before
    assert log_of(store, synced) == entries


def test_a_record_whose_change_leaves_the_customer_as_it_was_logs_nothing(
    store: Store, synced: str
) -> None:
    before = version_of(store, synced)

    # a field crm-sync does not store changed: the hash differs, the customer does not
    sync(store, [company(1, aliases=("acct-1",), modified_at=later(1))])

    assert version_of(store, synced) == before


def test_the_primary_contacts_email_changing_is_logged_and_moves_updated_at(
    store: Store, synced: str
) -> None:
    before = service_show(store, synced)["updated_at"]

    sync(
        store,
        [company(1, aliases=("acct-1",))],
        [contact(1, "c1", billing=("c1",), email="new@example.com", modified_at=later(1))],
    )

    change = fields(log_of(store, synced)[-1])["primary_contact"]
    assert (change[0]["email"], change[1]["email"]) == ("person1@example.com", "new@example.com")
    assert service_show(store, synced)["updated_at"] > before


def service_show(store: Store, cid: str) -> dict[str, Any]:
    with store.begin() as conn:
        return service.show(conn, cid)


def test_a_contact_joining_is_logged_with_the_contact_id(store: Store, synced: str) -> None:
    sync(
        store,
        [company(1, aliases=("acct-1",))],
        [contact(1, "c1", billing=("c1",)), contact(2, "c1", modified_at=later(1))],
    )

    joined = [c for c in service_show(store, synced)["contacts"] if c["external_id"] == "p2"]
    assert fields(log_of(store, synced)[-1]) == {"contacts": (None, joined[0]["id"])}


def test_an_alias_dropped_in_the_crm_is_logged(store: Store, synced: str) -> None:
    sync(store, [company(1, modified_at=later(1))])

    assert fields(log_of(store, synced)[-1]) == {"aliases": ("acct-1", None)}


def test_a_company_deleted_in_the_crm_logs_the_customer_held(store: Store, synced: str) -> None:
    sync(store, [company(1, aliases=("acct-1",), deleted=True, modified_at=later(1))])

    change = fields(log_of(store, synced)[-1])
    assert change["ready"] == (True, False)
    assert change["blocked"] == ([], ["source_deleted"])


def test_the_writer_logs_the_cause_its_caller_gives(store: Store) -> None:
    now = utc_now()
    with store.begin() as conn:
        writer = Writer(
            conn,
            connector="crm",
            default_tax_status=TaxStatus.TAXED,
            order_for=lambda _name: DEFAULT_PRIMARY_ORDER,
            now=now,
            cause="sync run 12",
        )
        written = writer.write_companies([company(1)])
        writer.refresh(written.touched)

    assert log_of(store, customer_id(store))[0]["cause"] == "sync run 12"


def test_a_page_of_customers_is_logged_with_one_batched_insert(store: Store) -> None:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "customer_changes" in statement and statement.lstrip().upper().startswith("INSERT"):
            statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        connector = MemoryConnector(companies=[company(i) for i in range(40)], page_size=40)
        make_engine(store).run("crm", connector, full=True)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)

    with store.begin() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(customer_changes))
        assert logged.scalar_one() == 40
    assert len(statements) == 1


@pytest.mark.parametrize(
    ("command", "cause", "field"),
    [
        ("set-primary", "command: contacts set-primary", "manual_primary_contact_id"),
        ("add-alias", "command: aliases add", "aliases"),
        ("set-tax-status", "command: customers set-tax-status", "tax_status"),
        ("archive", "command: customers archive", "archived_at"),
        ("add-contact", "command: contacts add", "contacts"),
    ],
)
def test_a_hand_made_change_is_logged_with_its_command_as_cause(
    store: Store, command: str, cause: str, field: str
) -> None:
    sync(store, [company(1)], [contact(1, "c1"), contact(2, "c1")])
    cid = customer_id(store)
    before = version_of(store, cid)
    now = utc_now()
    with store.begin() as conn:
        if command == "set-primary":
            service.set_primary(conn, cid, "person2@example.com", now=now)
        elif command == "add-alias":
            service.add_alias(conn, cid, "by-hand", now=now)
        elif command == "set-tax-status":
            service.set_tax_status(conn, cid, TaxStatus.TAX_EXEMPT, now=now)
        elif command == "archive":
            service.archive(conn, cid, now=now)
        else:
            service.add_contact(
                conn, cid, name="Ann", email="ann@example.com", primary=False, now=now
            )

    last = log_of(store, cid)[-1]
    assert version_of(store, cid) == before + 1
    assert (last["version"], last["cause"]) == (before + 1, cause)
    assert field in fields(last)


def test_removing_an_alias_by_hand_is_logged(store: Store, synced: str) -> None:
    with store.begin() as conn:
        service.add_alias(conn, synced, "by-hand", now=utc_now())
        service.remove_alias(conn, "by-hand", now=utc_now())

    last = log_of(store, synced)[-1]
    assert (last["cause"], fields(last)) == (
        "command: aliases remove",
        {"aliases": ("by-hand", None)},
    )


def test_replaying_the_log_from_version_1_gives_the_customers_state(store: Store) -> None:
    sync(store, [company(1, aliases=("acct-1",))], [contact(1, "c1"), contact(2, "c1")])
    cid = customer_id(store)
    with store.begin() as conn:
        service.set_primary(conn, cid, "person2@example.com", now=utc_now())
        service.add_alias(conn, cid, "by-hand", now=utc_now())
        service.set_tax_status(conn, cid, TaxStatus.TAX_EXEMPT, now=utc_now())
    sync(
        store,
        [company(1, aliases=("acct-9",), city="Leeds", modified_at=later(2))],
        [
            contact(1, "c1", deleted=True, modified_at=later(2)),
            contact(2, "c1", email="two@example.com", modified_at=later(2)),
            contact(3, "c1", billing=("c1",), modified_at=later(2)),
        ],
    )
    with store.begin() as conn:
        service.archive(conn, cid, now=utc_now())

    assert replayed(store, cid) == billing_state(store, cid)


def merge(store: Store) -> tuple[str, str]:
    """c1 (with a hand-added alias) merged into c2 by the CRM: (loser, survivor)."""
    sync(
        store,
        [company(1, aliases=("acct-1",)), company(2, aliases=("acct-2",))],
        [contact(1, "c1", billing=("c1",)), contact(2, "c2", billing=("c2",))],
    )
    loser, survivor = customer_id(store, "c1"), customer_id(store, "c2")
    with store.begin() as conn:
        service.add_alias(conn, loser, "by-hand", now=utc_now())
    sync(
        store,
        [
            company(1, aliases=("acct-1",), deleted=True, modified_at=later(5)),
            company(2, aliases=("acct-2",), merged_ids=("c1",), modified_at=later(5)),
        ],
        [
            contact(1, "c2", modified_at=later(5)),
            contact(2, "c2", billing=("c2",), modified_at=later(5)),
        ],
    )
    return loser, survivor


def test_a_merged_away_customer_is_kept_and_marked_merged_into_the_survivor(
    store: Store,
) -> None:
    loser, survivor = merge(store)

    with store.begin() as conn:
        row = conn.execute(sa.select(customers).where(customers.c.id == loser)).one()
    assert row.merged_into == survivor
    assert row.ready is False
    assert [r["code"] for r in row.blocked_reasons] == ["merged"]


def test_a_customers_json_carries_its_version_and_what_it_was_merged_into(
    store: Store,
) -> None:
    _loser, survivor = merge(store)

    with store.begin() as conn:
        shown = service.show(conn, survivor)
        version = conn.execute(
            sa.select(customers.c.version).where(customers.c.id == survivor)
        ).scalar_one()
    assert (shown["version"], shown["merged_into"]) == (version, None)


def test_a_merged_away_customers_id_and_aliases_resolve_to_the_survivor(store: Store) -> None:
    loser, survivor = merge(store)

    with store.begin() as conn:
        assert service.resolve(conn, loser) == survivor
        assert service.resolve(conn, "by-hand") == survivor
        assert service.show(conn, loser)["id"] == survivor


def test_a_merged_away_customer_is_not_listed_or_counted(store: Store) -> None:
    _loser, survivor = merge(store)

    with store.begin() as conn:
        listed = [c["id"] for c in service.iter_customers(conn)]
        summary = service.summary(conn)
    assert listed == [survivor]
    assert (summary["customers"], summary["ready"]) == (1, 1)


def test_a_merge_is_logged_on_both_customers_and_replays(store: Store) -> None:
    loser, survivor = merge(store)

    assert any(fields(e).get("merged_into") == (None, survivor) for e in log_of(store, loser))
    assert any(fields(e).get("merged_customers") == (None, loser) for e in log_of(store, survivor))
    assert replayed(store, loser) == billing_state(store, loser)
    assert replayed(store, survivor) == billing_state(store, survivor)


def test_a_contact_merge_replays_to_the_customers_state(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1", billing=("c1",)), contact(2, "c1")])
    cid = customer_id(store)

    sync(
        store,
        [company(1)],
        [
            contact(2, "c1", billing=("c1",), merged_ids=("p1",), modified_at=later(3)),
            contact(1, "c1", deleted=True, modified_at=later(3)),
        ],
    )

    assert replayed(store, cid) == billing_state(store, cid)


def test_history_lists_entries_newest_first_by_any_alias(store: Store, synced: str) -> None:
    sync(store, [company(1, aliases=("acct-1",), city="Leeds", modified_at=later(1))])
    latest = version_of(store, synced)

    with store.begin() as conn:
        everything = service.history(conn, "acct-1")
        newest = service.history(conn, "acct-1", limit=1)
        after = service.history(conn, synced, after_version=latest - 1)

    assert [e["version"] for e in everything] == list(range(latest, 0, -1))
    assert newest == everything[:1] == after
    assert set(newest[0]) == {"version", "at", "cause", "changes"}


def test_pruning_keeps_each_customers_latest_entry(store: Store, synced: str) -> None:
    sync(store, [company(1, aliases=("acct-1",), city="Leeds", modified_at=later(1))])
    latest = version_of(store, synced)

    with store.begin() as conn:
        removed = changelog.prune_change_log(conn, utc_now() + timedelta(days=1))

    assert removed == latest - 1
    assert [e["version"] for e in log_of(store, synced)] == [latest]


def test_pruning_keeps_entries_newer_than_the_retention(store: Store, synced: str) -> None:
    with store.begin() as conn:
        removed = changelog.prune_change_log(
            conn, utc_now() - timedelta(days=1), keep_latest_per_customer=0
        )

    assert removed == 0
    assert len(log_of(store, synced)) == version_of(store, synced)


def test_changes_made_at_once_get_consecutive_versions(store: Store, synced: str) -> None:
    before = version_of(store, synced)
    start = threading.Barrier(4)

    def add(n: int) -> None:
        start.wait()
        with store.begin() as conn:
            service.add_alias(conn, synced, f"at-once-{n}", now=utc_now())

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(add, range(4)))

    entries = log_of(store, synced)
    assert [e["version"] for e in entries] == list(range(1, before + 5))
    added = sorted(fields(e)["aliases"][1] for e in entries[before:])
    assert added == [f"at-once-{n}" for n in range(4)]


def _migrate(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    engine.dispose()


def test_a_customer_stored_before_the_log_gets_a_baseline_entry_that_replays(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    _migrate(url, "0006")
    old = create_store(url)
    now = utc_now()
    with old.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (id, company_name, line1, city, postal_code, country,"
                " tax_status, tax_status_source, alias_conflicts, ready, blocked_reasons,"
                " archived_at, created_at, updated_at) VALUES ('cus_1', 'Acme', '1 Main St',"
                " 'London', 'EC1A 1BB', 'GB', 'TAXED', 'crm', '[]', 0,"
                ' \'[{"code": "archived", "message": "Archived"}]\', :now, :now, :now)'
            ),
            {"now": now.replace(tzinfo=None)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO contacts (id, customer_id, name, email, billing_preference, origin,"
                " crm_designated, created_at, updated_at) VALUES ('con_1', 'cus_1', 'Ann',"
                " 'ann@example.com', 'PRIMARY', 'crm', 1, :now, :now)"
            ),
            {"now": now.replace(tzinfo=None)},
        )
        for value, source in (("cus_1", "id"), ("ACME", "crm")):
            conn.execute(
                sa.text(
                    "INSERT INTO aliases (value, folded, customer_id, source, created_at)"
                    " VALUES (:value, :folded, 'cus_1', :source, :now)"
                ),
                {"value": value, "folded": value.casefold(), "source": source, "now": now},
            )
    old.dispose()

    store = create_store(url)
    store.upgrade()
    try:
        entries = log_of(store, "cus_1")
        assert [(e["version"], e["cause"][:13]) for e in entries] == [(1, "store upgrade")]
        assert version_of(store, "cus_1") == 1
        assert replayed(store, "cus_1") == billing_state(store, "cus_1")
    finally:
        store.dispose()
