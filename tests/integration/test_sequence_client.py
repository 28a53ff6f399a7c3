"""The Sequence client against the fake Sequence server, over real HTTP on 127.0.0.1.

The fake validates every request against Sequence's OpenAPI document, so each test here
also proves the client's requests conform: the ``fake`` fixture fails a test that sent
one that does not (except the one test that sends a bad request on purpose).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from tests.fakes.sequence import FakeSequence, run_fake_sequence

from crmsync.billing.client import SequenceClient
from crmsync.billing.config import BillingConfig
from crmsync.billing.errors import (
    AliasTaken,
    BillingApiError,
    BillingAuthError,
    BillingNotFound,
)
from crmsync.billing.models import Address, CustomerRequest
from crmsync.sdk.testing import FakeTime

ALIAS = "hubspot:company:1001"


def request(alias: str = ALIAS, **change: Any) -> CustomerRequest:
    body = {
        "legalName": "Acme Inc.",
        "address": {"line1": "1 Main St", "town": "Boston", "state": "MA"}
        | {"postcode": "02101", "country": "US"},
        "contacts": [{"name": "Ada", "email": "ada@acme.example", "billingPreference": "PRIMARY"}],
        "taxStatus": "TAXED",
        "customerAliases": [alias],
        "integrationIds": [{"service": "HubSpot", "id": alias.rsplit(":", 1)[-1]}],
    } | change
    return CustomerRequest.model_validate(body)


@pytest.fixture
def fake() -> Iterator[FakeSequence]:
    with run_fake_sequence() as running:
        yield running
        assert [(r.endpoint, r.problem) for r in running.invalid_requests] == []


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


def make_client(fake: FakeSequence, time_: FakeTime, **settings: Any) -> SequenceClient:
    config = BillingConfig(
        base_url=fake.url,
        username=SecretStr(fake.username),
        password=SecretStr(fake.password),
        **({"requests_per_minute": 10_000, "timeout_seconds": 2.0} | settings),
    )
    # Injected time: retries and Retry-After waits take none.
    return SequenceClient(config, sleep=time_.sleep, clock=time_.clock)


@pytest.fixture
def client(fake: FakeSequence, time_: FakeTime) -> Iterator[SequenceClient]:
    with make_client(fake, time_) as sequence:
        yield sequence


def test_a_customer_is_created_found_by_alias_read_and_updated(
    fake: FakeSequence, client: SequenceClient
) -> None:
    created = client.create_customer(request())
    found = client.find_customer_by_alias(ALIAS)
    assert found is not None
    assert found.id == created.id

    current = client.get_customer(created.id)
    merged = request(
        contacts=[
            {"name": "Ada", "email": "ada@acme.example", "billingPreference": "PRIMARY"},
            *(
                {"name": c.name, "email": c.email, "billingPreference": "STANDARD"}
                for c in current.contacts
                if c.email != "ada@acme.example"
            ),
            {"name": "Bo", "email": "bo@acme.example", "billingPreference": "STANDARD"},
        ],
        legalName="Acme Incorporated",
    )
    updated = client.update_customer(created.id, merged)

    assert updated.legal_name == "Acme Incorporated"
    assert [c.email for c in updated.contacts] == ["ada@acme.example", "bo@acme.example"]
    assert updated.integration_ids[0].service == "HubSpot"
    assert fake.by_endpoint["POST /customers"] == 1


def test_an_unknown_alias_or_id_is_none_or_not_found(client: SequenceClient) -> None:
    assert client.find_customer_by_alias("hubspot:company:404") is None
    with pytest.raises(BillingNotFound):
        client.get_customer("no-such-id")


def test_customers_are_listed_across_pages_and_filtered_by_alias(
    fake: FakeSequence, client: SequenceClient
) -> None:
    for n in range(7):
        client.create_customer(request(alias=f"hubspot:company:{n}"))

    listed = list(client.list_customers(page_size=3))
    one = list(client.list_customers(alias="hubspot:company:4"))

    assert len({c.id for c in listed}) == 7
    assert fake.by_endpoint["GET /customers"] == 3 + 1
    assert [c.id for c in one] == [c.id for c in listed if c.id == one[0].id]


def test_an_alias_is_added_once_and_listed(fake: FakeSequence, client: SequenceClient) -> None:
    customer = client.create_customer(request())

    first = client.create_alias(customer.id, "salesforce:account:1", label="CRM ID")
    again = client.create_alias(customer.id, "salesforce:account:1", label="CRM ID")

    assert first.id == again.id
    assert {a.value for a in client.list_aliases(customer.id)} == {ALIAS, "salesforce:account:1"}
    assert fake.by_endpoint["POST /customer-aliases"] == 2  # the repeat replayed by its key


def test_an_alias_held_by_another_customer_is_a_conflict_naming_both(
    client: SequenceClient,
) -> None:
    holder = client.create_customer(request())
    other = client.create_customer(request(alias="hubspot:company:2"))

    with pytest.raises(AliasTaken) as raised:
        client.create_alias(other.id, ALIAS)

    assert (raised.value.customer_id, raised.value.owner_id) == (other.id, holder.id)
    assert "already in use" in raised.value.api_message


def test_a_create_whose_alias_another_customer_holds_is_a_conflict(
    client: SequenceClient,
) -> None:
    holder = client.create_customer(request())

    with pytest.raises(AliasTaken) as raised:
        client.create_customer(request(legalName="Someone Else"))

    assert raised.value.owner_id == holder.id


def test_a_create_that_times_out_after_it_happened_makes_one_customer(
    fake: FakeSequence, time_: FakeTime
) -> None:
    fake.slow_next(seconds=3.0, path_prefix="/customers")
    with make_client(fake, time_, timeout_seconds=0.3) as client:
        created = client.create_customer(request())

    assert len(fake.data.customers) == 1
    assert created.id in fake.data.customers
    assert fake.by_endpoint["POST /customers"] == 1


def test_a_create_that_failed_before_it_happened_is_sent_again(
    fake: FakeSequence, client: SequenceClient
) -> None:
    fake.fail_next(status=503, path_prefix="/customers")

    client.create_customer(request())

    assert len(fake.data.customers) == 1
    assert fake.by_endpoint["POST /customers"] == 2


def test_a_create_answered_with_malformed_json_is_not_repeated(
    fake: FakeSequence, client: SequenceClient
) -> None:
    fake.malformed_next(path_prefix="/customers")

    created = client.create_customer(request())

    assert list(fake.data.customers) == [created.id]


def test_429_with_retry_after_and_500s_are_retried(
    fake: FakeSequence, client: SequenceClient, time_: FakeTime
) -> None:
    customer = client.create_customer(request())
    fake.fail_next(status=429, retry_after="2")
    fake.fail_next(status=500)

    assert client.get_customer(customer.id).id == customer.id
    assert 2.0 in time_.sleeps
    assert client.rate_limited == 1


def test_a_read_that_times_out_is_retried(fake: FakeSequence, time_: FakeTime) -> None:
    with make_client(fake, time_, timeout_seconds=0.3) as client:
        customer = client.create_customer(request())
        fake.slow_next(seconds=3.0)
        assert client.get_customer(customer.id).id == customer.id


def test_wrong_credentials_are_an_auth_error_that_names_no_secret(fake: FakeSequence) -> None:
    config = BillingConfig(
        base_url=fake.url, username=SecretStr("someone"), password=SecretStr("not-the-secret")
    )
    with SequenceClient(config) as client, pytest.raises(BillingAuthError) as raised:
        client.get_customer("x")

    assert "not-the-secret" not in str(raised.value)


def test_the_archive_cascade_shows_in_schedules_and_invoices(
    fake: FakeSequence, client: SequenceClient
) -> None:
    customer = client.create_customer(request())
    schedule = fake.data.add_billing_schedule(customer.id)
    draft = fake.data.add_invoice(customer.id, "DRAFT")
    sent = fake.data.add_invoice(customer.id, "SENT")

    archived = client.archive_customer(customer.id)

    assert archived.archived_at is not None
    schedules = list(client.list_billing_schedules(customer.id))
    assert [(s.id, s.archived_at is not None) for s in schedules] == [(schedule["id"], True)]
    statuses = {i.id: i.status for i in client.list_invoices(customer.id)}
    assert statuses == {draft["id"]: "VOIDED", sent["id"]: "SENT"}


def test_schedules_are_archived_and_draft_invoices_voided_one_by_one(
    fake: FakeSequence, client: SequenceClient
) -> None:
    customer = client.create_customer(request())
    schedule = fake.data.add_billing_schedule(customer.id)
    drafts = [fake.data.add_invoice(customer.id, "DRAFT") for _ in range(3)]
    fake.data.add_invoice(customer.id, "FINAL")

    assert client.archive_billing_schedule(schedule["id"]).archived_at is not None
    listed = list(client.list_invoices(customer.id, statuses=["DRAFT"], page_size=2))
    voided = [client.void_invoice(invoice.id) for invoice in listed]

    assert sorted(i.id for i in voided) == sorted(d["id"] for d in drafts)
    assert {i.status for i in voided} == {"VOIDED"}
    assert list(client.list_billing_schedules(customer.id, include_archived=False)) == []


def test_a_bad_request_is_caught_by_the_fake_against_the_document(
    fake: FakeSequence, client: SequenceClient
) -> None:
    # Built without validation, as a bug in the client could: Germany is no alpha-2 code.
    address = Address.model_construct(line1="x", town="Berlin", postcode="10115", country="Germany")
    bad = request().model_copy(update={"address": address})

    with pytest.raises(BillingApiError) as raised:
        client.create_customer(bad)

    assert raised.value.status == 400
    assert "Germany" in raised.value.api_message
    assert [r.endpoint for r in fake.invalid_requests] == ["POST /customers"]
    fake.requests.clear()  # the fixture checks that every other request was valid
