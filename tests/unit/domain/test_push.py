"""What a push sends for a customer, how an update merges, and when a push is due."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from crmsync.billing.models import Customer
from crmsync.domain.push import (
    CrmRecord,
    Held,
    NotSendable,
    PushContact,
    PushCustomer,
    crm_record_of,
    customer_request,
    integration_service,
    merge_for_update,
    needs_push,
    push_alias,
)


def customer(**changes: Any) -> PushCustomer:
    base = PushCustomer(
        id="cus_1",
        version=3,
        ready=True,
        held=(),
        legal_name="Acme Inc.",
        line1="1 Main St",
        line2=None,
        city="Boston",
        state="MA",
        postal_code="02101",
        country="US",
        tax_status="TAXED",
        contacts=(
            PushContact("Bo", "bo@acme.example", primary=False, email_valid=True),
            PushContact("Ada", "ada@acme.example", primary=True, email_valid=True),
        ),
        aliases=("cus_1", "ACC-1"),
        records=(CrmRecord("hubspot", "123", "HubSpot"),),
    )
    return replace(base, **changes)


def billing_customer(contacts: list[dict[str, Any]], **changes: Any) -> Customer:
    body = {
        "id": "b-1",
        "createdAt": "2026-01-01T00:00:00Z",
        "legalName": "Acme",
        "address": {"line1": "x", "town": "y", "postcode": "z", "country": "GB"},
        "taxStatus": "TAXED",
        "integrationIds": [],
        "customProperties": {},
        "status": "ACTIVE",
        "contacts": [
            {"id": f"c{n}", "createdAt": "t", "updatedAt": "t"} | c for n, c in enumerate(contacts)
        ],
    } | changes
    return Customer.model_validate(body)


def test_the_push_alias_names_the_first_crm_company_record() -> None:
    assert push_alias(customer()) == "hubspot:company:123"


def test_a_customer_from_no_crm_record_gets_an_alias_of_its_own_id() -> None:
    assert push_alias(customer(records=())) == "crm-sync:cus_1"


def test_the_request_carries_name_address_tax_status_contacts_aliases_and_crm_ids() -> None:
    body = customer_request(customer()).to_json()

    assert body == {
        "legalName": "Acme Inc.",
        "address": {
            "line1": "1 Main St",
            "town": "Boston",
            "state": "MA",
            "postcode": "02101",
            "country": "US",
        },
        "contacts": [
            {"name": "Ada", "email": "ada@acme.example", "billingPreference": "PRIMARY"},
            {"name": "Bo", "email": "bo@acme.example", "billingPreference": "STANDARD"},
        ],
        "taxStatus": "TAXED",
        "customerAliases": ["hubspot:company:123", "cus_1", "ACC-1"],
        "integrationIds": [{"service": "HubSpot", "id": "123"}],
    }


def test_a_state_is_sent_only_for_us_and_canadian_addresses() -> None:
    brazil = customer_request(customer(country="BR", state="SP", city="São Paulo"))
    canada = customer_request(customer(country="CA", state="ON"))

    assert brazil.address.state is None
    assert canada.address.state == "ON"


def test_exactly_one_contact_is_primary_and_invalid_or_duplicate_addresses_stay_home() -> None:
    contacts = (
        PushContact("Ada", "ada@acme.example", primary=True, email_valid=True),
        PushContact("Ada again", "ADA@acme.example", primary=False, email_valid=True),
        PushContact("Typo", "not-an-email", primary=False, email_valid=False),
        PushContact(None, "cy@acme.example", primary=False, email_valid=True),
    )

    sent = customer_request(customer(contacts=contacts)).contacts

    assert [(c.name, c.email, c.billing_preference) for c in sent] == [
        ("Ada", "ada@acme.example", "PRIMARY"),
        ("cy@acme.example", "cy@acme.example", "STANDARD"),
    ]


def test_a_file_export_record_has_no_integration_id() -> None:
    request = customer_request(customer(records=(CrmRecord("sample", "C-1"),)))

    assert request.integration_ids is None
    assert request.customer_aliases == ["sample:company:C-1", "cus_1", "ACC-1"]


def test_a_held_customer_cannot_make_a_request() -> None:
    held = customer(ready=False, held=(Held("no_primary_billing_contact", "..."),))

    with pytest.raises(NotSendable, match="no_primary_billing_contact"):
        customer_request(held)


def test_a_customer_the_api_would_refuse_is_not_sendable() -> None:
    with pytest.raises(NotSendable, match="state"):
        customer_request(customer(state=None))


def test_an_update_keeps_the_contacts_only_the_billing_side_has_and_one_primary() -> None:
    current = billing_customer(
        [
            {"name": "Ada (old)", "email": "ada@acme.example", "billingPreference": "PRIMARY"},
            {"name": "Fin", "email": "fin@acme.example", "billingPreference": "PRIMARY"},
            {"name": "Gus", "email": "gus@acme.example", "billingPreference": "NONE"},
            {
                "name": "Old",
                "email": "old@acme.example",
                "billingPreference": "STANDARD",
                "archivedAt": "2026-02-01T00:00:00Z",
            },
        ],
        integrationIds=[{"service": "Stripe", "id": "cus_S", "isPending": False}],
        url="https://acme.example",
    )

    merged = merge_for_update(customer_request(customer()), current)

    assert [(c.email, c.billing_preference) for c in merged.contacts] == [
        ("ada@acme.example", "PRIMARY"),
        ("bo@acme.example", "STANDARD"),
        ("fin@acme.example", "STANDARD"),
        ("gus@acme.example", "NONE"),
    ]
    assert [(i.service, i.id) for i in merged.integration_ids or []] == [
        ("HubSpot", "123"),
        ("Stripe", "cus_S"),
    ]
    assert merged.url == "https://acme.example"
    assert merged.legal_name == "Acme Inc."


@pytest.mark.parametrize(
    ("version", "pushed", "due"), [(1, None, True), (3, 2, True), (3, 3, False), (2, 3, False)]
)
def test_a_push_is_due_only_when_the_version_moved_past_the_pushed_one(
    version: int, pushed: int | None, due: bool
) -> None:
    assert needs_push(version, pushed) is due


def test_connector_types_map_to_the_billing_apis_integration_services() -> None:
    assert integration_service("hubspot") == "HubSpot"
    assert integration_service("file") is None


def test_a_push_alias_names_its_crm_record_as_the_command_line_takes_it() -> None:
    assert crm_record_of("hubspot:company:123") == "hubspot:123"
    assert crm_record_of("ACC-1") is None
