"""Choosing the primary billing contact: pure rules, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmsync.domain import BlockCode, ContactView, PrimarySource, choose_primary

T = datetime(2026, 3, 1, tzinfo=UTC)


def person(cid: str, *, designated: bool = False, at: datetime | None = None) -> ContactView:
    return ContactView(
        id=cid,
        name=cid,
        email=f"{cid}@example.com",
        email_valid=True,
        crm_designated=designated,
        designated_at=at if designated else None,
    )


def test_the_crm_designation_wins_by_default() -> None:
    choice = choose_primary([person("a"), person("b", designated=True, at=T)])
    assert (choice.contact_id, choice.source) == ("b", PrimarySource.CRM_DESIGNATION)


def test_the_only_contact_is_chosen_when_nothing_else_decides() -> None:
    choice = choose_primary([person("a")])
    assert (choice.contact_id, choice.source) == ("a", PrimarySource.SOLE_CONTACT)


def test_no_contacts_means_no_primary() -> None:
    assert choose_primary([]).problem is BlockCode.NO_PRIMARY_BILLING_CONTACT


def test_several_contacts_without_a_designation_mean_no_primary() -> None:
    choice = choose_primary([person("a"), person("b")])
    assert choice.contact_id is None
    assert choice.problem is BlockCode.NO_PRIMARY_BILLING_CONTACT


def test_two_designations_are_ambiguous_and_choose_nobody() -> None:
    choice = choose_primary(
        [person("a", designated=True, at=T), person("b", designated=True, at=T)]
    )
    assert choice.contact_id is None
    assert choice.problem is BlockCode.AMBIGUOUS_PRIMARY_BILLING_CONTACT
    assert choice.designated_count == 2


def test_a_hand_pick_beats_a_designation_made_before_it() -> None:
    choice = choose_primary(
        [person("a", designated=True, at=T), person("b")],
        manual_id="b",
        manual_at=T + timedelta(hours=1),
    )
    assert (choice.contact_id, choice.source) == ("b", PrimarySource.MANUAL)


def test_a_designation_made_after_the_hand_pick_beats_it() -> None:
    choice = choose_primary(
        [person("a", designated=True, at=T + timedelta(hours=2)), person("b")],
        manual_id="b",
        manual_at=T + timedelta(hours=1),
    )
    assert choice.contact_id == "a"


def test_a_hand_pick_of_a_contact_that_is_gone_no_longer_counts() -> None:
    choice = choose_primary([person("a"), person("b")], manual_id="gone", manual_at=T)
    assert choice.contact_id is None


def test_the_order_of_sources_is_configurable() -> None:
    order = (PrimarySource.MANUAL, PrimarySource.CRM_DESIGNATION)
    choice = choose_primary(
        [person("a", designated=True, at=T + timedelta(days=1)), person("b")],
        order=order,
        manual_id="b",
        manual_at=T,
    )
    assert choice.contact_id == "b"


def test_leaving_out_sole_contact_from_the_order_holds_a_single_undesignated_contact() -> None:
    choice = choose_primary([person("a")], order=(PrimarySource.CRM_DESIGNATION,))
    assert choice.contact_id is None
