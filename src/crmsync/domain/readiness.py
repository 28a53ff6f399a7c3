"""One customer's primary billing contact and readiness, decided from its stored state.

The adapter (:mod:`crmsync.adapters.readiness`) loads a batch of customers with their
contacts as they will be once the transaction's writes are done, asks :func:`judge`
about each, and writes what changed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from crmsync.domain.model import (
    BlockedReason,
    ContactView,
    CustomerView,
    assess,
    choose_primary,
)
from crmsync.domain.validation import check_email
from crmsync.domain.values import PrimarySource

__all__ = ["Judgement", "judge"]


@dataclass(frozen=True, slots=True)
class Judgement:
    """Who the primary billing contact is, and why the customer is held (if it is)."""

    primary_id: str | None
    primary: ContactView | None
    """The primary, with its address's validity as checked."""
    email_checked: bool | None
    """The outcome of checking the primary's address here (it had not been checked
    before), to be remembered; None when its validity was known."""
    reasons: list[BlockedReason]


def judge(
    customer: CustomerView,
    contacts: Sequence[ContactView],
    *,
    unchecked: Collection[str] = (),
    order: Sequence[PrimarySource],
    manual_id: str | None = None,
    manual_at: datetime | None = None,
) -> Judgement:
    """Choose the customer's primary billing contact and assess its readiness.

    ``contacts`` are its current contacts; those in ``unchecked`` (by id) have an
    address not checked yet, and count as not valid when choosing. The chosen one's
    address is checked here, once, when it first matters: checking every address of a
    bulk import up front cost more than all of the import's database work.
    """
    choice = choose_primary(contacts, order=order, manual_id=manual_id, manual_at=manual_at)
    primary = next((c for c in contacts if c.id == choice.contact_id), None)
    checked = None
    if primary is not None and primary.id in unchecked:
        checked = check_email(primary.email).valid
        primary = replace(primary, email_valid=checked)
    return Judgement(choice.contact_id, primary, checked, assess(customer, choice, primary))
