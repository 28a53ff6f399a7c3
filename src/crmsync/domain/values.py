"""Value types of the customer domain: enums and the billing address."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Address",
    "BillingPreference",
    "ContactOrigin",
    "FieldSource",
    "PrimarySource",
    "TaxStatus",
]


class TaxStatus(StrEnum):
    """How invoices to the customer are taxed (the billing API's ``taxStatus``)."""

    TAXED = "TAXED"
    TAX_EXEMPT = "TAX_EXEMPT"
    REVERSE_CHARGED = "REVERSE_CHARGED"


class BillingPreference(StrEnum):
    """A contact's role in billing (the billing API's ``billingPreference``)."""

    PRIMARY = "PRIMARY"
    STANDARD = "STANDARD"
    NONE = "NONE"


class PrimarySource(StrEnum):
    """Where a primary billing contact may come from, tried in a configurable order."""

    CRM_DESIGNATION = "crm_designation"
    """The CRM marks the contact as the billing contact (an association label or property)."""
    MANUAL = "manual"
    """A person picked the contact in crm-sync; it holds while the contact exists."""
    SOLE_CONTACT = "sole_contact"
    """The customer has exactly one contact."""


DEFAULT_PRIMARY_ORDER: tuple[PrimarySource, ...] = (
    PrimarySource.CRM_DESIGNATION,
    PrimarySource.MANUAL,
    PrimarySource.SOLE_CONTACT,
)


class ContactOrigin(StrEnum):
    """Who owns a contact: a CRM sync (which may change it) or a person (which it never does)."""

    CRM = "crm"
    MANUAL = "manual"


class FieldSource(StrEnum):
    """Who set a field that both the CRM and a person may set (the tax status)."""

    DEFAULT = "default"
    CRM = "crm"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Address:
    """A billing address as stored: trimmed, country and state normalised where possible."""

    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
