"""Where a pass stands: its window, the boundary it skips, and the cursor ending it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import Cursor, ObjectType
from crmsync_pipedrive.passes import MAX_BOUNDARY, PassState

T1 = datetime(2026, 3, 2, 9, tzinfo=UTC)
STARTED = datetime(2026, 6, 1, tzinfo=UTC)


def start(cursor: Cursor | None, *, full: bool = False) -> PassState:
    return PassState.start(ReadRequest(ObjectType.COMPANY, cursor, full, STARTED))


def test_a_first_pass_is_full_and_ends_at_the_newest_update_it_saw() -> None:
    state = start(None)
    state.observe("1", T1 - timedelta(days=1))
    state.observe("2", T1)

    assert state.full
    assert state.since is None
    assert state.ended() == Cursor(since=T1, extra={"boundary": ["2"]})


def test_the_next_pass_skips_only_boundary_records_still_at_the_boundary_time() -> None:
    state = start(Cursor(since=T1, extra={"boundary": ["2", "3"]}))

    delivered = [
        state.observe("2", T1),  # unchanged since the last pass: skipped
        state.observe("3", T1 + timedelta(seconds=1)),  # changed again: delivered
        state.observe("4", T1),  # new at the boundary time: delivered
    ]

    assert delivered == [False, True, True]
    assert state.ended().since == T1 + timedelta(seconds=1)


def test_a_boundary_too_large_to_keep_is_read_again_rather_than_kept() -> None:
    state = start(None)
    for number in range(MAX_BOUNDARY + 1):
        state.observe(str(number), T1)

    ended = state.ended()
    following = start(ended)

    assert ended == Cursor(since=T1)
    assert following.observe("0", T1) is True


def test_a_resumed_pass_keeps_its_window_skip_list_and_newest_time() -> None:
    state = start(Cursor(since=T1, extra={"boundary": ["2"]}))
    state.observe("5", T1 + timedelta(hours=1))
    checkpoint = Cursor.model_validate_json(state.in_pass("next-page").model_dump_json())

    resumed = start(checkpoint)

    assert (resumed.since, resumed.until, resumed.position) == (T1, STARTED, "next-page")
    assert resumed.observe("2", T1) is False
    assert resumed.ended().since == T1 + timedelta(hours=1)


def test_a_pass_that_saw_records_newer_than_the_run_start_ends_at_the_run_start() -> None:
    state = start(None)
    state.observe("1", STARTED + timedelta(minutes=5))

    assert state.ended() == Cursor(since=STARTED)
