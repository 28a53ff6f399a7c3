"""The ``pipedrive`` connector's config section, validated when crm-sync starts.

A minimal section with a personal API token::

    connectors:
      pipedrive:
        type: pipedrive
        api_token: ${PIPEDRIVE_API_TOKEN}

or with OAuth (an app installed in the company account)::

        oauth:
          client_id: ${PIPEDRIVE_CLIENT_ID}
          client_secret: ${PIPEDRIVE_CLIENT_SECRET}
          refresh_token: ${PIPEDRIVE_REFRESH_TOKEN}

Custom fields are named as people see them in Pipedrive (``Tax status``), never by
their 40-character hash keys: the connector looks the keys up through the fields
endpoints. Every other key has a default (see each field's ``description``). The HTTP
keys (``timeout_seconds``, ``max_attempts``, ``requests_per_window`` ...) are those of
:class:`crmsync.sdk.http.HttpConfig`, at the top level of the section.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from crmsync.domain.values import TaxStatus
from crmsync.sdk.connector import ConnectorConfig
from crmsync.sdk.http import BaseUrl, HttpConfig
from crmsync_pipedrive.settings import DEFAULT_BASE_URL, DEFAULT_TOKEN_URL, LIST_MAX_LIMIT

__all__ = [
    "BillingContactSettings",
    "ContactSettings",
    "FieldName",
    "OAuthSettings",
    "OrganizationSettings",
    "PipedriveConfig",
    "WebhookSettings",
]

FieldName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
"""A field's name as Pipedrive shows it (``Tax status``); matched without regard to case."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrganizationSettings(_Strict):
    """Which organization custom fields hold the tax status and the aliases."""

    tax_status_field: FieldName | None = Field(
        default=None, description="custom field holding the tax status; null: not read"
    )
    tax_status_values: dict[str, TaxStatus] = Field(
        default_factory=dict,
        description="tax status field value (or option label) -> TAXED, TAX_EXEMPT or "
        "REVERSE_CHARGED, compared without regard to case; the three names are always understood",
    )
    alias_fields: tuple[FieldName, ...] = Field(
        default=(),
        description="custom fields holding the organization's aliases; a value with semicolons "
        "holds several",
    )
    street_number_first: bool = Field(
        default=False,
        description="address line 1 is 'street_number route' (12 Main St) instead of "
        "'route street_number' (Hauptstraße 12)",
    )

    @field_validator("tax_status_values")
    @classmethod
    def _fold_keys(cls, values: dict[str, TaxStatus]) -> dict[str, TaxStatus]:
        return {key.strip().casefold(): status for key, status in values.items()}


class ContactSettings(_Strict):
    """How persons become contacts."""

    emails: Literal["primary", "each"] = Field(
        default="primary",
        description="primary: one contact per person with its primary email (else its first); "
        "each: one contact per email address (the primary keeps the person's id, the others "
        "are '<id>~<n>')",
    )


class BillingContactSettings(_Strict):
    """How Pipedrive marks an organization's billing contact (one of the two, or neither)."""

    person_label: FieldName | None = Field(
        default="Billing contact",
        description="a person label (compared without regard to case) marking the billing "
        "contact of the person's organization; null: no label is read",
    )
    custom_field: FieldName | None = Field(
        default=None,
        description="instead of a label: a person custom field whose true value (or chosen "
        "option) marks the billing contact (replaces person_label)",
    )
    true_values: frozenset[str] = Field(
        default=frozenset({"true", "yes", "1", "billing contact"}),
        min_length=1,
        description="values (or option labels) of custom_field meaning true (any case)",
    )

    @field_validator("true_values")
    @classmethod
    def _fold_case(cls, values: frozenset[str]) -> frozenset[str]:
        return frozenset(value.strip().casefold() for value in values)

    @property
    def label(self) -> str | None:
        """The person label in use (none when a custom field replaces it)."""
        return None if self.custom_field is not None else self.person_label


class OAuthSettings(_Strict):
    """An OAuth app's credentials; access tokens are obtained with the refresh token."""

    client_id: str = Field(min_length=1, description="the app's client id")
    client_secret: SecretStr = Field(description="the app's client secret")
    refresh_token: SecretStr = Field(description="the refresh token of the app's installation")
    token_url: BaseUrl = Field(default=DEFAULT_TOKEN_URL, description="the token endpoint")


class WebhookSettings(_Strict):
    """The Basic-auth credentials set on the webhook (``http_auth_user``/``_password``)."""

    username: str = Field(min_length=1, max_length=255, description="the webhook's user name")
    password: SecretStr = Field(description="the webhook's password")


class PipedriveConfig(ConnectorConfig, HttpConfig):
    """Reads organizations and persons from Pipedrive's API v2 (one company account)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["pipedrive"] = Field(description="always pipedrive")
    base_url: BaseUrl = Field(
        default=DEFAULT_BASE_URL,
        description="Pipedrive's API root; with OAuth, the api_domain of the token answer is used",
    )
    api_token: SecretStr | None = Field(
        default=None, description="a personal API token, sent as x-api-token (or set oauth)"
    )
    oauth: OAuthSettings | None = Field(
        default=None, description="OAuth credentials of an installed app (or set api_token)"
    )
    page_size: int = Field(
        default=LIST_MAX_LIMIT,
        ge=1,
        le=LIST_MAX_LIMIT,
        description="records per page (one Pipedrive answer, at most 500)",
    )
    requests_per_window: int | None = Field(
        default=20,
        ge=1,
        description="requests per window_seconds until Pipedrive states its own budget "
        "(x-ratelimit-limit); none: no budget until it does",
    )
    max_requests_per_window: int | None = Field(
        default=None,
        ge=1,
        description="never more than this many requests per window, whatever Pipedrive states",
    )
    window_seconds: float = Field(default=2.0, gt=0, description="Pipedrive's burst window")
    organizations: OrganizationSettings = Field(
        default_factory=OrganizationSettings, description="organization custom fields"
    )
    contacts: ContactSettings = Field(
        default_factory=ContactSettings, description="how persons become contacts"
    )
    billing_contact: BillingContactSettings = Field(
        default_factory=BillingContactSettings, description="how the billing contact is marked"
    )
    write_back_fields: dict[str, FieldName] = Field(
        default_factory=dict,
        description="crm-sync value (billing_customer_id) -> the organization custom field "
        "it is written to",
    )
    webhook: WebhookSettings | None = Field(
        default=None, description="Basic-auth credentials of the webhook; null: webhooks refused"
    )

    @model_validator(mode="after")
    def _one_auth_method(self) -> Self:
        if (self.api_token is None) == (self.oauth is None):
            raise ValueError("set exactly one of api_token and oauth")
        return self
