"""Value types of the customer domain: enums and the billing address."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Address",
    "BillingPreference",
    "ContactOrigin",
    "FieldSource",
    "PrimarySource",
    "TaxStatus",
    "fold_alias",
    "parse_tax_status",
]


class TaxStatus(StrEnum):
    """How invoices to the customer are taxed (the billing API's ``taxStatus``)."""

    TAXED = "TAXED"
    TAX_EXEMPT = "TAX_EXEMPT"
    REVERSE_CHARGED = "REVERSE_CHARGED"


MAX_FOLDED_LENGTH = 255


def parse_tax_status(text: str) -> TaxStatus | None:
    """A tax status from the ways people and exports spell it: ``TAX_EXEMPT``,
    ``tax_exempt``, ``Tax Exempt``, ``tax-exempt``. ``None`` when it names none."""
    name = "_".join(text.strip().upper().replace("-", " ").replace("_", " ").split())
    try:
        return TaxStatus(name)
    except ValueError:
        return None


def fold_alias(value: str) -> str:
    """The form aliases are compared in: Unicode compatibility normalisation (NFKC) and
    case folding, so ``CAFÉ-1`` (composed or not), ``café-1`` and its full-width form are one
    alias. The store keeps it in a unique column: two customers can never hold one alias.
    A form longer than the column (255) keeps its head and a digest of the whole."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    if len(folded) <= MAX_FOLDED_LENGTH:
        return folded
    digest = hashlib.sha256(folded.encode()).hexdigest()
    return f"{folded[: MAX_FOLDED_LENGTH - len(digest) - 1]}#{digest}"


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
