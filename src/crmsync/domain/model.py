"""The rules that decide who the primary billing contact is and whether a customer is ready.

A customer is *ready* (may be pushed to billing and to the CRM, and invoiced) only
with a company name, a complete billing address, a tax status, exactly one primary
billing contact with a valid email, and neither archived nor deleted at the source.
Otherwise :func:`assess` returns the reasons, each a stable code plus a sentence a
person understands; they are stored with the customer so that the hold is visible.

The primary billing contact is chosen by :func:`choose_primary`, trying sources in
a configurable order (default: the CRM's designation, then a pick made by hand in
crm-sync, then the only contact). A pick made by hand survives later syncs unless
the CRM designates a contact *after* the pick was made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from crmsync.domain.validation import address_problems
from crmsync.domain.values import (
    DEFAULT_PRIMARY_ORDER,
    Address,
    ContactOrigin,
    PrimarySource,
    TaxStatus,
)

__all__ = [
    "BlockCode",
    "BlockedReason",
    "ContactView",
    "CustomerView",
    "PrimaryChoice",
    "archive_plan",
    "assess",
    "choose_primary",
]


class BlockCode(StrEnum):
    """Machine-readable reasons a customer is held back from billing."""

    MISSING_COMPANY_NAME = "missing_company_name"
    INCOMPLETE_BILLING_ADDRESS = "incomplete_billing_address"
    MISSING_TAX_STATUS = "missing_tax_status"
    NO_PRIMARY_BILLING_CONTACT = "no_primary_billing_contact"
    AMBIGUOUS_PRIMARY_BILLING_CONTACT = "ambiguous_primary_billing_contact"
    PRIMARY_CONTACT_WITHOUT_EMAIL = "primary_contact_without_email"
    PRIMARY_CONTACT_INVALID_EMAIL = "primary_contact_invalid_email"
    ALIAS_CONFLICT = "alias_conflict"
    SOURCE_DELETED = "source_deleted"
    ARCHIVED = "archived"
    MERGED = "merged"
    """The CRM merged the customer's record into another's: it is billed as that one."""


@dataclass(frozen=True, slots=True)
class BlockedReason:
    """One reason a customer is held: a stable code and a sentence for a person."""

    code: BlockCode
    message: str


@dataclass(frozen=True, slots=True)
class ContactView:
    """What the rules need to know about one (not removed) contact of a customer."""

    id: str
    name: str | None
    email: str | None
    email_valid: bool
    origin: ContactOrigin = ContactOrigin.CRM
    crm_designated: bool = False
    designated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PrimaryChoice:
    """The outcome of choosing a primary billing contact."""

    contact_id: str | None
    source: PrimarySource | None = None
    problem: BlockCode | None = None
    designated_count: int = 0


def choose_primary(
    contacts: Sequence[ContactView],
    *,
    order: Sequence[PrimarySource] = DEFAULT_PRIMARY_ORDER,
    manual_id: str | None = None,
    manual_at: datetime | None = None,
) -> PrimaryChoice:
    """Pick the primary billing contact among a customer's current contacts.

    ``manual_id``/``manual_at`` are the pick a person made in crm-sync and when. A CRM
    designation older than a living hand pick does not override it; one made after it
    does. Several designations that count make the choice ambiguous, and nothing is
    chosen: guessing the wrong billing contact sends invoices to the wrong person.
    """
    by_id = {contact.id: contact for contact in contacts}
    manual = by_id.get(manual_id) if manual_id is not None else None
    for source in order:
        if source is PrimarySource.CRM_DESIGNATION:
            designated = [
                c
                for c in contacts
                if c.crm_designated
                and (
                    manual is None
                    or manual_at is None
                    or c.id == manual.id
                    or c.designated_at is None
                    or c.designated_at > manual_at
                )
            ]
            if len(designated) == 1:
                return PrimaryChoice(designated[0].id, source, designated_count=1)
            if len(designated) > 1:
                return PrimaryChoice(
                    None,
                    problem=BlockCode.AMBIGUOUS_PRIMARY_BILLING_CONTACT,
                    designated_count=len(designated),
                )
        elif source is PrimarySource.MANUAL:
            if manual is not None:
                return PrimaryChoice(manual.id, source)
        elif source is PrimarySource.SOLE_CONTACT and len(contacts) == 1:
            return PrimaryChoice(contacts[0].id, source)
    return PrimaryChoice(None, problem=BlockCode.NO_PRIMARY_BILLING_CONTACT)


@dataclass(frozen=True, slots=True)
class CustomerView:
    """What the readiness rules need to know about a customer."""

    company_name: str | None
    address: Address
    tax_status: TaxStatus | None
    contact_count: int = 0
    archived: bool = False
    source_deleted: tuple[str, ...] = ()
    """Connectors whose record of this customer was deleted or archived."""
    alias_conflicts: tuple[str, ...] = field(default=())
    """Aliases the CRM gives this customer that another customer already holds."""


def assess(
    customer: CustomerView,
    primary: PrimaryChoice,
    primary_contact: ContactView | None,
) -> list[BlockedReason]:
    """Every reason the customer cannot be pushed or invoiced; empty means ready."""
    reasons: list[BlockedReason] = []

    def block(code: BlockCode, message: str) -> None:
        reasons.append(BlockedReason(code, message))

    if customer.archived:
        block(BlockCode.ARCHIVED, "The customer is archived.")
    for connector in customer.source_deleted:
        block(
            BlockCode.SOURCE_DELETED,
            f"The record in {connector} was deleted or archived; the customer is held until "
            "the record is restored or someone archives the customer in crm-sync.",
        )
    if not customer.company_name:
        block(BlockCode.MISSING_COMPANY_NAME, "The company has no name.")
    problems = address_problems(customer.address)
    if problems:
        block(
            BlockCode.INCOMPLETE_BILLING_ADDRESS,
            "The billing address is incomplete: " + "; ".join(problems) + ".",
        )
    if customer.tax_status is None:
        block(BlockCode.MISSING_TAX_STATUS, "The customer has no tax status.")
    if primary.problem is BlockCode.AMBIGUOUS_PRIMARY_BILLING_CONTACT:
        block(
            primary.problem,
            f"The CRM designates {primary.designated_count} contacts as billing contact; "
            "exactly one is needed. Fix the designation in the CRM or pick one with "
            "`crm-sync contacts set-primary`.",
        )
    elif primary_contact is None:
        if customer.contact_count == 0:
            detail = "The customer has no contacts; add one with `crm-sync contacts add`."
        else:
            detail = (
                f"None of the {customer.contact_count} contacts is designated as the billing "
                "contact; designate one in the CRM or pick one with "
                "`crm-sync contacts set-primary`."
            )
        block(BlockCode.NO_PRIMARY_BILLING_CONTACT, "No primary billing contact. " + detail)
    elif primary_contact.email is None:
        block(
            BlockCode.PRIMARY_CONTACT_WITHOUT_EMAIL,
            f"The primary billing contact {primary_contact.name or primary_contact.id!r} "
            "has no email address.",
        )
    elif not primary_contact.email_valid:
        block(
            BlockCode.PRIMARY_CONTACT_INVALID_EMAIL,
            f"The primary billing contact {primary_contact.name or primary_contact.id!r} "
            "has an email address that is not valid.",
        )
    for alias in customer.alias_conflicts:
        block(
            BlockCode.ALIAS_CONFLICT,
            f"The CRM gives this customer the alias {alias!r}, which another customer "
            "already holds; aliases must be unique.",
        )
    return reasons


def archive_plan(
    schedules: Sequence[tuple[str, datetime | None]],
    invoices: Sequence[tuple[str, str]],
) -> tuple[list[str], list[str]]:
    """What archiving a customer changes: (schedules to archive, invoices to void).

    Every billing schedule not yet archived is archived and every DRAFT invoice is
    voided; finalized and sent invoices stay as they are (IN_PROGRESS ones too: the
    billing API cannot void an invoice it is still computing).
    """
    to_archive = [sid for sid, archived_at in schedules if archived_at is None]
    to_void = [iid for iid, status in invoices if status == "DRAFT"]
    return to_archive, to_void
