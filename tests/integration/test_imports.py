"""The one way in for records outside a pass (resync, webhook imports): both object
types in one call, deletions the CRM confirms, one run row per call, never left running."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import Boom, MemoryConnector
from tests.support.snapshot import snapshot

from crmsync.adapters import runs
from crmsync.adapters.store import Store
from crmsync.adapters.tables import sync_runs
from crmsync.sdk import ObjectType, Page


def source() -> MemoryConnector:
    return MemoryConnector(
        companies=[company(i, modified_at=later(i)) for i in range(4)],
        contacts=[contact(i, f"c{i}", billing=(f"c{i}",), modified_at=later(i)) for i in range(4)],
        page_size=3,
    )


def run_rows(store: Store) -> list[tuple[str, str]]:
    with store.begin() as conn:
        return [
            (r.mode, r.status) for r in conn.execute(sa.select(sync_runs).order_by(sync_runs.c.id))
        ]


def test_one_call_applies_companies_and_contacts_under_one_run(store: Store) -> None:
    crm = source()

    result = make_engine(store).import_records(
        "crm",
        crm,
        {ObjectType.CONTACT: ["p1", "p2"], ObjectType.COMPANY: ["c1", "c2"]},
        mode="webhook",
    )

    assert result.status == "succeeded"
    assert result.counts.created == 4
    state = snapshot(store)
    assert {"crm/c1", "crm/c2"} <= state.keys()
    # the contacts found their companies although they were named first: companies go first
    assert [c[0] for c in state["crm/c1"]["contacts"]] == ["p1"]
    assert state["crm/c1"]["ready"] is True
    assert run_rows(store) == [("webhook", "succeeded")]
    with store.begin() as conn:  # outside a pass: no cursor moves
        assert runs.load_cursor(conn, "crm", ObjectType.COMPANY) is None


def test_ids_the_crm_no_longer_has_are_listed_and_marked_deleted_when_asked(
    store: Store,
) -> None:
    make_engine(store).run("crm", source(), full=True)
    crm = source()
    crm.companies = [c for c in crm.companies if c.external_id != "c3"]
    crm.contacts = [c for c in crm.contacts if c.external_id != "p0"]

    listed = make_engine(store).import_records(
        "crm", crm, {ObjectType.COMPANY: ["c3"], ObjectType.CONTACT: ["p0"]}
    )
    assert set(listed.missing) == {"c3", "p0"}
    assert snapshot(store)["crm/c3"]["ready"] is True  # only listed: nothing marked

    marked = make_engine(store).import_records(
        "crm",
        crm,
        {ObjectType.COMPANY: ["c3"], ObjectType.CONTACT: ["p0"]},
        mode="webhook",
        missing_deleted=True,
    )

    state = snapshot(store)
    assert set(marked.missing) == {"c3", "p0"}
    assert state["crm/c3"]["reasons"] == ["source_deleted"]
    assert state["crm/c3"]["name"] == "Company 3"  # a tombstone keeps the customer's data
    assert state["crm/c0"]["contacts"][0][-1] is True  # p0 left c0
    assert state["crm/c0"]["reasons"] == ["no_primary_billing_contact"]


def test_ids_never_seen_and_missing_store_nothing(store: Store) -> None:
    result = make_engine(store).import_records(
        "crm", source(), {ObjectType.COMPANY: ["nope"]}, missing_deleted=True
    )

    assert result.status == "succeeded"
    assert result.missing == ("nope",)
    assert result.counts.skipped == 1
    assert [k for k in snapshot(store) if not k.startswith("__")] == []


class FetchFails(MemoryConnector):
    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        if object_type is ObjectType.CONTACT:
            raise Boom("the CRM dropped the connection")
        return super().fetch(object_type, external_ids)


def test_an_unexpected_error_ends_the_run_failed_and_writes_nothing(store: Store) -> None:
    crm = FetchFails(companies=source().companies, contacts=source().contacts)

    with pytest.raises(Boom):
        make_engine(store).import_records(
            "crm", crm, {ObjectType.COMPANY: ["c1"], ObjectType.CONTACT: ["p1"]}
        )

    assert run_rows(store) == [("resync", "failed")]
    assert [k for k in snapshot(store) if not k.startswith("__")] == []
