"""The ``hubspot`` connector's config section, validated when crm-sync starts.

A minimal section with a private-app token::

    connectors:
      hubspot:
        type: hubspot
        access_token: ${HUBSPOT_TOKEN}

or with OAuth (a public app installed in the account)::

        oauth:
          client_id: ${HUBSPOT_CLIENT_ID}
          client_secret: ${HUBSPOT_CLIENT_SECRET}
          refresh_token: ${HUBSPOT_REFRESH_TOKEN}

Every other key has a default (see each field's ``description``). The HTTP keys
(``timeout_seconds``, ``max_attempts``, ``requests_per_window`` ...) are those of
:class:`crmsync.sdk.http.HttpConfig`, at the top level of the section.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
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
from crmsync_hubspot.settings import OAUTH_PATH

__all__ = [
    "BillingContactSettings",
    "CompanyProperties",
    "ContactProperties",
    "HubSpotConfig",
    "OAuthSettings",
    "PropertyName",
    "WriteBackSettings",
]

_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _check_property_name(value: str) -> str:
    if not _PROPERTY_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a HubSpot property's internal name "
            "(letters, digits, underscores; no spaces or commas)"
        )
    return value


PropertyName = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_check_property_name)
]
"""A property's internal name (``name``, ``hs_lastmodifieddate``), not its label."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _property(default: str | None, what: str) -> str | None:
    return Field(
        default=default,
        description=f"internal name of the property holding {what}; null: not read",
    )


class CompanyProperties(_Strict):
    """Which company property holds each customer field; unset keys keep the defaults."""

    name: PropertyName | None = _property("name", "the company name")
    line1: PropertyName | None = _property("address", "the first address line")
    line2: PropertyName | None = _property("address2", "the second address line")
    city: PropertyName | None = _property("city", "the city")
    state: PropertyName | None = _property("state", "the state or region")
    postal_code: PropertyName | None = _property("zip", "the postal code")
    country: PropertyName | None = _property("country", "the country (ISO code or name)")
    tax_status: PropertyName | None = _property(
        None, "the tax status (values read through tax_status_values)"
    )
    tax_status_values: dict[str, TaxStatus] = Field(
        default_factory=dict,
        description="tax status property value -> TAXED, TAX_EXEMPT or REVERSE_CHARGED, "
        "compared without regard to case; the three names themselves are always understood",
    )
    aliases: tuple[PropertyName, ...] = Field(
        default=(),
        description="properties holding the company's aliases (for example product_account_id);"
        " a value with semicolons holds several",
    )

    @field_validator("tax_status_values")
    @classmethod
    def _fold_keys(cls, values: dict[str, TaxStatus]) -> dict[str, TaxStatus]:
        return {key.strip().casefold(): status for key, status in values.items()}

    def names(self) -> list[str]:
        """Every property this mapping reads."""
        single = [self.name, self.line1, self.line2, self.city, self.state]
        single += [self.postal_code, self.country, self.tax_status]
        return [name for name in (*single, *self.aliases) if name is not None]


class ContactProperties(_Strict):
    """Which contact property holds each contact field; unset keys keep the defaults."""

    full_name: PropertyName | None = _property(
        None, "the full name (used when set and not empty, else first and last name)"
    )
    first_name: PropertyName | None = _property("firstname", "the first name")
    last_name: PropertyName | None = _property("lastname", "the last name")
    email: PropertyName | None = _property("email", "the email address")

    def names(self) -> list[str]:
        """Every property this mapping reads."""
        fields = (self.full_name, self.first_name, self.last_name, self.email)
        return [name for name in fields if name is not None]


class BillingContactSettings(_Strict):
    """How HubSpot marks a company's billing contact."""

    association_label: str | None = Field(
        default="Billing contact",
        min_length=1,
        description="the contact-to-company association label naming the billing contact "
        "(compared without regard to case); null: no label is read",
    )
    contact_property: PropertyName | None = Field(
        default=None,
        description="instead of a label: a contact property whose true value makes the "
        "contact the billing contact of all its companies (replaces association_label)",
    )
    true_values: frozenset[str] = Field(
        default=frozenset({"true", "yes", "1"}),
        min_length=1,
        description="values of contact_property meaning true, compared without regard to case",
    )

    @field_validator("true_values")
    @classmethod
    def _fold_case(cls, values: frozenset[str]) -> frozenset[str]:
        return frozenset(value.strip().casefold() for value in values)

    @property
    def label(self) -> str | None:
        """The association label in use (none when a contact property replaces it)."""
        return None if self.contact_property is not None else self.association_label


