"""What a push sends to the billing platform, decided from a customer's stored state.

Pure functions, no I/O (the service loads the customer and calls the API):

- :func:`push_alias`: the deterministic alias every pushed customer carries
  (``{connector}:company:{external_id}`` of its first CRM company record, else
  ``crm-sync:{customer id}``), looked up before any create so that a create that timed
  out, or a process that died right after one, never makes a second billing customer;
- :func:`customer_request`: the ``POST``/``PUT /customers`` body: ``legalName``,
  ``address`` (a ``state`` only for US and Canadian addresses: the API accepts no
  other), ``taxStatus``, ``contacts`` (exactly one ``PRIMARY``: the customer's primary
  billing contact; the others ``STANDARD``), ``customerAliases`` (the push alias
  first, then the customer's own) and ``integrationIds`` (the CRM records);
- :func:`merge_for_update`: ``PUT`` replaces every contact and the integration ids, so
  an update keeps what exists only on the billing side (contacts, other services' ids,
  ``url``, ``label``), the billing-side contacts demoted from ``PRIMARY``;
- :func:`needs_push`: a customer costs a request only when its version moved past the
  version last pushed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast, get_args

from pydantic import ValidationError

from crmsync.billing.models import (
    STATE_REQUIRED_COUNTRIES,
    Address,
    ContactRequest,
    Customer,
    CustomerRequest,
    IntegrationIdRequest,
    IntegrationService,
    TaxStatus,
)

__all__ = [
    "CrmRecord",
    "Held",
    "NotSendable",
    "PushContact",
    "PushCustomer",
    "crm_record_of",
    "customer_request",
    "integration_service",
    "merge_for_update",
    "needs_push",
    "push_alias",
]

#: The billing API's integration service of each connector type that has one.
_SERVICES: Mapping[str, IntegrationService] = {
    "hubspot": "HubSpot",
    "salesforce": "Salesforce",
    "attio": "Attio",
}
_KNOWN_SERVICES: frozenset[str] = frozenset(get_args(IntegrationService))
_PRIMARY = "PRIMARY"
_STANDARD = "STANDARD"


class NotSendable(ValueError):
    """The customer's stored state cannot make a request the API accepts (the message
    says why, without the values)."""


@dataclass(frozen=True, slots=True)
class Held:
    """One reason a customer is held back: its code and sentence, as stored."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class PushContact:
    """An active contact of the customer."""

    name: str | None
    email: str | None
    primary: bool
    email_valid: bool


@dataclass(frozen=True, slots=True)
class CrmRecord:
    """A CRM company record the customer comes from; ``service`` is the billing API's
    name for that CRM (None: the API has no integration for it, e.g. a file export)."""

    connector: str
    external_id: str
    service: IntegrationService | None = None


@dataclass(frozen=True, slots=True)
class PushCustomer:
    """What a push needs to know about one stored customer."""

    id: str
    version: int
    ready: bool
    held: tuple[Held, ...]
    legal_name: str | None
    line1: str | None
    line2: str | None
    city: str | None
    state: str | None
    postal_code: str | None
    country: str | None
    tax_status: str
    contacts: tuple[PushContact, ...]
    aliases: tuple[str, ...]
    records: tuple[CrmRecord, ...]
    """Oldest first: the first one names the push alias."""


def integration_service(connector_type: str) -> IntegrationService | None:
    """The billing API's integration service for a connector type, if it has one."""
    return _SERVICES.get(connector_type)


def push_alias(customer: PushCustomer) -> str:
    """The deterministic alias of the customer on the billing side."""
    if customer.records:
        first = customer.records[0]
        return f"{first.connector}:company:{first.external_id}"
    return f"crm-sync:{customer.id}"


def crm_record_of(alias: str) -> str | None:
    """``connector:external_id`` of a push alias ``connector:company:external_id``
    (how customers are named on the command line), else None."""
    connector, sep, external_id = alias.partition(":company:")
    return f"{connector}:{external_id}" if sep and connector and external_id else None


