"""Records that carry less, or worse, than a clean CRM answer: on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import MemoryConnector

from crmsync.adapters.store import Store
from crmsync.adapters.tables import quarantine, sync_runs
from crmsync.domain import DEFAULT_PRIMARY_ORDER
from crmsync.errors import AliasConflictError, ConnectorError, InvalidContactError, RuleViolation
from crmsync.redaction import Redactor
from crmsync.sdk import (
    BadRecord,
    CompanyRecord,
    ContactRecord,
    ObjectType,
    Page,
    ReadPlan,
    ReadRequest,
    utc_now,
)
from crmsync.service.customers import CustomerService

service = CustomerService(order_for=lambda _name: DEFAULT_PRIMARY_ORDER)


def sync(store: Store, companies: list[CompanyRecord], contacts: list[ContactRecord]) -> None:
    result = make_engine(store).run(
        "crm", MemoryConnector(companies=companies, contacts=contacts), full=True
    )
    assert result.status == "succeeded", result.error


def show(store: Store, id_or_alias: str) -> dict[str, Any]:
    with store.begin() as conn:
        return service.show(conn, id_or_alias)


def test_a_deletion_carrying_only_an_id_keeps_the_customers_fields_and_aliases(
    store: Store,
) -> None:
    sync(store, [company(1, aliases=("ACC-1",))], [contact(1, "c1")])

    sync(store, [CompanyRecord(external_id="c1", deleted=True)], [])

    data = show(store, "ACC-1")
    assert data["company_name"] == "Company 1"
    assert data["billing_address"]["city"] == "London"
    assert [a["value"] for a in data["aliases"] if a["source"] == "crm"] == ["ACC-1"]
    assert [r["code"] for r in data["blocked_reasons"]] == ["source_deleted"]


def test_a_record_without_a_modification_time_does_not_switch_off_the_version_check(
    store: Store,
) -> None:
    sync(store, [company(1, name="Newest", modified_at=later(10))], [])
    sync(store, [company(1, name="Undated", modified_at=None)], [])

    sync(store, [company(1, name="Stale", modified_at=later(5))], [])

    assert show(store, _id_of(store, "c1"))["company_name"] == "Undated"


def _id_of(store: Store, external_id: str) -> str:
    with store.begin() as conn:
        for customer in service.iter_customers(conn):
            if any(r["external_id"] == external_id for r in customer["external_refs"]):
                return str(customer["id"])
    raise AssertionError(external_id)


def test_a_nul_character_in_crm_text_is_dropped_and_the_page_lands_on_both_stores(
    store: Store,
) -> None:
    sync(
        store,
        [company(1, name="Bad\x00 Co", aliases=("NUL\x00-1",)), company(2)],
        [contact(1, "c1", name="Nul\x00 Person")],
    )

    data = show(store, "NUL-1")
    assert data["company_name"] == "Bad Co"
    assert data["contacts"][0]["name"] == "Nul Person"
    assert show(store, _id_of(store, "c2"))["company_name"] == "Company 2"


def _resync(store: Store, companies: list[CompanyRecord], *ids: str) -> None:
    result = make_engine(store).resync(
        "crm", MemoryConnector(companies=companies), ObjectType.COMPANY, list(ids)
    )
    assert result.status == "succeeded", result.error


def test_an_alias_conflict_clears_when_the_holder_lets_the_alias_go(store: Store) -> None:
    holder, waiting = company(1, aliases=("ACC-7781",)), company(2, aliases=("ACC-7781",))
    sync(store, [holder, waiting], [contact(1, "c1"), contact(2, "c2")])
    assert codes(show(store, _id_of(store, "c2"))) == ["alias_conflict"]

    dropped = company(1, aliases=(), modified_at=later(1))
    sync(store, [dropped, waiting], [contact(1, "c1"), contact(2, "c2")])
    _resync(store, [dropped, waiting], "c2")

    data = show(store, "ACC-7781")
    assert data["external_refs"][0]["external_id"] == "c2"
    assert data["ready"] is True


def test_an_alias_conflict_clears_when_a_person_removes_the_hand_made_alias(
    store: Store,
) -> None:
    # a person gave ACC-9 to the first customer before the CRM gave it to the second
    sync(store, [company(1), company(2)], [])
    first, second = _id_of(store, "c1"), _id_of(store, "c2")
    with store.begin() as conn:
        service.add_alias(conn, first, "ACC-9", now=utc_now())
    sync(store, [company(1), company(2, aliases=("ACC-9",), modified_at=later(1))], [])
    assert codes(show(store, second))[-1] == "alias_conflict"

    with store.begin() as conn:
        service.remove_alias(conn, "ACC-9")

    assert show(store, "ACC-9")["id"] == second
    assert "alias_conflict" not in codes(show(store, "ACC-9"))


@pytest.mark.parametrize(
    ("first", "second"),
    [("CAF\u00c9-1", "CAFE\u0301-1"), ("caf\u00e9-2", "CAF\u00c9-2"), ("\uff21CC-3", "ACC-3")],
)
def test_aliases_that_differ_only_in_unicode_form_or_case_are_one_alias(
    store: Store, first: str, second: str
) -> None:
    sync(store, [company(1), company(2)], [])
    one, two = _id_of(store, "c1"), _id_of(store, "c2")
    with store.begin() as conn:
        service.add_alias(conn, one, first, now=utc_now())

    with store.begin() as conn, pytest.raises(AliasConflictError):
        service.add_alias(conn, two, second, now=utc_now())
    assert show(store, second)["id"] == one


def test_a_crm_alias_in_another_unicode_form_is_a_conflict(store: Store) -> None:
    sync(store, [company(1, aliases=("CAF\u00c9-1",)), company(2, aliases=("CAFE\u0301-1",))], [])

    assert "alias_conflict" in codes(show(store, _id_of(store, "c2")))


def test_set_primary_refuses_a_contact_with_an_invalid_email_and_changes_nothing(
    store: Store,
) -> None:
    sync(
        store,
        [company(1)],
        [contact(1, "c1", billing=("c1",)), contact(2, "c1", email="someone(at)example.com")],
    )
    customer_id = _id_of(store, "c1")
    before = show(store, customer_id)

    with store.begin() as conn, pytest.raises(InvalidContactError):
        service.set_primary(conn, customer_id, "p2", now=utc_now())

    assert show(store, customer_id) == before
    assert before["ready"] is True


def test_a_contact_added_by_hand_needs_a_name(store: Store) -> None:
    sync(store, [company(1)], [])
    customer_id = _id_of(store, "c1")

    with store.begin() as conn, pytest.raises(InvalidContactError):
        service.add_contact(
            conn, customer_id, name=" ", email="a@example.com", primary=True, now=utc_now()
        )


def test_customers_and_contacts_are_found_by_their_crm_record_ids(store: Store) -> None:
    sync(store, [company(1)], [contact(1, "c1"), contact(2, "c1")])
    customer_id = _id_of(store, "c1")

    assert show(store, "c1")["id"] == customer_id
    assert show(store, "crm:c1")["id"] == customer_id
    with store.begin() as conn:
        data = service.set_primary(conn, "crm:c1", "p2", now=utc_now())
    assert data["primary_billing_contact"]["external_id"] == "p2"


def test_a_crm_id_two_connectors_share_must_be_named_with_its_connector(store: Store) -> None:
    sync(store, [company(1)], [])
    make_engine(store).run("other", MemoryConnector(companies=[company(1)]), full=True)

    with store.begin() as conn, pytest.raises(RuleViolation, match="other:c1"):
        service.resolve(conn, "c1")
    assert show(store, "other:c1")["id"] != show(store, "crm:c1")["id"]


def codes(data: dict[str, Any]) -> list[str]:
    return [r["code"] for r in data["blocked_reasons"]]


class _EchoingCrm(MemoryConnector):
    """A server that returns the Authorization value as its paging cursor."""

    def read(self, request: ReadRequest) -> Iterator[Page]:
        raise ConnectorError("the companies list did not move past 'Bearer pat-na1-SECRET'")
        yield  # pragma: no cover


def test_a_run_error_echoing_a_secret_is_stored_and_returned_masked(store: Store) -> None:
    engine = make_engine(store, redact=Redactor(["pat-na1-SECRET"]).redact)

    result = engine.run("crm", _EchoingCrm(), full=True)

    assert result.status == "failed"
    assert "SECRET" not in (result.error or "")
    with store.begin() as conn:
        stored = conn.execute(sa.select(sync_runs.c.error)).scalar_one()
    assert "SECRET" not in stored
    assert "***" in stored


def test_records_deleted_before_they_were_ever_seen_are_skipped_not_unchanged(
    store: Store,
) -> None:
    crm = MemoryConnector(
        companies=[company(1), CompanyRecord(external_id="c9", deleted=True)],
        contacts=[contact(1, "c1"), ContactRecord(external_id="p9", deleted=True)],
    )

    result = make_engine(store).run("crm", crm, full=True)

    assert (result.counts.created, result.counts.unchanged, result.counts.skipped) == (2, 0, 2)
    with store.begin() as conn:
        stored = conn.execute(sa.select(sync_runs.c.skipped, sync_runs.c.unchanged)).one()
    assert tuple(stored) == (2, 0)


def test_a_quarantine_entry_without_an_id_clears_once_a_full_pass_no_longer_meets_it(
    store: Store,
) -> None:
    broken = BadRecord(object_type=ObjectType.COMPANY, raw="line 3: ,,,", reason="no id")
    plan = ReadPlan(read_ahead=0, full_pass_is_snapshot=True)
    crm = MemoryConnector(companies=[company(1)], bad={ObjectType.COMPANY: [broken]})
    assert make_engine(store).run("crm", crm, full=True, reading=plan).ok
    with store.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar() == 1

    fixed = MemoryConnector(companies=[company(1)])
    assert make_engine(store).run("crm", fixed, full=True, reading=plan).ok

    with store.begin() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(quarantine)).scalar() == 0
