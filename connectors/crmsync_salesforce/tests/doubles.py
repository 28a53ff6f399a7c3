"""Test doubles: configs, connectors and an org serving a contract Dataset.

The org is the fake of ``tests/fakes/salesforce.py`` answering in-process through
``httpx.MockTransport`` (no server): the same SOQL, paging, sessions and limits the
end-to-end tests and the benchmark use over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from tests.fakes.salesforce import FakeSalesforce, OAuthApp, SalesforceData, sf_time

from crmsync.sdk.connector import ConnectorContext
from crmsync.sdk.records import CompanyRecord, ContactRecord, ObjectType
from crmsync.sdk.testing import BadKind, BadSample, Dataset, FakeTime
from crmsync_salesforce.config import SalesforceConfig
from crmsync_salesforce.connector import SalesforceConnector

LOGIN = "https://login.salesforce.com"
INSTANCE = "https://acme.my.salesforce.com"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
APP = OAuthApp()
ROLE = "Billing Contact"
CUSTOM_FIELDS = ("Tax_Status__c", "Account_Ids__c", "Billing_Customer_Id__c")
_LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


@cache
def key_pair() -> tuple[str, str]:
    """An RSA key pair (private PEM, public PEM) for JWT bearer tests, made once."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def client_credentials() -> dict[str, str]:
    return {
        "flow": "client_credentials",
        "client_id": APP.client_id,
        "client_secret": APP.client_secret,
    }


def make_config(**overrides: Any) -> SalesforceConfig:
    """A config for the doubles: client credentials, the contract's custom fields, no lag."""
    settings: dict[str, Any] = {
        "type": "salesforce",
        "login_url": LOGIN,
        "auth": client_credentials(),
        "accounts": {"tax_status": "Tax_Status__c", "aliases": ["Account_Ids__c"]},
        "lag_seconds": 0,
        "page_size": 200,
        "daily_reserve": 0,
    }
    settings.update(overrides)
    return SalesforceConfig.model_validate(settings)


def make_fake(data: SalesforceData | None = None, **options: Any) -> FakeSalesforce:
    """A fake org answering in-process, its instance at :data:`INSTANCE`."""
    oauth = OAuthApp(public_key=key_pair()[1])
    data = data or SalesforceData()
    for name in CUSTOM_FIELDS:
        data.define_field("Account", name)
    return FakeSalesforce(data, oauth=oauth, url=INSTANCE, **options)


def make_connector(
    config: SalesforceConfig | None = None,
    *,
    fake: FakeSalesforce | None = None,
    time: FakeTime | None = None,
    clock: Callable[[], datetime] = lambda: NOW,
    base_dir: Path | None = None,
) -> SalesforceConnector:
    """A connector over ``fake`` (in-process), or over the network (respx) without one."""
    time = time or FakeTime()
    context = ConnectorContext(name="salesforce", clock=clock)
    if base_dir is not None:
        context = ConnectorContext(name="salesforce", base_dir=base_dir, clock=clock)
    return SalesforceConnector(
        config or make_config(),
        context,
        transport=None if fake is None else fake.transport(),
        sleep=time.sleep,
        monotonic=time.clock,
    )


# -- a contract Dataset as an org ---------------------------------------------------------


def _street(record: CompanyRecord) -> str | None:
    lines = [line for line in (record.line1, record.line2) if line]
    return "\n".join(lines) or None


def load_company(data: SalesforceData, record: CompanyRecord) -> None:
    """With picklists the codes go to the code fields and the text fields hold names."""
    codes: dict[str, Any] = {}
    if data.picklists:
        codes = {
            "BillingStateCode": record.state,
            "BillingCountryCode": record.country,
            "BillingState": None if record.state is None else f"State of {record.state}",
            "BillingCountry": None if record.country is None else f"Country {record.country}",
        }
    fields: dict[str, Any] = {
        "Id": record.external_id,
        "Name": record.name,
        "BillingStreet": _street(record),
        "BillingCity": record.city,
        "BillingState": record.state,
        "BillingPostalCode": record.postal_code,
        "BillingCountry": record.country,
        "Tax_Status__c": None if record.tax_status is None else record.tax_status.value,
        "Account_Ids__c": ";".join(record.aliases) or None,
        "IsDeleted": record.deleted,
    }
    data.insert("Account", fields | codes, at=record.modified_at)


def load_contact(data: SalesforceData, record: ContactRecord) -> None:
    """The first link as AccountId (with its direct relation), the others as indirect
    relations; a billing link holds the billing role. Relations are stamped long ago."""
    links = record.companies
    first = links[0] if links else None
    data.insert(
        "Contact",
        {
            "Id": record.external_id,
            "AccountId": first.company_id if first else None,
            "FirstName": None,
            "LastName": record.name,
            "Email": record.email,
            "IsDeleted": record.deleted,
        },
        at=record.modified_at,
    )
    for index, link in enumerate(links):
        roles = ROLE if link.billing_contact else None
        data.relate(
            record.external_id, link.company_id, roles=roles, direct=index == 0, at=_LONG_AGO
        )


def load_bad(data: SalesforceData, sample: BadSample, at: datetime) -> None:
    sobject = "Account" if sample.object_type is ObjectType.COMPANY else "Contact"
    stamp = sf_time(round(at.timestamp() * 1000))
    raw: dict[str, Any]
    if sample.kind is BadKind.MISSING_ID:
        raw = {"attributes": {"type": sobject}, "SystemModstamp": stamp, "IsDeleted": False}
    elif sample.kind is BadKind.BAD_TIMESTAMP:
        raw = {
            "attributes": {"type": sobject},
            "Id": sample.external_id,
            "SystemModstamp": "yesterday",
        }
    elif sobject == "Account":
        raw = {"attributes": {"type": sobject}, "Id": sample.external_id, "Name": {"broken": True}}
    else:
        raw = {
            "attributes": {"type": sobject},
            "Id": sample.external_id,
            "AccountContactRelations": "{trunc",
        }
    data.add_raw(sobject, raw, stamp=at, key=sample.external_id or "zzz-missing")


def dataset_org(dataset: Dataset, *, picklists: bool = False) -> SalesforceData:
    data = SalesforceData(picklists=picklists)
    for company in dataset.companies:
        load_company(data, company)
    for contact in dataset.contacts:
        load_contact(data, contact)
    records: list[CompanyRecord | ContactRecord] = [*dataset.companies, *dataset.contacts]
    times = sorted(r.modified_at for r in records if r.modified_at)
    middle = times[len(times) // 2] if times else NOW
    for sample in dataset.bad:
        load_bad(data, sample, middle)
    return data
