"""Whether a customer is ready to bill, and why not."""

from __future__ import annotations

import pytest

from crmsync.domain import (
    Address,
    BlockCode,
    ContactView,
    CustomerView,
    PrimaryChoice,
    TaxStatus,
    assess,
)

GOOD_ADDRESS = Address(line1="1 Rue de Rivoli", city="Paris", postal_code="75001", country="FR")
ANN = ContactView(id="c1", name="Ann", email="ann@example.com", email_valid=True)


def customer(**changes: object) -> CustomerView:
    values: dict[str, object] = {
        "company_name": "Acme",
        "address": GOOD_ADDRESS,
        "tax_status": TaxStatus.TAXED,
        "contact_count": 1,
    }
    values.update(changes)
    return CustomerView(**values)  # type: ignore[arg-type]


def codes(view: CustomerView, contact: ContactView | None = ANN) -> list[BlockCode]:
    choice = PrimaryChoice(contact.id if contact else None)
    return [r.code for r in assess(view, choice, contact)]


def test_a_complete_customer_with_one_valid_primary_is_ready() -> None:
    assert codes(customer()) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"company_name": None}, BlockCode.MISSING_COMPANY_NAME),
        (
            {"address": Address(line1="x", city="Paris", country="FR")},
            BlockCode.INCOMPLETE_BILLING_ADDRESS,
        ),
        (
            {"address": Address(line1="x", city="Austin", postal_code="78701", country="US")},
            BlockCode.INCOMPLETE_BILLING_ADDRESS,
        ),
        (
            {"address": Address(line1="x", city="X", postal_code="1", country="Atlantis")},
            BlockCode.INCOMPLETE_BILLING_ADDRESS,
        ),
        ({"tax_status": None}, BlockCode.MISSING_TAX_STATUS),
        ({"archived": True}, BlockCode.ARCHIVED),
        ({"source_deleted": ("hubspot",)}, BlockCode.SOURCE_DELETED),
        ({"alias_conflicts": ("acct-1",)}, BlockCode.ALIAS_CONFLICT),
    ],
)
def test_each_missing_piece_holds_the_customer_with_its_own_code(
    changes: dict[str, object], expected: BlockCode
) -> None:
    assert codes(customer(**changes)) == [expected]


def test_a_primary_without_email_or_with_an_invalid_one_holds_the_customer() -> None:
    no_email = ContactView(id="c1", name="Ann", email=None, email_valid=False)
    bad = ContactView(id="c1", name="Ann", email="ann@", email_valid=False)
    assert codes(customer(), no_email) == [BlockCode.PRIMARY_CONTACT_WITHOUT_EMAIL]
    assert codes(customer(), bad) == [BlockCode.PRIMARY_CONTACT_INVALID_EMAIL]


def test_every_reason_is_reported_at_once_with_a_sentence() -> None:
    reasons = assess(
        customer(company_name="", archived=True, address=Address()),
        PrimaryChoice(None, problem=BlockCode.NO_PRIMARY_BILLING_CONTACT),
        None,
    )
    assert {r.code for r in reasons} == {
        BlockCode.ARCHIVED,
        BlockCode.MISSING_COMPANY_NAME,
        BlockCode.INCOMPLETE_BILLING_ADDRESS,
        BlockCode.NO_PRIMARY_BILLING_CONTACT,
    }
    assert all(r.message.endswith(".") for r in reasons)


def test_a_reason_message_never_contains_the_contacts_email() -> None:
    bad = ContactView(id="c1", name="Ann", email="ann.secret@", email_valid=False)
    reasons = assess(customer(), PrimaryChoice("c1"), bad)
    assert all("ann.secret" not in r.message for r in reasons)
