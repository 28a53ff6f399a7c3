"""The ``salesforce`` connector's config section, validated when crm-sync starts.

A minimal section with the JWT bearer flow::

    connectors:
      salesforce:
        type: salesforce
        login_url: https://login.salesforce.com   # sandbox: https://test.salesforce.com
        auth:
          flow: jwt_bearer
          client_id: ${SALESFORCE_CLIENT_ID}
          username: integration@example.com
          private_key_file: salesforce.key        # or private_key: ${SALESFORCE_PRIVATE_KEY}

``flow: client_credentials`` takes ``client_id`` and ``client_secret``;
``flow: refresh_token`` takes ``client_id``, ``refresh_token`` and, for apps that have
one, ``client_secret``. Every other key has a default (see each field's
``description``). The HTTP keys (``timeout_seconds``, ``max_attempts``,
``requests_per_window`` ...) are those of :class:`crmsync.sdk.http.HttpConfig`, at the
top level of the section; API calls go to the token answer's ``instance_url``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

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
from crmsync_salesforce.settings import QUERY_MAX_BATCH, QUERY_MIN_BATCH

__all__ = [
    "AccountFields",
    "AuthSettings",
    "BillingContactSettings",
    "ClientCredentialsAuth",
    "ContactFields",
    "FieldName",
    "JwtBearerAuth",
    "RefreshTokenAuth",
    "SalesforceConfig",
    "WebhookSettings",
]

_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ORG_ID = re.compile(r"^00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")


def _check_field_name(value: str) -> str:
    if not _FIELD_NAME.match(value):
        raise ValueError(
            f"{value!r} is not a Salesforce field's API name "
            "(letters, digits and underscores, such as Billing_Customer_Id__c)"
        )
    return value


FieldName = Annotated[
    str, StringConstraints(strip_whitespace=True), AfterValidator(_check_field_name)
]
"""A field's API name (``BillingCity``, ``Tax_Status__c``), not its label."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _field(default: str | None, what: str) -> Any:
    return Field(
        default=default, description=f"API name of the field holding {what}; null: not read"
    )


class AccountFields(_Strict):
    """Which Account field holds each customer field; unset keys keep the defaults."""

    name: FieldName | None = _field("Name", "the company name")
    street: FieldName | None = _field(
        "BillingStreet", "the street (its first line is line 1, the other lines line 2)"
    )
    city: FieldName | None = _field("BillingCity", "the city")
    state: FieldName | None = _field("BillingState", "the state as text")
    postal_code: FieldName | None = _field("BillingPostalCode", "the postal code")
    country: FieldName | None = _field("BillingCountry", "the country as text")
    state_code: FieldName | None = _field(
        "BillingStateCode", "the state code (read only with state_country_picklists)"
    )
    country_code: FieldName | None = _field(
        "BillingCountryCode", "the ISO country code (read only with state_country_picklists)"
    )
    tax_status: FieldName | None = _field(
        None, "the tax status (values read through tax_status_values)"
    )
    tax_status_values: dict[str, TaxStatus] = Field(
        default_factory=dict,
        description="tax status field value -> TAXED, TAX_EXEMPT or REVERSE_CHARGED, "
        "compared without regard to case; the three names themselves are always understood",
    )
    aliases: tuple[FieldName, ...] = Field(
        default=(),
        description="fields holding the account's aliases (for example Product_Account_Id__c);"
        " a value with semicolons holds several",
    )

    @field_validator("tax_status_values")
    @classmethod
    def _fold_keys(cls, values: dict[str, TaxStatus]) -> dict[str, TaxStatus]:
        return {key.strip().casefold(): status for key, status in values.items()}

    def names(self, *, picklists: bool) -> list[str]:
        """Every field this mapping reads."""
        single = [self.name, self.street, self.city, self.state, self.postal_code, self.country]
        if picklists:
            single += [self.state_code, self.country_code]
        single.append(self.tax_status)
        return [name for name in (*single, *self.aliases) if name is not None]


class ContactFields(_Strict):
    """Which Contact field holds each contact field; unset keys keep the defaults."""

    first_name: FieldName | None = _field("FirstName", "the first name")
    last_name: FieldName | None = _field("LastName", "the last name")
    email: FieldName | None = _field("Email", "the email address")

    def names(self) -> list[str]:
        """Every field this mapping reads."""
        return [n for n in (self.first_name, self.last_name, self.email) if n is not None]


class BillingContactSettings(_Strict):
    """How Salesforce designates an account's billing contact (any of these counts)."""

    role: str | None = Field(
        default="Billing Contact",
        min_length=1,
        description="the role naming the billing contact, in AccountContactRelation.Roles "
        "(a multi-select picklist) or as a primary AccountContactRole; compared without "
        "regard to case; null: roles are not read",
    )
    account_contact_relations: bool = Field(
        default=True,
        description="read AccountContactRelation (Contacts to Multiple Accounts), so a contact "
        "related to several accounts belongs to each; false for orgs without the feature",
    )
    account_contact_roles: bool = Field(
        default=True,
        description="also read AccountContactRole: a primary role equal to role designates",
    )
    contact_checkbox: FieldName | None = Field(
        default=None,
        description="a checkbox field on Contact (for example Billing_Contact__c) whose true "
        "value makes the contact the billing contact of all its accounts",
    )


