"""How held customers are described to a billing person."""

from __future__ import annotations

from typing import Any

from crmsync.entrypoints.views import crm_record, detail, short_reason

ADDRESS = {
    "code": "incomplete_billing_address",
    "message": "The billing address is incomplete: missing state (required for US).",
}
NO_PRIMARY = {
    "code": "no_primary_billing_contact",
    "message": "No primary billing contact. None of the 3 contacts is designated as the "
    "billing contact; designate one in the CRM or pick one with `crm-sync contacts "
    "set-primary`.",
}


def _customer(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"external_refs": list(refs)}


def test_a_short_reason_for_an_address_says_what_is_missing() -> None:
    assert short_reason(ADDRESS) == "Incomplete address: missing state (required for US)"


def test_a_short_reason_is_the_title_of_its_code() -> None:
    assert short_reason(NO_PRIMARY) == "No primary billing contact"


def test_a_reason_of_a_code_this_cli_does_not_know_shows_its_sentence() -> None:
    reason = {"code": "credit_hold", "message": "The customer is on credit hold; call them."}

    assert short_reason(reason) == "The customer is on credit hold"


def test_the_detail_drops_the_advice_and_the_repeated_title() -> None:
    assert detail(NO_PRIMARY) == "None of the 3 contacts is designated as the billing contact"


def test_the_detail_of_an_address_lists_what_is_missing() -> None:
    assert detail(ADDRESS) == "missing state (required for US)"


def test_a_customer_comes_from_connector_and_record_id() -> None:
    ref = {"connector": "sample", "external_id": "C-1031", "deleted_in_source": False}

    assert crm_record(_customer(ref)).plain == "sample:C-1031"


def test_a_merged_customer_names_its_first_record_and_counts_the_others() -> None:
    first = {"connector": "hub", "external_id": "1", "deleted_in_source": True}
    second = {"connector": "hub", "external_id": "2", "deleted_in_source": False}

    assert crm_record(_customer(first, second)).plain == "hub:1 (deleted) +1"
