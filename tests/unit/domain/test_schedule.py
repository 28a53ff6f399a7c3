"""Schedules: what a cron expression means, and the one catch-up run start-up owes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.domain.schedule import CatchUp, catch_up, missed, next_fire_after

HOURLY = "0 * * * *"
NIGHTLY = "0 3 * * *"
NOW = datetime(2026, 12, 4, 10, 20, tzinfo=UTC)  # a Friday


def at(hour: int, minute: int = 0, day: int = 4) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def test_a_schedule_that_fired_after_the_last_run_started_was_missed() -> None:
    assert missed(HOURLY, at(8, 30), NOW)  # 09:00 and 10:00 went by


def test_a_run_started_after_the_previous_fire_time_missed_nothing() -> None:
    assert not missed(HOURLY, at(10, 0, 4) + timedelta(seconds=2), NOW)


def test_a_run_started_exactly_at_the_fire_time_is_that_fires_run() -> None:
    assert not missed(HOURLY, at(10), NOW)


def test_a_connector_never_synced_has_missed_its_schedule() -> None:
    assert missed(HOURLY, None, NOW)


def test_without_a_schedule_nothing_is_missed() -> None:
    assert not missed(None, None, NOW)


def test_many_missed_fires_owe_one_incremental_run() -> None:
    owed = catch_up(
        schedule=HOURLY, full_schedule=None, last_run=at(3, day=2), last_full_run=None, now=NOW
    )

    assert owed is CatchUp.INCREMENTAL


def test_a_missed_full_schedule_owes_one_full_run() -> None:
    owed = catch_up(
        schedule=HOURLY,
        full_schedule=NIGHTLY,
        last_run=at(2, day=3),
        last_full_run=at(3, day=2),
        now=NOW,
    )

    assert owed is CatchUp.FULL


def test_increments_after_the_nightly_fire_do_not_stand_in_for_the_missed_full_pass() -> None:
    owed = catch_up(
        schedule=HOURLY,
        full_schedule=NIGHTLY,
        last_run=at(10, 5),
        last_full_run=at(3, day=3),
        now=NOW,
    )

    assert owed is CatchUp.FULL


def test_a_full_run_after_the_incremental_fire_time_covers_the_incremental_schedule() -> None:
    owed = catch_up(
        schedule=HOURLY,
        full_schedule=NIGHTLY,
        last_run=at(8),
        last_full_run=at(10, 1),
        now=NOW,
    )

    assert owed is None


def test_a_service_that_was_up_owes_nothing() -> None:
    owed = catch_up(
        schedule=HOURLY,
        full_schedule=NIGHTLY,
        last_run=at(10),
        last_full_run=at(3),
        now=NOW,
    )

    assert owed is None


def test_a_connector_never_synced_is_owed_a_full_run_when_it_has_a_full_schedule() -> None:
    assert (
        catch_up(schedule=HOURLY, full_schedule=NIGHTLY, last_run=None, last_full_run=None, now=NOW)
        is CatchUp.FULL
    )
    assert (
        catch_up(schedule=HOURLY, full_schedule=None, last_run=None, last_full_run=None, now=NOW)
        is CatchUp.INCREMENTAL
    )


def test_a_six_field_cron_counts_seconds_first() -> None:
    assert next_fire_after("*/10 * * * * *", at(10, 0) + timedelta(seconds=1)) == at(10, 0) + (
        timedelta(seconds=10)
    )


@pytest.mark.parametrize(
    ("weekday", "expected_day"),
    [("0", 6), ("7", 6), ("sun", 6), ("1", 7), ("1-5", 7), ("6", 5), ("5-7", 5), ("*/2", 5)],
)
def test_weekdays_count_as_in_crontab_with_sunday_as_0_and_7(
    weekday: str, expected_day: int
) -> None:
    # From Friday 2026-12-04 10:20: Saturday is the 5th, Sunday the 6th, Monday the 7th.
    assert next_fire_after(f"0 3 * * {weekday}", NOW) == at(3, day=expected_day)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * *", "5 fields"),
        ("61 * * * *", "higher than the maximum"),
        ("* * * * 8", "weekday out of range"),
        ("* * * * mon-sun", "runs backwards"),
        ("* * * * */0", "step must be at least 1"),
        ("x * * * *", "minute"),
    ],
)
def test_a_bad_cron_expression_says_what_is_wrong(expression: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        missed(expression, at(1), NOW)
