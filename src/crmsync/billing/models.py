"""pydantic models of the Sequence requests and answers the push uses.

Checked against Sequence's OpenAPI document (``openapi.json`` beside this module,
API version ``2024-07-30``) by ``tests/unit/billing/test_models_schema.py``: every
request model dumps to JSON valid under its schema, and every answer model reads only
properties the schema has, requiring none the schema leaves optional.

Field names are snake_case in Python and camelCase on the wire (``by_alias``). Request
models forbid unknown fields; answer models ignore fields they do not use, so a new
field in an answer never breaks a push.

Schema names: :class:`CustomerRequest` is ``CreateOrUpdateCustomerRequest``;
:class:`Customer` is ``Customer`` (``GET/PUT /customers/{id}``, ``POST /customers``);
:class:`CustomerSummary` is ``ListCustomerResponseModel`` (``GET /customers``: no
contacts); :class:`AliasedCustomer` is ``Customer20240509`` (``GET
/customers/by-alias/{alias}`` answers in this older shape, without contacts, even under
version 2024-07-30); :class:`CustomerAlias` is ``CustomerAliasResponseModel`` and
:class:`AliasEntry` the shorter ``CustomerAlias`` of ``GET /customers/{id}/aliases``;
:class:`BillingSchedule` is ``BillingScheduleResponse``;
:class:`Invoice` is ``Invoice``; :class:`Page` is the ``{items, pagination}`` envelope of
the list endpoints.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "STATE_CODES",
    "STATE_REQUIRED_COUNTRIES",
    "Address",
    "AliasEntry",
    "AliasRequest",
    "AliasedCustomer",
    "BillingPreference",
    "BillingSchedule",
    "BillingScheduleStatus",
    "Contact",
    "ContactRequest",
    "Customer",
    "CustomerAlias",
    "CustomerRequest",
    "CustomerStatus",
    "CustomerSummary",
    "IntegrationId",
    "IntegrationIdRequest",
    "IntegrationService",
    "Invoice",
    "InvoicePaymentStatus",
    "InvoiceStatus",
    "Page",
    "Pagination",
    "TaxStatus",
]

TaxStatus = Literal["TAXED", "TAX_EXEMPT", "REVERSE_CHARGED"]
BillingPreference = Literal["PRIMARY", "STANDARD", "NONE"]
CustomerStatus = Literal["DRAFT", "ACTIVE"]
IntegrationService = Literal[
    "Amazon_Redshift", "GoCardless", "Google_BigQuery", "Google_Sheets", "HubSpot", "NetSuite",
    "QuickBooks_Online", "Salesforce", "Slack", "Snowflake", "Stripe", "Xero", "Avalara",
    "Anrok", "Attio", "Numeral", "Rillet", "Sphere",
]  # fmt: skip
BillingScheduleStatus = Literal["DRAFT", "PENDING", "ACTIVE", "SUSPENDED", "CANCELLED", "COMPLETED"]
InvoiceStatus = Literal["IN_PROGRESS", "DRAFT", "FINAL", "SENT", "VOIDED"]
InvoicePaymentStatus = Literal["UNPAID", "PARTIALLY_PAID", "PAID", "UNCOLLECTIBLE"]

#: The only ``state`` values the API accepts (schema ``State1``): US states and DC, then
#: Canadian provinces and territories. No other country's regions can be sent.
STATE_CODES: frozenset[str] = frozenset((
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "HI", "ID", "IL", "IN",
    "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH",
    "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT",
    "VT", "VA", "WA", "WV", "WI", "WY",
    "AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT",
))  # fmt: skip
#: Countries whose addresses must carry a ``state`` ("required for USA and Canada").
STATE_REQUIRED_COUNTRIES: frozenset[str] = frozenset({"US", "CA"})


class _Request(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def to_json(self) -> dict[str, Any]:
        """The body as the API takes it: camelCase, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Answer(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class Address(_Answer):
    """A postal address (schema ``Address``); ``country`` is ISO 3166-1 alpha-2."""

    line1: str
    line2: str | None = None
    town: str
    state: str | None = None
    postcode: str
    country: str

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ContactRequest(_Request):
    name: str
    email: str
    billing_preference: BillingPreference


class IntegrationIdRequest(_Request):
    service: IntegrationService
    id: str


class CustomerRequest(_Request):
    """The body of ``POST /customers`` and ``PUT /customers/{id}``.

    ``PUT`` replaces every contact, and every custom property when
    ``custom_properties`` is given (left out: unchanged). The API needs at least one
    ``PRIMARY`` contact, and a ``state`` from :data:`STATE_CODES` for US and Canadian
    addresses; both are checked here so a bad request is never sent.
    """

    legal_name: str = Field(min_length=1)
    address: Address
    contacts: list[ContactRequest] = Field(min_length=1)
    tax_status: TaxStatus
    url: str | None = None
    label: str | None = None
    customer_aliases: list[str] | None = None
    integration_ids: list[IntegrationIdRequest] | None = None
    parent_id: str | None = None
    custom_properties: dict[str, str] | None = None
    status: CustomerStatus | None = None

    @model_validator(mode="after")
    def _as_the_api_requires(self) -> Self:
        if not any(c.billing_preference == "PRIMARY" for c in self.contacts):
            raise ValueError("needs at least one contact with billing preference PRIMARY")
        address = self.address
        if len(address.country) != 2 or not address.country.isupper():
            raise ValueError("address country must be an ISO 3166-1 alpha-2 code, e.g. 'DE'")
        if address.state is not None and address.state not in STATE_CODES:
            raise ValueError(
                "address state must be a US state or Canadian province code; the API"
                " accepts no other"
            )
        if address.state is None and address.country in STATE_REQUIRED_COUNTRIES:
            raise ValueError(f"an address in {address.country} needs a state")
        return self


class AliasRequest(_Request):
    """The body of ``POST /customer-aliases``."""

    customer_id: str
    value: str = Field(min_length=1)
    label: str | None = None


class Contact(_Answer):
    id: str
    name: str
    email: str
    billing_preference: BillingPreference
    created_at: str
    updated_at: str
    archived_at: str | None = None


class IntegrationId(_Answer):
    service: str
    id: str
    is_pending: bool
    last_synced: str | None = None


class CustomerSummary(_Answer):
    """A customer as ``GET /customers`` lists it (no contacts, no status)."""

    id: str
    created_at: str
    legal_name: str
    address: Address
    tax_status: TaxStatus
    integration_ids: list[IntegrationId]
    custom_properties: dict[str, str]
    url: str | None = None
    label: str | None = None
    archived_at: str | None = None


class Customer(CustomerSummary):
    """A customer with its contacts (``GET``/``PUT /customers/{id}``, create, archive)."""

    contacts: list[Contact]
    status: CustomerStatus


class AliasedCustomer(_Answer):
    """A customer as ``GET /customers/by-alias/{alias}`` answers (schema ``Customer20240509``).

    It has no contacts: read the customer by ``id`` before a read-merge-write update.
    """

    id: str
    created_at: str
    legal_name: str
    address: Address
    tax_status: TaxStatus
    integration_ids: list[IntegrationId]
    archived_at: str | None = None


class AliasEntry(_Answer):
    """An alias as ``GET /customers/{id}/aliases`` lists it (schema ``CustomerAlias``)."""

    id: str
    customer_id: str
    value: str
    created_at: str


class CustomerAlias(AliasEntry):
    """An alias as it is created or listed account-wide (``CustomerAliasResponseModel``)."""

    label: str | None = None
    archived_at: str | None = None


class BillingSchedule(_Answer):
    id: str
    customer_id: str
    status: BillingScheduleStatus
    start_date: str
    created_at: str
    updated_at: str
    end_date: str | None = None
    label: str | None = None
    archived_at: str | None = None


class Invoice(_Answer):
    id: str
    customer_id: str
    status: InvoiceStatus
    payment_status: InvoicePaymentStatus
    currency: str
    net_total: str
    gross_total: str
    total_tax: str
    created_at: str
    updated_at: str
    invoice_number: str | None = None
    billing_schedule_id: str | None = None
    issue_date: str | None = None
    due_date: str | None = None


class Pagination(_Answer):
    """Cursors of a list page: ``after`` is absent on the last page."""

    after: str | None = None
    before: str | None = None
    total_result_size: int | None = None


T = TypeVar("T", bound=BaseModel)


class Page(_Answer, Generic[T]):
    items: list[T]
    pagination: Pagination = Field(default_factory=Pagination)
