"""The Sequence client over a mocked network: headers, retries, errors, and what it hides."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from crmsync.billing.client import SequenceClient, alias_idempotency_key
from crmsync.billing.config import BillingConfig
from crmsync.billing.errors import (
    AliasTaken,
    BillingApiError,
    BillingAuthError,
    BillingOutcomeUnknown,
    BillingProtocolError,
    BillingRateLimited,
    BillingTransientError,
)
from crmsync.billing.models import CustomerRequest
from crmsync.sdk.testing import FakeTime

BASE = "https://sequence.example.test/api"
USERNAME = "client-7c1d0b52"
PASSWORD = "s3q-secret-9f8e7d6c5b4a"
BASIC = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CUSTOMER_ID = "c-1"


def customer_json(customer_id: str = CUSTOMER_ID, **extra: Any) -> dict[str, Any]:
    return {
        "id": customer_id,
        "createdAt": "2026-01-01T00:00:00Z",
        "organizations": [],
        "legalName": "Acme GmbH",
        "address": {"line1": "Hauptstr. 1", "town": "Berlin", "postcode": "10115", "country": "DE"},
        "integrationIds": [],
        "taxStatus": "TAXED",
        "contacts": [],
        "status": "ACTIVE",
        "customProperties": {},
        **extra,
    }


def aliased_json(customer_id: str = CUSTOMER_ID) -> dict[str, Any]:
    body = customer_json(customer_id)
    return {k: body[k] for k in ("id", "createdAt", "legalName", "address", "taxStatus")} | {
        "integrationIds": [],
        "email": "",
        "billingEmails": [],
    }


def alias_json(value: str, customer_id: str = CUSTOMER_ID) -> dict[str, Any]:
    return {
        "id": f"a-{value}",
        "sequenceAccountId": "acct",
        "customerId": customer_id,
        "value": value,
        "createdAt": "2026-01-01T00:00:00Z",
    }


def request(alias: str | None = "hubspot:company:1") -> CustomerRequest:
    return CustomerRequest.model_validate(
        {
            "legalName": "Acme GmbH",
            "address": {"line1": "Hauptstr. 1", "town": "Berlin", "postcode": "10115"}
            | {"country": "DE"},
            "contacts": [
                {"name": "Ada", "email": "ada@acme.example", "billingPreference": "PRIMARY"}
            ],
            "taxStatus": "TAXED",
            "customerAliases": [alias] if alias else None,
        }
    )


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as router:
        yield router


@pytest.fixture
def client(fake: FakeTime) -> Iterator[SequenceClient]:
    config = BillingConfig(
        base_url=BASE,
        username=SecretStr(USERNAME),
        password=SecretStr(PASSWORD),
        requests_per_minute=1000,
        max_attempts=4,
    )
    with SequenceClient(
        config, sleep=fake.sleep, clock=fake.clock, wall_clock=lambda: NOW
    ) as sequence:
        yield sequence


def test_every_request_carries_basic_credentials_and_the_api_version(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    route = api.get(f"/customers/{CUSTOMER_ID}").respond(200, json=customer_json())

    client.get_customer(CUSTOMER_ID)

    sent = route.calls.last.request
    assert sent.headers["Authorization"] == BASIC
    assert sent.headers["Sequence-Version"] == "2024-07-30"
    assert sent.url == f"{BASE}/customers/{CUSTOMER_ID}"


def test_an_alias_is_sent_as_one_escaped_path_segment(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    route = api.get(url__regex=r"/customers/by-alias/.+").respond(200, json=aliased_json())

    found = client.find_customer_by_alias("hubspot:company/1 x")

    assert found is not None
    assert found.id == CUSTOMER_ID
    assert route.calls.last.request.url.raw_path == (
        b"/api/customers/by-alias/hubspot%3Acompany%2F1%20x"
    )


def test_an_unknown_alias_is_none_not_an_error(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    api.get("/customers/by-alias/nobody").respond(404, json={"message": "not found"})

    assert client.find_customer_by_alias("nobody") is None


def test_a_429_waits_what_retry_after_asks_then_succeeds(
    api: respx.MockRouter, client: SequenceClient, fake: FakeTime
) -> None:
    api.get(f"/customers/{CUSTOMER_ID}").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow down"}),
            httpx.Response(200, json=customer_json()),
        ]
    )

    assert client.get_customer(CUSTOMER_ID).id == CUSTOMER_ID
    assert 7.0 in fake.sleeps
    assert client.rate_limited == 1


def test_a_429_asking_for_longer_than_the_client_may_wait_ends_at_once(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    api.get(f"/customers/{CUSTOMER_ID}").respond(429, headers={"Retry-After": "3600"})

    with pytest.raises(BillingRateLimited) as raised:
        client.get_customer(CUSTOMER_ID)

    assert raised.value.retry_after_seconds == 3600


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_on_a_read_is_retried(
    api: respx.MockRouter, client: SequenceClient, status: int
) -> None:
    route = api.get(f"/customers/{CUSTOMER_ID}").mock(
        side_effect=[httpx.Response(status), httpx.Response(200, json=customer_json())]
    )

    client.get_customer(CUSTOMER_ID)

    assert route.call_count == 2


def test_a_timeout_on_a_read_is_retried(api: respx.MockRouter, client: SequenceClient) -> None:
    route = api.get(f"/customers/{CUSTOMER_ID}").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=customer_json())]
    )

    client.get_customer(CUSTOMER_ID)

    assert route.call_count == 2


def test_retries_are_bounded_and_end_in_a_transient_error(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    route = api.get(f"/customers/{CUSTOMER_ID}").respond(503, json={"message": "down"})

    with pytest.raises(BillingTransientError, match="gave up after 4 attempts"):
        client.get_customer(CUSTOMER_ID)

    assert route.call_count == 4


def test_a_refusal_carries_the_apis_own_message_and_is_not_retried(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    route = api.put(f"/customers/{CUSTOMER_ID}").respond(
        400, json={"message": "Address state must be provided for country US"}
    )

    with pytest.raises(BillingApiError) as raised:
        client.update_customer(CUSTOMER_ID, request())

    assert raised.value.status == 400
    assert raised.value.api_message == "Address state must be provided for country US"
    assert "PUT /api/customers/c-1 -> 400" in str(raised.value)
    assert route.call_count == 1


def test_rejected_credentials_are_an_auth_error(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    api.get(f"/customers/{CUSTOMER_ID}").respond(401, json={"message": "Unauthorized"})

    with pytest.raises(BillingAuthError):
        client.get_customer(CUSTOMER_ID)


def test_secrets_and_emails_never_reach_an_error_or_a_log_line(
    api: respx.MockRouter, client: SequenceClient, caplog: pytest.LogCaptureFixture
) -> None:
    echoed = f"bad credentials {BASIC} for {USERNAME}:{PASSWORD}, contact ada@acme.example"
    api.get(f"/customers/{CUSTOMER_ID}").mock(
        side_effect=[httpx.Response(503, text=echoed), httpx.Response(403, text=echoed)]
    )
    caplog.set_level(logging.DEBUG, logger="crmsync")

    with pytest.raises(BillingAuthError) as raised:
        client.get_customer(CUSTOMER_ID)

    shown = [str(raised.value), raised.value.api_message, caplog.text]
    for text in shown:
        for secret in (PASSWORD, USERNAME, BASIC.split()[1], "ada@acme.example"):
            assert secret not in text
    assert "a***@acme.example" in str(raised.value)
    assert "attempt 1 of 4" in caplog.text  # the retry was logged, masked


def test_malformed_json_on_a_read_is_retried(api: respx.MockRouter, client: SequenceClient) -> None:
    api.get(f"/customers/{CUSTOMER_ID}").mock(
        side_effect=[
            httpx.Response(200, text='{"id": "c-1", "legal'),
            httpx.Response(200, json=customer_json()),
        ]
    )

    assert client.get_customer(CUSTOMER_ID).id == CUSTOMER_ID


def test_an_answer_the_models_cannot_read_is_a_protocol_error(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    api.get(f"/customers/{CUSTOMER_ID}").respond(200, json={"id": CUSTOMER_ID})

    with pytest.raises(BillingProtocolError, match="unexpected answer"):
        client.get_customer(CUSTOMER_ID)


def test_a_create_that_timed_out_but_happened_is_found_by_its_alias_not_sent_again(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    create = api.post("/customers").mock(side_effect=httpx.ReadTimeout("slow"))
    api.get("/customers/by-alias/hubspot%3Acompany%3A1").respond(200, json=aliased_json())
    api.get(f"/customers/{CUSTOMER_ID}").respond(200, json=customer_json())

    created = client.create_customer(request())

    assert created.id == CUSTOMER_ID
    assert create.call_count == 1


def test_a_create_that_failed_with_a_5xx_and_did_not_happen_is_sent_again(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    create = api.post("/customers").mock(
        side_effect=[httpx.Response(502), httpx.Response(201, json=customer_json())]
    )
    api.get("/customers/by-alias/hubspot%3Acompany%3A1").respond(404)

    assert client.create_customer(request()).id == CUSTOMER_ID
    assert create.call_count == 2


def test_a_create_without_an_alias_is_never_sent_twice_after_a_timeout(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    create = api.post("/customers").mock(side_effect=httpx.ReadTimeout("slow"))

    with pytest.raises(BillingOutcomeUnknown):
        client.create_customer(request(alias=None))

    assert create.call_count == 1


def test_a_429_on_a_create_is_retried_since_nothing_was_created(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    create = api.post("/customers").mock(
        side_effect=[httpx.Response(429), httpx.Response(201, json=customer_json())]
    )

    client.create_customer(request())

    assert create.call_count == 2


def test_a_create_refused_for_an_alias_another_customer_holds_names_that_customer(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    api.post("/customers").respond(400, json={"message": "alias already in use"})
    api.get("/customers/by-alias/hubspot%3Acompany%3A1").respond(200, json=aliased_json("c-9"))

    with pytest.raises(AliasTaken) as raised:
        client.create_customer(request())

    assert raised.value.owner_id == "c-9"
    assert raised.value.customer_id is None
    assert "c-9" in str(raised.value)


def test_alias_creation_sends_a_deterministic_idempotency_key_and_retries_with_it(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    route = api.post("/customer-aliases").mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(201, json=alias_json("crm:1"))]
    )

    client.create_alias(CUSTOMER_ID, "crm:1", label="CRM ID")

    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert keys == {alias_idempotency_key(CUSTOMER_ID, "crm:1")}
    assert len(next(iter(keys))) <= 255
    assert route.call_count == 2


@pytest.mark.parametrize("status", [400, 409])
def test_an_alias_held_by_another_customer_is_a_conflict_naming_both(
    api: respx.MockRouter, client: SequenceClient, status: int
) -> None:
    api.post("/customer-aliases").respond(status, json={"message": "Alias already exists"})
    api.get("/customers/by-alias/crm%3A1").respond(200, json=aliased_json("c-other"))

    with pytest.raises(AliasTaken) as raised:
        client.create_alias(CUSTOMER_ID, "crm:1")

    assert (raised.value.customer_id, raised.value.owner_id) == (CUSTOMER_ID, "c-other")
    assert raised.value.api_message == "Alias already exists"


def test_an_alias_the_customer_already_holds_is_returned_not_refused(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    api.post("/customer-aliases").respond(400, json={"message": "Alias already exists"})
    api.get("/customers/by-alias/crm%3A1").respond(200, json=aliased_json())
    api.get(f"/customers/{CUSTOMER_ID}/aliases").respond(200, json={"items": [alias_json("crm:1")]})

    assert client.create_alias(CUSTOMER_ID, "crm:1").value == "crm:1"


def test_lists_follow_the_after_cursor_until_the_last_page(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    route = api.get("/invoices").mock(
        side_effect=[
            httpx.Response(200, json={"items": [], "pagination": {"after": "p2"}} | _two("i1")),
            httpx.Response(200, json={"items": [], "pagination": {}} | _two("i3")),
        ]
    )

    ids = [i.id for i in client.list_invoices(CUSTOMER_ID, statuses=["DRAFT", "FINAL"])]

    assert ids == ["i1", "i1b", "i3", "i3b"]
    first, second = (call.request.url.params for call in route.calls)
    assert first["customerId"] == CUSTOMER_ID
    assert first["invoiceStatus"] == "DRAFT,FINAL"
    assert first["limit"] == "100"
    assert "after" not in first
    assert second["after"] == "p2"


def test_a_repeating_cursor_stops_with_a_protocol_error(
    api: respx.MockRouter, client: SequenceClient
) -> None:
    api.get("/billing-schedules").respond(
        200,
        json={"items": [_schedule("s1")], "pagination": {"after": "same"}},
    )

    with pytest.raises(BillingProtocolError, match="cursor repeats"):
        list(client.list_billing_schedules(CUSTOMER_ID))


def test_requests_are_paced_under_the_configured_rate(
    api: respx.MockRouter, fake: FakeTime
) -> None:
    api.get(f"/customers/{CUSTOMER_ID}").respond(200, json=customer_json())
    config = BillingConfig(
        base_url=BASE,
        username=SecretStr(USERNAME),
        password=SecretStr(PASSWORD),
        requests_per_minute=2,
    )
    with SequenceClient(config, sleep=fake.sleep, clock=fake.clock) as paced:
        started = fake.clock()
        for _ in range(5):
            paced.get_customer(CUSTOMER_ID)

    # 5 requests at 2 per minute: the 3rd waits a minute, the 5th two.
    assert fake.clock() - started == pytest.approx(120.0)


def _two(prefix: str) -> dict[str, Any]:
    return {"items": [_invoice(prefix), _invoice(prefix + "b")]}


def _invoice(invoice_id: str) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "customerId": CUSTOMER_ID,
        "status": "DRAFT",
        "paymentStatus": "UNPAID",
        "currency": "EUR",
        "netTotal": "1.00",
        "grossTotal": "1.20",
        "totalTax": "0.20",
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }


def _schedule(schedule_id: str) -> dict[str, Any]:
    return {
        "id": schedule_id,
        "customerId": CUSTOMER_ID,
        "status": "ACTIVE",
        "startDate": "2026-01-01",
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
    }