def needs_push(version: int, pushed_version: int | None) -> bool:
    """Whether the customer changed since it was last pushed (never pushed: yes)."""
    return pushed_version is None or version > pushed_version


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def _contacts(customer: PushCustomer) -> list[ContactRequest]:
    """The primary first, then every other contact with a valid address, once each."""
    primary = [c for c in customer.contacts if c.primary]
    if len(primary) != 1 or not primary[0].email or not primary[0].email_valid:
        raise NotSendable("the customer has no primary billing contact with a valid email")
    chosen: list[ContactRequest] = []
    for contact in (*primary, *(c for c in customer.contacts if not c.primary)):
        email = (contact.email or "").strip()
        if not email or not contact.email_valid:
            continue  # the API needs an address; an invalid one would fail the whole request
        if any(_same(email, c.email) for c in chosen):
            continue
        name = (contact.name or "").strip() or email
        preference = _PRIMARY if not chosen else _STANDARD
        chosen.append(ContactRequest(name=name, email=email, billing_preference=preference))
    return chosen


def _address(customer: PushCustomer) -> Address:
    country = (customer.country or "").strip().upper()
    state = (customer.state or "").strip().upper() if country in STATE_REQUIRED_COUNTRIES else None
    return Address(
        line1=customer.line1 or "",
        line2=customer.line2 or None,
        town=customer.city or "",
        state=state or None,
        postcode=customer.postal_code or "",
        country=country,
    )


def _aliases(customer: PushCustomer) -> list[str]:
    """The push alias first (the client recovers a create by it), then the customer's
    own aliases, each once."""
    return list(dict.fromkeys((push_alias(customer), *customer.aliases)))


def _integration_ids(customer: PushCustomer) -> list[IntegrationIdRequest]:
    found: dict[tuple[str, str], IntegrationIdRequest] = {}
    for record in customer.records:
        if record.service is not None:
            key = (record.service, record.external_id)
            found.setdefault(key, IntegrationIdRequest(service=record.service, id=key[1]))
    return list(found.values())


def customer_request(customer: PushCustomer) -> CustomerRequest:
    """The body that creates the customer, or (merged first) updates it.

    Raises :class:`NotSendable` when the stored state cannot make a valid request
    (a customer that is not ready, or one the API's own rules refuse).
    """
    if not customer.ready:
        codes = ", ".join(h.code for h in customer.held) or "not ready"
        raise NotSendable(f"the customer is held ({codes})")
    if not (customer.legal_name or "").strip():
        raise NotSendable("the customer has no company name")
    try:
        return CustomerRequest(
            legal_name=(customer.legal_name or "").strip(),
            address=_address(customer),
            contacts=_contacts(customer),
            tax_status=cast(TaxStatus, customer.tax_status),  # checked by the model
            customer_aliases=_aliases(customer),
            integration_ids=_integration_ids(customer) or None,
        )
    except ValidationError as exc:
        raise NotSendable(f"the billing API would refuse it ({_problems(exc)})") from None


def _problems(exc: ValidationError) -> str:
    """The first problems, by field, without the values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:3]
    )


def merge_for_update(wanted: CustomerRequest, current: Customer) -> CustomerRequest:
    """``wanted`` as a ``PUT`` over ``current``: the contacts crm-sync sends, then every
    contact only the billing side has (not archived; a ``PRIMARY`` one made ``STANDARD``,
    so exactly one stays primary); the integration ids of other services kept; the
    ``url`` and ``label`` set on the billing side kept."""
    contacts = list(wanted.contacts)
    for contact in current.contacts:
        if contact.archived_at is not None:
            continue
        if any(_same(contact.email, c.email) for c in contacts):
            continue
        preference = _STANDARD if contact.billing_preference == _PRIMARY else None
        contacts.append(
            ContactRequest(
                name=contact.name,
                email=contact.email,
                billing_preference=preference or contact.billing_preference,
            )
        )
    changes = {
        "contacts": contacts,
        "integration_ids": _merged_ids(wanted.integration_ids or [], current) or None,
        "url": wanted.url or current.url,
        "label": wanted.label or current.label,
    }
    try:
        return CustomerRequest(**(dict(wanted) | changes))
    except ValidationError as exc:
        raise NotSendable(f"the merged update would be refused ({_problems(exc)})") from None


def _merged_ids(
    ours: Sequence[IntegrationIdRequest], current: Customer
) -> list[IntegrationIdRequest]:
    """Ours, then the billing side's of services crm-sync does not send."""
    services = {i.service for i in ours}
    merged = list(ours)
    for given in current.integration_ids:
        if given.service in services or given.service not in _KNOWN_SERVICES:
            continue
        service = cast(IntegrationService, given.service)
        merged.append(IntegrationIdRequest(service=service, id=given.id))
    return merged
