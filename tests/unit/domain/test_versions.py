"""Which version of a CRM record wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmsync.domain.versions import Version, newest, supersedes

T = datetime(2026, 12, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T + timedelta(minutes=minutes)


def test_the_later_crm_modification_wins_whatever_the_read_order() -> None:
    assert supersedes(Version(at(2), at(0)), Version(at(1), at(5)))
    assert not supersedes(Version(at(1), at(9)), Version(at(2), at(0)))


def test_with_equal_modification_times_the_later_read_wins() -> None:
    assert supersedes(Version(at(1), at(6)), Version(at(1), at(5)))
    assert not supersedes(Version(at(1), at(4)), Version(at(1), at(5)))


def test_a_version_without_modification_time_is_ordered_by_when_it_was_read() -> None:
    assert supersedes(Version(None, at(6)), Version(at(1), at(5)))
    assert not supersedes(Version(None, at(4)), Version(at(1), at(5)))


def test_a_version_without_modification_time_keeps_the_known_one_when_stored() -> None:
    assert Version(at(1), at(5)).after(Version(None, at(6))) == Version(at(1), at(6))


def test_an_unversioned_store_row_is_replaced_by_anything() -> None:
    assert supersedes(Version(at(1), at(2)), Version())
    assert supersedes(Version(), Version())


def test_a_stored_modification_time_is_not_beaten_by_an_unread_undated_version() -> None:
    assert not supersedes(Version(None, None), Version(at(1), at(5)))


def test_newest_picks_the_version_that_beats_the_others() -> None:
    assert newest([Version(at(1), at(9)), Version(at(3), at(1)), Version(at(3), at(2))]) == (
        Version(at(3), at(2))
    )
    assert newest([]) is None
