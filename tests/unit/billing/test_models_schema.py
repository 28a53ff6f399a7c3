"""The billing models agree with Sequence's OpenAPI document (the copy shipped in the package).

Requests: a sample of each model, dumped as the client sends it, is valid under its
schema (openapi-schema-validator, OpenAPI 3.0 dialect). Answers: each model reads only
properties its schema has, requires none the schema leaves optional, and reads a
complete sample that is itself valid under the schema.
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

import pytest
from openapi_schema_validator import OAS30Validator
from pydantic import BaseModel, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from crmsync.billing.models import (
    STATE_CODES,
    Address,
    AliasedCustomer,
    AliasEntry,
    AliasRequest,
    BillingSchedule,
    Contact,
    ContactRequest,
    Customer,
    CustomerAlias,
    CustomerRequest,
    CustomerSummary,
    IntegrationId,
    IntegrationIdRequest,
    IntegrationService,
    Invoice,
    Pagination,
)
from crmsync.billing.spec import openapi_document

NOW = "2026-12-04T12:00:00Z"
ADDRESS = {"line1": "1 Main St", "town": "Boston", "state": "MA", "postcode": "02101"} | {
    "country": "US"
}
CONTACT = {
    "id": "k-1",
    "name": "Ada",
    "email": "ada@acme.example",
    "billingPreference": "PRIMARY",
    "createdAt": NOW,
    "updatedAt": NOW,
}
CUSTOMER = {
    "id": "c-1",
    "createdAt": NOW,
    "organizations": [],
    "legalName": "Acme Inc.",
    "address": ADDRESS,
    "integrationIds": [{"service": "HubSpot", "id": "123", "isPending": False}],
    "taxStatus": "TAXED",
    "contacts": [CONTACT],
    "status": "ACTIVE",
    "customProperties": {"tier": "gold"},
}
ALIAS = {
    "id": "a-1",
    "sequenceAccountId": "acct-1",
    "customerId": "c-1",
    "value": "hubspot:company:123",
    "createdAt": NOW,
}
SCHEDULE = {
    "id": "s-1",
    "customerId": "c-1",
    "status": "ACTIVE",
    "startDate": "2026-01-01",
    "autoIssueInvoices": False,
    "prices": [],
    "phases": [],
    "rollUpBilling": False,
    "integrationIds": [],
    "attachmentAssets": [],
    "customFields": {},
    "createdAt": NOW,
    "updatedAt": NOW,
    "archivedAt": NOW,
}
INVOICE = {
    "id": "i-1",
    "sequenceAccountId": "acct-1",
    "status": "DRAFT",
    "paymentStatus": "UNPAID",
    "currency": "EUR",
    "customerId": "c-1",
    "customerEmails": [],
    "customerLegalCompanyName": "Acme Inc.",
    "customerBillingAddress": ADDRESS,
    "customerShippingAddress": ADDRESS,
    "netTotal": "100.00",
    "totalTax": "20.00",
    "grossTotal": "120.00",
    "metadata": [],
    "creditNoteIds": [],
    "linkedServices": [],
    "renderSettings": {"paymentLinkDisplay": "SHOW_PAYMENT_LINK"},
    "isCustomerArchived": False,
    "accountingDate": "2026-01-31",
    "createdAt": NOW,
    "updatedAt": NOW,
    "billingScheduleId": "s-1",
}

#: Each request model, the schema it must satisfy, and a sample as the push builds it.
REQUESTS: list[tuple[BaseModel, str]] = [
    (
        CustomerRequest.model_validate(
            {
                "legalName": "Acme Inc.",
                "address": ADDRESS | {"line2": "Suite 5"},
                "contacts": [
                    {"name": "Ada", "email": "ada@acme.example", "billingPreference": "PRIMARY"},
                    {"name": "Bob", "email": "bob@acme.example", "billingPreference": "NONE"},
                ],
                "taxStatus": "REVERSE_CHARGED",
                "url": "https://acme.example",
                "label": "Acme",
                "customerAliases": ["hubspot:company:123"],
                "integrationIds": [{"service": "HubSpot", "id": "123"}],
                "customProperties": {"crm": "hubspot"},
                "status": "ACTIVE",
            }
        ),
        "CreateOrUpdateCustomerRequest",
    ),
    (
        ContactRequest(name="Ada", email="ada@acme.example", billing_preference="STANDARD"),
        "ContactRequestModel",
    ),
    (IntegrationIdRequest(service="Salesforce", id="001"), "GenerateIntegrationIdRequest1"),
    (
        AliasRequest(customer_id="c-1", value="hubspot:company:123", label="CRM ID"),
        "CreateCustomerAliasRequestModel",
    ),
    (Address.model_validate(ADDRESS), "Address"),
]

#: Each answer model, its schema, and a complete sample of that schema.
ANSWERS: list[tuple[type[BaseModel], str, dict[str, Any]]] = [
    (Customer, "Customer", CUSTOMER),
    (
        CustomerSummary,
        "ListCustomerResponseModel",
        {k: v for k, v in CUSTOMER.items() if k not in ("contacts", "status")},
    ),
    (
        AliasedCustomer,
        "Customer20240509",
        {k: CUSTOMER[k] for k in ("id", "createdAt", "legalName", "address", "taxStatus")}
        | {"integrationIds": [], "email": "ada@acme.example", "billingEmails": []},
    ),
    (Contact, "Contact", CONTACT),
    (IntegrationId, "IntegrationId1", {"service": "Xero", "id": "x", "isPending": True}),
    (CustomerAlias, "CustomerAliasResponseModel", ALIAS | {"label": "CRM ID"}),
    (AliasEntry, "CustomerAlias", ALIAS),
    (BillingSchedule, "BillingScheduleResponse", SCHEDULE),
    (Invoice, "Invoice", INVOICE),
    (Address, "Address", ADDRESS),
    (Pagination, "PaginationMeta5", {"after": "x", "before": "y", "totalResultSize": 3}),
]


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(openapi_document(), default_specification=DRAFT4)
    registry: Registry = Registry().with_resource("urn:sequence", resource)
    return registry


def _validator(schema: str) -> OAS30Validator:
    ref = {"$ref": f"urn:sequence#/components/schemas/{schema}"}
    return OAS30Validator(ref, registry=_registry())


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi_document()["components"]["schemas"][name]
    return schema


def _problems(schema: str, instance: object) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in _validator(schema).iter_errors(instance)
    ]


@pytest.mark.parametrize(("model", "schema"), REQUESTS, ids=[s for _, s in REQUESTS])
def test_a_request_model_dumps_to_json_its_schema_accepts(model: BaseModel, schema: str) -> None:
    assert _problems(schema, model.model_dump(mode="json", by_alias=True, exclude_none=True)) == []


@pytest.mark.parametrize(
    ("model", "schema", "sample"), ANSWERS, ids=[f"{m.__name__}-{s}" for m, s, _ in ANSWERS]
)
def test_an_answer_model_reads_a_valid_answer_and_only_what_the_schema_has(
    model: type[BaseModel], schema: str, sample: dict[str, Any]
) -> None:
    assert _problems(schema, sample) == []
    definition = _schema(schema)
    properties, required = set(definition["properties"]), set(definition.get("required", ()))
    fields = {f.alias or name: f for name, f in model.model_fields.items()}

    assert set(fields) <= properties
    assert {alias for alias, f in fields.items() if f.is_required()} <= required
    model.model_validate(sample)


def test_the_state_codes_are_the_documents_and_required_for_us_and_canada() -> None:
    assert set(_schema("State1")["enum"]) == STATE_CODES
    assert "state" not in _schema("Address")["required"]
    assert "required for USA and Canada" in _schema("Address")["properties"]["state"]["description"]


def test_the_integration_services_are_the_documents() -> None:
    assert set(_schema("IntegrationService")["enum"]) == set(get_args(IntegrationService))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"address": ADDRESS | {"state": None}}, "needs a state"),
        ({"address": ADDRESS | {"country": "DE", "state": "BY"}}, "US state or Canadian"),
        ({"address": ADDRESS | {"country": "Germany"}}, "alpha-2"),
        (
            {"contacts": [{"name": "A", "email": "a@x.example", "billingPreference": "STANDARD"}]},
            "PRIMARY",
        ),
        ({"contacts": []}, "at least 1"),
    ],
)
def test_a_customer_request_the_api_would_refuse_cannot_be_built(
    change: dict[str, Any], problem: str
) -> None:
    body = {
        "legalName": "Acme",
        "address": ADDRESS,
        "contacts": [{"name": "A", "email": "a@x.example", "billingPreference": "PRIMARY"}],
        "taxStatus": "TAXED",
    } | change
    with pytest.raises(ValidationError, match=problem):
        CustomerRequest.model_validate(body)


def test_a_customer_request_leaves_out_what_was_not_set_so_put_keeps_custom_properties() -> None:
    body = REQUESTS[0][0].model_copy(update={"custom_properties": None})

    assert "customProperties" not in body.model_dump(mode="json", by_alias=True, exclude_none=True)
