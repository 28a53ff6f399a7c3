"""Records removed from a complete export are noticed, within a safety share."""

from __future__ import annotations

from typing import Any

from tests.support.data import company, contact, make_engine
from tests.support.memory import MemoryConnector

from crmsync.adapters.store import Store
from crmsync.domain import DEFAULT_PRIMARY_ORDER
from crmsync.sdk import BadRecord, CompanyRecord, ContactRecord, ObjectType, ReadPlan
from crmsync.service.customers import CustomerService
from crmsync.service.sync import RunResult

SNAPSHOT = ReadPlan(read_ahead=0, full_pass_is_snapshot=True)
service = CustomerService(order_for=lambda _name: DEFAULT_PRIMARY_ORDER)


def companies(count: int, *, without: tuple[int, ...] = ()) -> list[CompanyRecord]:
    return [company(n) for n in range(1, count + 1) if n not in without]


def run(
    store: Store,
    records: list[CompanyRecord],
    contacts: list[ContactRecord] | None = None,
    *,
    full: bool = True,
    **options: Any,
) -> RunResult:
    source = MemoryConnector(companies=records, contacts=contacts or [], page_size=7)
    return make_engine(store).run("export", source, full=full, reading=SNAPSHOT, **options)


def state(store: Store, external_id: str) -> dict[str, Any]:
    with store.begin() as conn:
        for customer in service.iter_customers(conn):
            if any(r["external_id"] == external_id for r in customer["external_refs"]):
                return customer
    raise AssertionError(external_id)


def codes(store: Store, external_id: str) -> list[str]:
    return [r["code"] for r in state(store, external_id)["blocked_reasons"]]


def deleted(store: Store, n: int) -> bool:
    return "source_deleted" in codes(store, f"c{n}")


def test_a_company_missing_from_a_full_export_is_held_as_deleted_at_the_source(
    store: Store,
) -> None:
    assert run(store, companies(20), [contact(1, "c3")]).ok

    result = run(store, companies(20, without=(3,)), [contact(1, "c3")])

    assert result.ok, result.error
    assert codes(store, "c3") == ["source_deleted"]
    assert state(store, "c3")["company_name"] == "Company 3"  # nothing erased
    assert not deleted(store, 4)


def test_a_contact_missing_from_a_full_export_leaves_its_customer(store: Store) -> None:
    people = [contact(n, "c1") for n in range(1, 12)]
    assert run(store, companies(2), people).ok

    assert run(store, companies(2), people[1:]).ok

    emails = [c["email"] for c in state(store, "c1")["contacts"]]
    assert "person1@example.com" not in emails
    assert len(emails) == 10


def test_an_incremental_pass_marks_nothing_deleted(store: Store) -> None:
    assert run(store, companies(20)).ok

    assert run(store, companies(20, without=(3,)), full=False).ok

    assert not deleted(store, 3)


def test_a_pass_lacking_more_than_the_share_stops_and_marks_nothing(store: Store) -> None:
    assert run(store, companies(20)).ok

    result = run(store, companies(20, without=(1, 2, 3)))

    assert result.status == "failed"
    assert "lacks 3 of the 20" in (result.error or "")
    assert "--force-deletions" in (result.error or "")
    assert not any(deleted(store, n) for n in (1, 2, 3))


def test_forcing_deletions_marks_them_beyond_the_share(store: Store) -> None:
    assert run(store, companies(20)).ok

    assert run(store, companies(20, without=(1, 2, 3)), force_deletions=True).ok

    assert all(deleted(store, n) for n in (1, 2, 3))


def test_a_larger_configured_share_allows_more(store: Store) -> None:
    assert run(store, companies(20)).ok

    assert run(store, companies(20, without=(1, 2, 3)), max_deletion_share=0.2).ok

    assert deleted(store, 1)


def test_an_empty_export_is_refused_unless_forced(store: Store) -> None:
    assert run(store, companies(5)).ok

    refused = run(store, [])

    assert refused.status == "failed"
    assert not any(deleted(store, n) for n in range(1, 6))
    assert run(store, [], force_deletions=True).ok
    assert deleted(store, 5)


def test_a_pass_resumed_by_a_later_run_does_not_mark_what_the_first_run_delivered(
    store: Store,
) -> None:
    assert run(store, companies(30)).ok
    broken = MemoryConnector(companies=companies(30), page_size=7, fail_after_pages=2)
    failed = make_engine(store).run("export", broken, full=True, reading=SNAPSHOT)
    assert failed.status == "failed"

    # the second run resumes the pass at company 15 and must not mark 1-14 deleted
    result = run(store, companies(30, without=(29,)), full=False)

    assert result.ok, result.error
    assert not any(deleted(store, n) for n in range(1, 29))
    assert deleted(store, 29)


def test_a_quarantined_record_is_still_at_the_source_and_not_marked_deleted(
    store: Store,
) -> None:
    assert run(store, companies(20)).ok
    source = MemoryConnector(
        companies=companies(20, without=(4,)),
        bad={
            ObjectType.COMPANY: [
                BadRecord(object_type=ObjectType.COMPANY, external_id="c4", raw="{}", reason="x")
            ]
        },
    )

    assert make_engine(store).run("export", source, full=True, reading=SNAPSHOT).ok

    assert not deleted(store, 4)


def test_a_record_back_in_the_export_is_released_again(store: Store) -> None:
    assert run(store, companies(20)).ok
    assert run(store, companies(20, without=(3,))).ok

    assert run(store, companies(20)).ok

    assert not deleted(store, 3)
