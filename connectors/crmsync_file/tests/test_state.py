"""Planning a pass from the cursor, and the cursors a pass leaves, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import Cursor, ObjectType
from crmsync_file.state import PassPlan, checkpoint, end_of_pass, plan_pass

NOW = datetime(2026, 6, 1, tzinfo=UTC)
EARLIER = datetime(2026, 3, 1, tzinfo=UTC)
LATER = datetime(2026, 7, 1, tzinfo=UTC)


def _plan(cursor: Cursor | None, *, full: bool = False, has_modified: bool = True) -> PassPlan:
    request = ReadRequest(ObjectType.COMPANY, cursor, full, NOW)
    return plan_pass(request, "fp", has_modified=has_modified)


def test_a_first_read_is_a_full_pass_from_the_first_row() -> None:
    assert _plan(None) == PassPlan(full=True, since=None, until=NOW, fingerprint="fp")


def test_a_known_since_gives_an_incremental_pass() -> None:
    plan = _plan(Cursor(since=EARLIER))
    assert (plan.full, plan.lower_bound, plan.skip) == (False, EARLIER, 0)


def test_a_full_request_keeps_since_but_filters_nothing() -> None:
    plan = _plan(Cursor(since=EARLIER), full=True)
    assert (plan.full, plan.since, plan.lower_bound) == (True, EARLIER, None)


def test_an_interrupted_pass_resumes_on_the_same_file_whatever_the_request_says() -> None:
    cursor = Cursor(
        since=EARLIER,
        until=EARLIER,
        position="40",
        extra={"fingerprint": "fp", "max_seen": LATER.isoformat()},
    )
    plan = _plan(cursor, full=True)
    assert plan == PassPlan(False, EARLIER, EARLIER, "fp", skip=40, max_seen=LATER)


def test_an_interrupted_pass_over_a_changed_file_restarts_from_the_first_row() -> None:
    cursor = Cursor(since=EARLIER, until=EARLIER, position="40", extra={"fingerprint": "old"})
    assert _plan(cursor) == PassPlan(False, EARLIER, EARLIER, "fp")


def test_nothing_is_read_only_for_an_unchanged_file_without_row_times() -> None:
    cursor = Cursor(since=EARLIER, extra={"fingerprint": "fp"})
    assert _plan(cursor, has_modified=False).unchanged
    assert not _plan(cursor, has_modified=True).unchanged
    assert not _plan(cursor, has_modified=False, full=True).unchanged
    assert not _plan(
        Cursor(since=EARLIER, extra={"fingerprint": "x"}), has_modified=False
    ).unchanged


def test_a_since_taken_from_a_file_mtime_does_not_filter_rows_with_times() -> None:
    cursor = Cursor(since=EARLIER, extra={"fingerprint": "x", "row_times": False})
    assert _plan(cursor, has_modified=True).full


def test_checkpoints_carry_the_pass_and_the_newest_time_seen() -> None:
    plan = PassPlan(True, EARLIER, NOW, "fp")
    assert checkpoint(plan, 12, LATER) == Cursor(
        since=EARLIER,
        until=NOW,
        position="12",
        full=True,
        extra={"fingerprint": "fp", "max_seen": LATER.isoformat()},
    )


def test_the_end_of_a_pass_raises_since_to_the_newest_time_capped_at_the_pass_start() -> None:
    plan = PassPlan(False, EARLIER, NOW, "fp")
    assert end_of_pass(plan, LATER, row_times=True).since == NOW
    april = datetime(2026, 4, 1, tzinfo=UTC)
    assert end_of_pass(plan, april, row_times=True).since == april
    assert end_of_pass(plan, datetime(2026, 1, 1, tzinfo=UTC), row_times=True).since == EARLIER
    assert end_of_pass(plan, None, row_times=True).since == EARLIER
    end = end_of_pass(plan, None, row_times=False)
    assert (end.position, end.until, end.full) == (None, None, False)
    assert end.extra == {"fingerprint": "fp", "row_times": False}
