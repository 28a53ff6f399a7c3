"""The fake Sequence behaves like Sequence where crm-sync depends on it.

Every test talks plain HTTP (httpx) to a fake started on 127.0.0.1, so what is proven
here is the fake itself: it refuses requests its OpenAPI document refuses, keeps aliases
unique, replays idempotent alias creations and injects the faults tests ask for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .sequence import FakeSequence, SequenceData, run_fake_sequence

VERSION = {"Sequence-Version": "2024-07-30"}
PLACE = {"line1": "x", "town": "y", "postcode": "z"}


def customer_body(**change: Any) -> dict[str, Any]:
    return {
        "legalName": "Acme Inc.",
        "address": {"line1": "1 Main St", "town": "Boston", "state": "MA"}
        | {"postcode": "02101", "country": "US"},
        "contacts": [{"name": "Ada", "email": "ada@acme.example", "billingPreference": "PRIMARY"}],
        "taxStatus": "TAXED",
        "customerAliases": ["hubspot:company:1"],
    } | change


@pytest.fixture
def fake() -> Iterator[FakeSequence]:
    with run_fake_sequence() as running:
        yield running


@pytest.fixture
def http(fake: FakeSequence) -> Iterator[httpx.Client]:
    headers = {"Authorization": fake.auth_header, **VERSION}
    with httpx.Client(base_url=fake.url, headers=headers, timeout=5) as client:
        yield client


def create(http: httpx.Client, **change: Any) -> dict[str, Any]:
    response = http.post("/customers", json=customer_body(**change))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# ---- validation against the OpenAPI document --------------------------------------------------


def test_a_conforming_create_is_served_and_recorded_as_valid(
    fake: FakeSequence, http: httpx.Client
) -> None:
    created = create(http)

    assert created["legalName"] == "Acme Inc."
    assert fake.by_endpoint["POST /customers"] == 1
    assert fake.invalid_requests == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"address": {"line1": "x", "town": "y", "postcode": "z", "country": "Germany"}},
            "country",
        ),
        ({"taxStatus": "EXEMPT"}, "EXEMPT"),
        ({"legalName": None}, "legalName"),
        ({"contacts": [{"name": "A", "billingPreference": "PRIMARY"}]}, "email"),
        (
            {
                "address": {
                    "line1": "x",
                    "town": "y",
                    "postcode": "z",
                    "country": "DE",
                    "state": "BY",
                }
            },
            "BY",
        ),
        (
            {"contacts": [{"name": "A", "email": "a@x.example", "billingPreference": "NONE"}]},
            "PRIMARY",
        ),
        (
            {"address": PLACE | {"country": "CA"}},
            "state",
        ),
        ({"integrationIds": [{"service": "Pipedrive", "id": "1"}]}, "Pipedrive"),
    ],
)
def test_a_body_the_document_refuses_is_answered_400_with_the_reason(
    fake: FakeSequence, http: httpx.Client, change: dict[str, Any], problem: str
) -> None:
    response = http.post("/customers", json=customer_body(**change))

    assert response.status_code == 400
    assert problem in response.json()["message"]
    assert [r.endpoint for r in fake.invalid_requests] == ["POST /customers"]
    assert fake.data.customers == {}


def test_parameters_are_validated_too(fake: FakeSequence, http: httpx.Client) -> None:
    assert http.get("/customers", params={"limit": "many"}).status_code == 400
    assert http.get("/customers", params={"limit": 500}).status_code == 400
    assert http.get("/customers", headers={"Sequence-Version": "2020-01-01"}).status_code == 400
    assert len(fake.invalid_requests) == 3


def test_a_request_without_the_version_header_is_refused(fake: FakeSequence) -> None:
    with httpx.Client(base_url=fake.url, headers={"Authorization": fake.auth_header}) as bare:
        response = bare.get("/customers")

    assert response.status_code == 400
    assert "Sequence-Version" in response.json()["message"]


def test_wrong_credentials_are_refused(fake: FakeSequence) -> None:
    with httpx.Client(base_url=fake.url, auth=("someone", "wrong"), headers=VERSION) as client:
        assert client.get("/customers").status_code == 401


def test_an_undocumented_path_is_404(fake: FakeSequence, http: httpx.Client) -> None:
    assert http.delete("/customers/x").status_code == 405
    assert http.get("/no-such-thing").status_code == 404


def test_the_fake_checks_its_own_answers_against_the_document(
    fake: FakeSequence, http: httpx.Client
) -> None:
    created = create(http)
    del fake.data.customers[created["id"]]["status"]  # a bug in the fake, simulated

    response = http.get(f"/customers/{created['id']}")

    assert response.status_code == 500
    assert "off the document" in response.json()["message"]


# ---- customers ----------------------------------------------------------------------------------


def test_put_replaces_contacts_and_keeps_custom_properties_when_left_out(
    http: httpx.Client,
) -> None:
    created = create(http, customProperties={"tier": "gold"})
    contacts = [{"name": "Bo", "email": "bo@acme.example", "billingPreference": "PRIMARY"}]

    updated = http.put(f"/customers/{created['id']}", json=customer_body(contacts=contacts))

    assert [c["email"] for c in updated.json()["contacts"]] == ["bo@acme.example"]
    assert updated.json()["customProperties"] == {"tier": "gold"}


def test_a_customer_is_found_by_alias_and_by_its_own_id(http: httpx.Client) -> None:
    created = create(http)

    by_alias = http.get("/customers/by-alias/hubspot%3Acompany%3A1")
    by_id = http.get(f"/customers/by-alias/{created['id']}")

    assert by_alias.json()["id"] == by_id.json()["id"] == created["id"]
    assert by_alias.json()["email"] == "ada@acme.example"
    assert http.get("/customers/by-alias/unknown").status_code == 404


def test_customers_are_listed_in_pages_with_an_after_cursor(http: httpx.Client) -> None:
    for n in range(5):
        create(http, customerAliases=[f"crm:{n}"])

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = http.get("/customers", params=params).json()
        seen.extend(c["id"] for c in body["items"])
        assert body["pagination"]["totalResultSize"] == 5
        if "after" not in body["pagination"]:
            break
        params["after"] = body["pagination"]["after"]

    assert len(set(seen)) == 5
    one = http.get("/customers", params={"alias": "crm:3"}).json()["items"]
    assert len(one) == 1


def test_archiving_archives_schedules_voids_drafts_and_keeps_sent_invoices(
    fake: FakeSequence, http: httpx.Client
) -> None:
    customer = create(http)
    schedule = fake.data.add_billing_schedule(customer["id"])
    draft = fake.data.add_invoice(customer["id"], "DRAFT")
    sent = fake.data.add_invoice(customer["id"], "SENT")

    assert http.post(f"/customers/{customer['id']}/archive").status_code == 200

    assert "archivedAt" in fake.data.schedules[schedule["id"]]
    assert fake.data.invoices[draft["id"]]["status"] == "VOIDED"
    assert fake.data.invoices[sent["id"]]["status"] == "SENT"
    listed = http.get("/customers").json()["items"]
    assert listed == []
    archived = http.get("/customers", params={"includeArchived": "true"}).json()["items"]
    assert [c["id"] for c in archived] == [customer["id"]]


def test_a_paid_sent_invoice_cannot_be_voided(fake: FakeSequence, http: httpx.Client) -> None:
    customer = create(http)
    paid = fake.data.add_invoice(customer["id"], "SENT", payment_status="PAID")

    response = http.post(f"/invoices/{paid['id']}/void")

    assert response.status_code == 400
    assert "cannot be voided" in response.json()["message"]


# ---- aliases ------------------------------------------------------------------------------------


def test_an_alias_held_by_another_customer_is_refused(
    fake: FakeSequence, http: httpx.Client
) -> None:
    first = create(http)
    second = create(http, customerAliases=["crm:2"])

    taken = http.post(
        "/customer-aliases", json={"customerId": second["id"], "value": "hubspot:company:1"}
    )
    duplicate = http.post("/customers", json=customer_body())

    assert taken.status_code == duplicate.status_code == 400
    assert first["id"] in taken.json()["message"]
    assert len(fake.data.customers) == 2


def test_the_conflict_status_can_be_409(fake: FakeSequence, http: httpx.Client) -> None:
    fake.data.alias_conflict_status = 409
    create(http)

    assert http.post("/customers", json=customer_body()).status_code == 409


def test_alias_values_are_exact_strings(http: httpx.Client) -> None:
    create(http)

    assert (
        http.post(
            "/customers", json=customer_body(customerAliases=["HubSpot:Company:1"])
        ).status_code
        == 201
    )


def test_case_variants_can_be_made_to_collide(fake: FakeSequence, http: httpx.Client) -> None:
    fake.data.aliases_case_sensitive = False
    create(http)

    variant = customer_body(customerAliases=["HubSpot:Company:1"])
    assert http.post("/customers", json=variant).status_code == 400


def test_an_idempotency_key_replays_the_first_answer_without_acting_again(
    fake: FakeSequence, http: httpx.Client
) -> None:
    customer = create(http)
    body = {"customerId": customer["id"], "value": "crm:extra", "label": "CRM ID"}
    key = {"Idempotency-Key": "alias-key-1"}

    first = http.post("/customer-aliases", json=body, headers=key)
    again = http.post("/customer-aliases", json=body, headers=key)
    other = http.post("/customer-aliases", json=body | {"value": "crm:other"}, headers=key)
    unkeyed = http.post("/customer-aliases", json=body)

    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert other.status_code == 400
    assert unkeyed.status_code == 400  # without the key it is a second holder: refused
    assert len(fake.data.customer_aliases(customer["id"])) == 2  # hubspot:company:1, crm:extra


def test_an_idempotency_key_over_255_characters_is_refused(http: httpx.Client) -> None:
    customer = create(http)
    body = {"customerId": customer["id"], "value": "crm:extra"}

    response = http.post("/customer-aliases", json=body, headers={"Idempotency-Key": "k" * 256})

    assert response.status_code == 400


# ---- faults -------------------------------------------------------------------------------------


def test_an_injected_429_carries_retry_after(fake: FakeSequence, http: httpx.Client) -> None:
    fake.fail_next(status=429, retry_after="3")

    response = http.get("/customers")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert http.get("/customers").status_code == 200


def test_an_injected_500_does_nothing(fake: FakeSequence, http: httpx.Client) -> None:
    fake.fail_next(status=500, path_prefix="/customers")

    assert http.post("/customers", json=customer_body()).status_code == 500
    assert fake.data.customers == {}


def test_a_malformed_answer_follows_a_write_that_happened(
    fake: FakeSequence, http: httpx.Client
) -> None:
    fake.malformed_next()

    response = http.post("/customers", json=customer_body())

    with pytest.raises(ValueError):  # noqa: PT011 - json's own error
        response.json()
    assert len(fake.data.customers) == 1


def test_a_slow_answer_times_the_client_out_after_the_write_happened(
    fake: FakeSequence, http: httpx.Client
) -> None:
    fake.slow_next(seconds=5.0)

    with pytest.raises(httpx.ReadTimeout):
        http.post("/customers", json=customer_body(), timeout=0.2)

    assert len(fake.data.customers) == 1


def test_the_rate_limit_answers_429_with_retry_after() -> None:
    with run_fake_sequence(SequenceData(), rate_limit=(2, 60.0)) as limited:
        headers = {"Authorization": limited.auth_header, **VERSION}
        with httpx.Client(base_url=limited.url, headers=headers) as client:
            statuses = [client.get("/customers").status_code for _ in range(3)]
            retry_after = client.get("/customers").headers["Retry-After"]

    assert statuses == [200, 200, 429]
    assert 1 <= int(retry_after) <= 60


def test_aliases_are_listed_account_wide_and_can_be_deleted(http: httpx.Client) -> None:
    create(http)
    listed = http.get("/customer-aliases", params={"value": "hubspot:company:1"}).json()["items"]

    deleted = http.delete(f"/customer-aliases/{listed[0]['id']}")

    assert deleted.status_code == 200
    assert http.get("/customers/by-alias/hubspot%3Acompany%3A1").status_code == 404


def test_an_idempotency_key_is_forgotten_after_24_hours() -> None:
    now = [1_800_000_000.0]
    data = SequenceData(clock=lambda: now[0])
    customer = data.add_customer(aliases=["crm:1"])
    with run_fake_sequence(data) as fake:
        headers = {"Authorization": fake.auth_header, "Idempotency-Key": "k-1", **VERSION}
        with httpx.Client(base_url=fake.url, headers=headers) as client:
            body = {"customerId": customer["id"], "value": "crm:2"}
            assert client.post("/customer-aliases", json=body).status_code == 201
            now[0] += 24 * 3600 + 1
            again = client.post("/customer-aliases", json=body)

    assert again.status_code == 400  # acted on as new: the alias is already held
