"""Rules the README states, pinned one by one (each fails if the rule is dropped)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crmsync.domain import Address, address_problems, archive_plan

COMPLETE = {"line1": "1 Main St", "city": "Toronto", "postal_code": "M5V 2T6", "country": "CA"}


@pytest.mark.parametrize("country", ["CA", "US"])
def test_canada_and_the_us_require_a_state(country: str) -> None:
    address = Address(**{**COMPLETE, "country": country})

    assert address_problems(address) == [f"missing state (required for {country})"]


def test_a_state_completes_a_canadian_address() -> None:
    assert address_problems(Address(**COMPLETE, state="ON")) == []


def test_address_line_1_is_required() -> None:
    address = Address(**{**COMPLETE, "line1": None}, state="ON")

    assert address_problems(address) == ["missing line 1"]


def test_archiving_leaves_already_archived_schedules_and_final_invoices_alone() -> None:
    earlier = datetime(2026, 1, 1, tzinfo=UTC)

    schedules, invoices = archive_plan(
        [("s-live", None), ("s-archived", earlier)],
        [("i-draft", "DRAFT"), ("i-final", "FINAL"), ("i-sent", "SENT")],
    )

    assert (schedules, invoices) == (["s-live"], ["i-draft"])
