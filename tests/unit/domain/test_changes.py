"""What changed about a customer: diffs, combined changes and replays."""

from __future__ import annotations

from datetime import UTC, datetime

from crmsync.domain.changes import FieldChange, combine, diff, empty_state, replay, set_changes


def test_a_diff_lists_only_the_fields_whose_value_differs() -> None:
    stored = {"company_name": "Acme", "city": "London", "country": "GB"}

    changes = diff(stored, {"company_name": "Acme", "city": "Leeds", "country": "GB"})

    assert changes == [FieldChange("city", "London", "Leeds")]


def test_a_field_not_being_written_is_not_a_change() -> None:
    assert diff({"company_name": "Acme", "city": "London"}, {"company_name": "Acme"}) == []


def test_a_new_customer_diffs_from_nothing() -> None:
    assert diff(None, {"company_name": "Acme", "line2": None}) == [
        FieldChange("company_name", None, "Acme")
    ]


def test_datetimes_are_logged_as_iso_text() -> None:
    when = datetime(2026, 12, 4, 12, tzinfo=UTC)

    assert diff({"archived_at": None}, {"archived_at": when}) == [
        FieldChange("archived_at", None, "2026-12-04T12:00:00+00:00")
    ]


def test_fields_outside_the_billing_state_are_ignored() -> None:
    assert diff({"updated_at": 1}, {"updated_at": 2}) == []


def test_set_changes_name_each_element_removed_and_added() -> None:
    assert set_changes("aliases", ["a", "b"], ["b", "c"]) == [
        FieldChange("aliases", "a", None),
        FieldChange("aliases", None, "c"),
    ]


def test_two_changes_of_a_field_in_one_transaction_keep_the_first_old_and_last_new() -> None:
    combined = combine(
        [FieldChange("city", "London", "Leeds")], [FieldChange("city", "Leeds", "York")]
    )

    assert combined == [FieldChange("city", "London", "York")]


def test_a_field_changed_back_in_one_transaction_is_no_change() -> None:
    assert combine([FieldChange("ready", True, False)], [FieldChange("ready", False, True)]) == []


def test_an_element_added_then_removed_in_one_transaction_is_no_change() -> None:
    added = [FieldChange("contacts", None, "con_1")]

    assert combine(added, [FieldChange("contacts", "con_1", None)]) == []


def test_replaying_entries_from_nothing_gives_the_final_state() -> None:
    state = replay(
        [
            [FieldChange("city", None, "London"), FieldChange("aliases", None, "cus_1")],
            [FieldChange("aliases", None, "acct-1"), FieldChange("city", "London", "Leeds")],
            [FieldChange("aliases", "acct-1", None)],
        ]
    )

    assert (state["city"], state["aliases"]) == ("Leeds", {"cus_1"})


def test_replaying_no_entries_gives_an_empty_customer() -> None:
    assert replay([]) == empty_state()
