"""Pushing customers from a real store (SQLite and PostgreSQL) to the fake Sequence.

The fake validates every request against Sequence's OpenAPI document: the ``fake``
fixture fails a test whose push sent one that does not conform.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from tests.fakes.sequence import FakeSequence, run_fake_sequence
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import MemoryConnector

from crmsync.adapters.store import Store
from crmsync.adapters.tables import billing_links, customers
from crmsync.billing.client import SequenceClient
from crmsync.billing.config import BillingConfig
from crmsync.sdk import CompanyRecord, ContactRecord
from crmsync.sdk.testing import FakeTime
from crmsync.service.push import PushResult, push

CONNECTOR = "crm"
ALIAS = "crm:company:c1"


def sync(store: Store, companies: list[CompanyRecord], contacts: list[ContactRecord]) -> None:
    result = make_engine(store).run(
        CONNECTOR, MemoryConnector(companies=companies, contacts=contacts), full=True
    )
    assert result.status == "succeeded", result.error


@pytest.fixture
def fake() -> Iterator[FakeSequence]:
    with run_fake_sequence() as running:
        yield running
        assert [(r.endpoint, r.problem) for r in running.invalid_requests] == []


def make_client(
    fake: FakeSequence, *, transport: httpx.BaseTransport | None = None, **settings: Any
) -> SequenceClient:
    config = BillingConfig(
        base_url=fake.url,
        username=SecretStr(fake.username),
        password=SecretStr(fake.password),
        **({"requests_per_minute": 10_000, "timeout_seconds": 5.0} | settings),
    )
    time_ = FakeTime()  # retries and backoff take no real time
    return SequenceClient(config, transport=transport, sleep=time_.sleep, clock=time_.clock)


@pytest.fixture
def client(fake: FakeSequence) -> Iterator[SequenceClient]:
    with make_client(fake) as sequence:
        yield sequence


def push_all(store: Store, client: SequenceClient, **options: Any) -> PushResult:
    return push(store, client, service_for=lambda _name: "HubSpot", **options)


def link_of(store: Store, customer_id: str) -> Any:
    with store.read() as conn:
        return conn.execute(
            sa.select(billing_links).where(billing_links.c.customer_id == customer_id)
        ).one_or_none()


def version_of(store: Store, customer_id: str) -> int:
    with store.read() as conn:
        return int(
            conn.execute(
                sa.select(customers.c.version).where(customers.c.id == customer_id)
            ).scalar_one()
        )


def billing_by_alias(fake: FakeSequence, alias: str = ALIAS) -> dict[str, Any]:
    owner = fake.data.alias_owner(alias)
    assert owner is not None, f"no billing customer holds {alias}"
    return fake.data.customers[owner]


def ready_customer(store: Store, **changes: Any) -> None:
    sync(store, [company(1, **changes)], [contact(1, "c1")])


def test_a_ready_customer_is_created_once_and_linked(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    ready_customer(store, aliases=("ACC-1",))

    result = push_all(store, client)

    assert [p.outcome for p in result.pushed] == ["created"]
    created = billing_by_alias(fake)
    assert created["legalName"] == "Company 1"
    assert [(c["email"], c["billingPreference"]) for c in created["contacts"]] == [
        ("person1@example.com", "PRIMARY")
    ]
    assert created["integrationIds"][0] | {"isPending": False} == {
        "service": "HubSpot",
        "id": "c1",
        "isPending": False,
    }
    assert fake.data.alias_owner("ACC-1") == created["id"]
    assert fake.by_endpoint["POST /customers"] == 1
    assert result.requests_sent == 2  # the alias looked up, then the create
    customer_id = result.pushed[0].customer_id
    link = link_of(store, customer_id)
    assert link.billing_customer_id == created["id"]
    assert link.pushed_version == version_of(store, customer_id)
    assert link.last_outcome == "created"


def test_pushing_again_with_nothing_changed_sends_no_request(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    ready_customer(store)
    push_all(store, client)
    before = len(fake.requests)

    again = push_all(store, client)

    assert len(fake.requests) == before
    assert again.pushed == []
    assert again.unchanged == 1
    assert again.requests_sent == 0


def test_a_change_in_the_crm_is_put_and_keeps_the_contacts_only_billing_has(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    ready_customer(store)
    first = push_all(store, client)
    billing_id = first.pushed[0].billing_customer_id
    assert billing_id is not None
    with fake.data.lock:
        fake.data.customers[billing_id]["contacts"].append(
            {
                "id": "ct-billing-only",
                "name": "Accounts Payable",
                "email": "ap@example.com",
                "billingPreference": "PRIMARY",
                "createdAt": "2026-01-01T00:00:00Z",
                "updatedAt": "2026-01-01T00:00:00Z",
            }
        )
    ready_customer(store, name="Company One Ltd", modified_at=later(5))
    before = fake.by_endpoint

    second = push_all(store, client)

    after = fake.by_endpoint
    assert [(p.outcome, p.billing_customer_id) for p in second.pushed] == [("updated", billing_id)]
    updated = fake.data.customers[billing_id]
    assert updated["legalName"] == "Company One Ltd"
    assert [(c["email"], c["billingPreference"]) for c in updated["contacts"]] == [
        ("person1@example.com", "PRIMARY"),
        ("ap@example.com", "STANDARD"),
    ]
    assert after["GET /customers/{id}"] - before["GET /customers/{id}"] == 1
    assert after["PUT /customers/{id}"] - before["PUT /customers/{id}"] == 1
    assert after["POST /customers"] == before["POST /customers"] == 1
    customer_id = second.pushed[0].customer_id
    assert link_of(store, customer_id).pushed_version == version_of(store, customer_id)


def test_a_held_customer_is_never_sent_and_is_listed_with_its_reason(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    sync(
        store,
        [company(1), company(2)],
        [contact(1, "c1"), contact(2, "c2"), contact(3, "c2")],  # c2: two, none designated
    )

    result = push_all(store, client)

    assert [p.alias for p in result.pushed] == [ALIAS]
    assert [(h.name, [r.code for r in h.reasons]) for h in result.held] == [
        ("Company 2", ["no_primary_billing_contact"])
    ]
    assert fake.data.alias_owner("crm:company:c2") is None
    assert not any("c2" in r.path or "Company 2" in str(r.body) for r in fake.requests)
    assert link_of(store, result.held[0].customer_id) is None


class _SlowCreate(httpx.BaseTransport):
    """Real HTTP to the fake; just before the first ``POST /customers`` it asks the fake
    to answer that request late, after carrying it out (the client times out)."""

    def __init__(self, fake: FakeSequence) -> None:
        self.fake = fake
        self.inner = httpx.HTTPTransport()
        self.armed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/customers") and not self.armed:
            self.armed = True
            self.fake.slow_next(seconds=3.0, path_prefix="/customers")
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_create_that_times_out_after_it_happened_makes_one_billing_customer(
    store: Store, fake: FakeSequence
) -> None:
    ready_customer(store)

    with make_client(fake, transport=_SlowCreate(fake), timeout_seconds=0.3) as slow:
        result = push_all(store, slow)

    assert [r.fault for r in fake.requests if r.endpoint == "POST /customers"] == ["slow"]
    assert [p.outcome for p in result.pushed] == ["created"]
    assert len(fake.data.customers) == 1
    assert fake.by_endpoint["POST /customers"] == 1
    assert (
        link_of(store, result.pushed[0].customer_id).billing_customer_id
        == (billing_by_alias(fake)["id"])
    )


def test_a_create_whose_push_died_before_recording_it_is_found_by_alias_not_made_again(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    ready_customer(store)
    # What a push that died right after its create leaves: the billing customer, no link.
    orphan = fake.data.add_customer("Company 1", aliases=[ALIAS])

    result = push_all(store, client)

    assert [(p.outcome, p.billing_customer_id) for p in result.pushed] == [
        ("updated", orphan["id"])
    ]
    assert len(fake.data.customers) == 1
    assert fake.by_endpoint["POST /customers"] == 0
    assert link_of(store, result.pushed[0].customer_id).billing_customer_id == orphan["id"]


def test_an_alias_held_by_another_billing_customer_is_a_conflict_with_both_sides(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    other = fake.data.add_customer("Someone Else Ltd", aliases=["ACC-1"])
    ready_customer(store, aliases=("ACC-1",))

    result = push_all(store, client)

    (done,) = result.pushed
    assert done.outcome == "conflict"
    assert [(c.alias, c.held_by) for c in done.clashes] == [("ACC-1", other["id"])]
    assert done.customer_id in (done.error or "")
    assert other["id"] in (done.error or "")
    assert list(fake.data.customers) == [other["id"]]
    assert fake.data.customers[other["id"]]["legalName"] == "Someone Else Ltd"
    link = link_of(store, done.customer_id)
    assert (link.last_outcome, link.billing_customer_id, link.attempts) == ("conflict", None, 1)
    assert result.needs_a_person


def test_a_dry_run_sends_and_records_nothing_but_lists_the_requests(
    store: Store, fake: FakeSequence
) -> None:
    ready_customer(store)

    result = push(store, None, dry_run=True)

    assert fake.requests == []
    (planned,) = result.pushed
    assert [(r.method, r.path) for r in planned.requests] == [
        ("GET", f"/customers/by-alias/{ALIAS}"),
        ("POST", "/customers"),
    ]
    assert planned.requests[1].body is not None
    assert planned.requests[1].body["legalName"] == "Company 1"
    assert link_of(store, planned.customer_id) is None


def test_only_the_named_customers_are_pushed(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    sync(store, [company(1), company(2)], [contact(1, "c1"), contact(2, "c2")])

    result = push_all(store, client, customers=["c2"])

    assert [p.alias for p in result.pushed] == ["crm:company:c2"]
    assert fake.data.alias_owner(ALIAS) is None


class _RivalCreate(httpx.BaseTransport):
    """Real HTTP to the fake; just before the first ``POST /customers`` another push's
    create of the same customer lands on the billing side."""

    def __init__(self, fake: FakeSequence) -> None:
        self.fake = fake
        self.inner = httpx.HTTPTransport()
        self.rival: dict[str, Any] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/customers") and not self.rival:
            self.rival = self.fake.data.add_customer("Company 1", aliases=[ALIAS])
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_create_that_loses_a_race_for_its_alias_updates_the_winner_instead(
    store: Store, fake: FakeSequence
) -> None:
    ready_customer(store)
    transport = _RivalCreate(fake)

    with make_client(fake, transport=transport) as racing:
        result = push_all(store, racing)

    assert transport.rival is not None
    assert [(p.outcome, p.billing_customer_id) for p in result.pushed] == [
        ("updated", transport.rival["id"])
    ]
    assert len(fake.data.customers) == 1
    assert fake.data.customers[transport.rival["id"]]["contacts"][0]["email"] == (
        "person1@example.com"
    )


def test_a_customer_merged_away_after_its_push_is_listed_with_both_billing_customers(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    sync(store, [company(1), company(2)], [contact(1, "c1"), contact(2, "c2")])
    first = {p.alias: p for p in push_all(store, client).pushed}
    sync(
        store,
        [company(1, merged_ids=("c2",), modified_at=later(5))],
        [contact(1, "c1"), contact(2, "c1", modified_at=later(5))],
    )

    result = push_all(store, client)

    (merged,) = result.merged_away
    assert merged.customer_id == first["crm:company:c2"].customer_id
    assert merged.billing_customer_id == first["crm:company:c2"].billing_customer_id
    assert merged.survivor_id == first[ALIAS].customer_id
    assert merged.survivor_billing_customer_id == first[ALIAS].billing_customer_id
    assert len(fake.data.customers) == 2  # neither archived nor deleted by crm-sync
    assert result.needs_a_person


def test_a_push_the_api_refuses_is_recorded_as_failed_and_sent_again_next_time(
    store: Store, fake: FakeSequence, client: SequenceClient
) -> None:
    ready_customer(store)
    fake.fail_next(status=422, path_prefix="/customers")

    failed = push_all(store, client)

    (done,) = failed.pushed
    assert done.outcome == "failed"
    assert "422" in (done.error or "")
    link = link_of(store, done.customer_id)
    assert (link.last_outcome, link.attempts, link.pushed_version) == ("failed", 1, None)
    assert not failed.ok

    retried = push_all(store, client)

    assert [p.outcome for p in retried.pushed] == ["created"]
    link = link_of(store, done.customer_id)
    assert (link.last_outcome, link.attempts, link.last_error) == ("created", 0, None)
    assert len(fake.data.customers) == 1