class OAuthSettings(_Strict):
    """A public app's OAuth credentials; access tokens are refreshed with the refresh token."""

    client_id: str = Field(min_length=1, description="the app's client id")
    client_secret: SecretStr = Field(description="the app's client secret")
    refresh_token: SecretStr = Field(description="the refresh token of the app's install")
    token_url: BaseUrl | None = Field(
        default=None,
        description="the token endpoint; default: /oauth/v1/token under base_url",
    )


class WriteBackSettings(_Strict):
    """Which company property receives each value crm-sync writes back after a push."""

    billing_customer_id: PropertyName = Field(
        default="crm_sync_billing_customer_id",
        description="the company property receiving the billing customer id (a single-line "
        "text property; created when the account lacks it, which needs the "
        "crm.schemas.companies.write scope)",
    )


class HubSpotConfig(ConnectorConfig, HttpConfig):
    """Reads companies and contacts from HubSpot's CRM API (one account)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["hubspot"] = Field(description="always hubspot")
    base_url: BaseUrl = Field(
        default="https://api.hubapi.com", description="HubSpot's API root (https)"
    )
    requests_per_window: int | None = Field(
        default=100,
        ge=1,
        description="requests per window_seconds until HubSpot states the account's budget "
        "(X-HubSpot-RateLimit-Max on its first answer: 100 per 10 s for Free/Starter private "
        "apps, 190 for Pro/Enterprise, 110 for OAuth apps), which then replaces it; none: no "
        "budget until HubSpot states one",
    )
    max_requests_per_window: int | None = Field(
        default=None,
        ge=1,
        description="never more than this many requests per window, whatever HubSpot states "
        "(leave room for other integrations sharing the account's budget); none: no ceiling",
    )
    page_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="records per page committed with its cursor; HubSpot answers at most 100 "
        "list or 200 search records, so a page gathers several answers",
    )
    access_token: SecretStr | None = Field(
        default=None, description="a private app's access token (or set oauth instead)"
    )
    oauth: OAuthSettings | None = Field(
        default=None, description="OAuth credentials of a public app (or set access_token)"
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="the app's client secret, which signs webhook requests; default: "
        "oauth.client_secret (a private app's client secret must be set here)",
    )
    search_lag_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3_600,
        description="incremental passes read changes up to this long before the run started "
        "(HubSpot's search index lags writes by seconds)",
    )
    search_requests_per_second: int = Field(
        default=5, ge=1, le=5, description="search requests per second (HubSpot allows 5)"
    )
    associations: Literal["inline", "batch"] = Field(
        default="inline",
        description="how full passes read contacts' companies: inline (in the list responses; "
        "labels recognised by their v3 name, the label in snake case; no extra request) or "
        "batch (one v4 batch read per page; labels by name)",
    )
    archived_on_incremental: bool = Field(
        default=True,
        description="incremental passes also page through the archived (deleted) records; "
        "false: deletions are seen by full passes and webhooks only",
    )
    companies: CompanyProperties = Field(
        default_factory=CompanyProperties, description="company field -> property"
    )
    contacts: ContactProperties = Field(
        default_factory=ContactProperties, description="contact field -> property"
    )
    billing_contact: BillingContactSettings = Field(
        default_factory=BillingContactSettings, description="how the billing contact is marked"
    )
    write_back: WriteBackSettings = Field(
        default_factory=WriteBackSettings,
        description="value -> the company property it is written to after a push",
    )

    @model_validator(mode="after")
    def _one_auth_method(self) -> Self:
        if (self.access_token is None) == (self.oauth is None):
            raise ValueError(
                "set exactly one of access_token (a private app) and oauth (a public app)"
            )
        return self

    @property
    def signing_secret(self) -> SecretStr | None:
        """The secret webhook signatures are checked with (``None``: webhooks refused)."""
        if self.webhook_secret is not None:
            return self.webhook_secret
        return self.oauth.client_secret if self.oauth is not None else None

    @property
    def token_url(self) -> str:
        """Where OAuth refresh-token grants are posted."""
        if self.oauth is not None and self.oauth.token_url is not None:
            return self.oauth.token_url
        return self.base_url.rstrip("/") + OAUTH_PATH