class JwtBearerAuth(_Strict):
    """OAuth 2.0 JWT bearer flow: a connected app with a certificate, a pre-authorised user."""

    flow: Literal["jwt_bearer"]
    client_id: str = Field(min_length=1, description="the connected app's consumer key")
    username: str = Field(min_length=1, description="the Salesforce user the sync runs as")
    private_key: SecretStr | None = Field(
        default=None, description="the RS256 private key in PEM (from ${ENV}); or private_key_file"
    )
    private_key_file: Path | None = Field(
        default=None, description="a PEM file holding the private key (relative to the config)"
    )
    audience: BaseUrl | None = Field(
        default=None,
        description="the JWT's aud claim; default: login_url (Salesforce expects "
        "https://login.salesforce.com or https://test.salesforce.com)",
    )

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if (self.private_key is None) == (self.private_key_file is None):
            raise ValueError("set exactly one of private_key and private_key_file")
        return self


class ClientCredentialsAuth(_Strict):
    """OAuth 2.0 client credentials flow (the app runs as its configured user)."""

    flow: Literal["client_credentials"]
    client_id: str = Field(min_length=1, description="the connected app's consumer key")
    client_secret: SecretStr = Field(description="the connected app's consumer secret")


class RefreshTokenAuth(_Strict):
    """OAuth 2.0 refresh token flow (a token obtained once through the web server flow)."""

    flow: Literal["refresh_token"]
    client_id: str = Field(min_length=1, description="the connected app's consumer key")
    client_secret: SecretStr | None = Field(
        default=None, description="the consumer secret, when the app requires it"
    )
    refresh_token: SecretStr = Field(description="the refresh token")


AuthSettings = Annotated[
    JwtBearerAuth | ClientCredentialsAuth | RefreshTokenAuth, Field(discriminator="flow")
]


class WebhookSettings(_Strict):
    """Outbound Messages: which org may send them and the secret they must carry."""

    organization_id: str | None = Field(
        default=None,
        description="the org's id (00D..., 15 or 18 characters); messages from another org "
        "are refused; required to accept Outbound Messages",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="the shared secret: the Basic auth password in the endpoint URL "
        "(https://crm-sync:SECRET@host/...) or the URL's last path segment",
    )

    @field_validator("organization_id")
    @classmethod
    def _org_id(cls, value: str | None) -> str | None:
        if value is not None and not _ORG_ID.match(value.strip()):
            raise ValueError(
                "not a Salesforce organization id (00D followed by 12 or 15 characters)"
            )
        return None if value is None else value.strip()


class SalesforceConfig(ConnectorConfig, HttpConfig):
    """Reads Accounts and Contacts from one Salesforce org over the REST API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["salesforce"] = Field(description="always salesforce")
    login_url: BaseUrl = Field(
        default="https://login.salesforce.com",
        description="where tokens are requested: https://login.salesforce.com (production), "
        "https://test.salesforce.com (sandboxes) or the org's My Domain URL",
    )
    base_url: BaseUrl = Field(
        default="https://login.salesforce.com",
        description="follows login_url (set that one): API calls go to the token answer's "
        "instance_url",
    )
    api_version: str = Field(
        default="62.0", pattern=r"^\d{2,3}\.0$", description="the REST API version, such as 62.0"
    )
    auth: AuthSettings = Field(description="how crm-sync obtains access tokens")
    page_size: int = Field(
        default=2_000,
        ge=1,
        le=10_000,
        description="records per page committed with its cursor; also the query batch size "
        "asked of Salesforce (200 to 2,000)",
    )
    lag_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3_600,
        description="incremental passes read changes up to this long before the run started "
        "(transactions still in flight commit with an earlier SystemModstamp)",
    )
    state_country_picklists: bool = Field(
        default=False,
        description="the org has state and country picklists: prefer BillingStateCode and "
        "BillingCountryCode over the text fields",
    )
    daily_reserve: int = Field(
        default=1_000,
        ge=0,
        description="stop the run (exit 75, cursor saved) when fewer API requests than this "
        "are left of the org's daily budget, so other integrations keep working",
    )
    accounts: AccountFields = Field(
        default_factory=AccountFields, description="customer field -> Account field"
    )
    contacts: ContactFields = Field(
        default_factory=ContactFields, description="contact field -> Contact field"
    )
    billing_contact: BillingContactSettings = Field(
        default_factory=BillingContactSettings, description="how the billing contact is designated"
    )
    write_back: dict[Literal["billing_customer_id"], FieldName] = Field(
        default_factory=dict,
        description="value -> Account field written back after a push, for example "
        "billing_customer_id: Billing_Customer_Id__c",
    )
    webhooks: WebhookSettings = Field(
        default_factory=WebhookSettings, description="Outbound Message settings"
    )

    @model_validator(mode="before")
    @classmethod
    def _base_url_is_login_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "login_url" in data:
            return {**data, "base_url": data["login_url"]}
        return data

    @property
    def query_batch_size(self) -> int:
        """The batch size asked of query answers (Salesforce takes 200 to 2,000)."""
        return max(QUERY_MIN_BATCH, min(QUERY_MAX_BATCH, self.page_size))
