"""The customer domain: plain objects and pure rules, no I/O.

Everything here is importable without a database or a network; the store and the
sync engine call these functions so that each rule lives in exactly one place.
"""

from crmsync.domain.model import (
    BlockCode,
    BlockedReason,
    ContactView,
    CustomerView,
    PrimaryChoice,
    archive_plan,
    assess,
    choose_primary,
)
from crmsync.domain.validation import (
    AddressInput,
    EmailCheck,
    address_problems,
    check_email,
    normalize_address,
    normalize_country,
)
from crmsync.domain.values import (
    DEFAULT_PRIMARY_ORDER,
    Address,
    BillingPreference,
    ContactOrigin,
    FieldSource,
    PrimarySource,
    TaxStatus,
)

__all__ = [
    "DEFAULT_PRIMARY_ORDER",
    "Address",
    "AddressInput",
    "BillingPreference",
    "BlockCode",
    "BlockedReason",
    "ContactOrigin",
    "ContactView",
    "CustomerView",
    "EmailCheck",
    "FieldSource",
    "PrimaryChoice",
    "PrimarySource",
    "TaxStatus",
    "address_problems",
    "archive_plan",
    "assess",
    "check_email",
    "choose_primary",
    "normalize_address",
    "normalize_country",
]
