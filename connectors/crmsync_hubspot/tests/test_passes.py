"""Planning a pass from the engine's request and cursor, and writing positions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.errors import FatalConnectorError
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import Cursor, ObjectType
from crmsync_hubspot.passes import Phase, Position, epoch_ms, plan_pass

STARTED = datetime(2026, 6, 1, 12, 0, 0, 987_654, tzinfo=UTC)
LAG = timedelta(seconds=30)
UNTIL = datetime(2026, 6, 1, 11, 59, 30, 987_000, tzinfo=UTC)
SINCE = datetime(2026, 5, 1, tzinfo=UTC)


def request(cursor: Cursor | None, *, full: bool = False) -> ReadRequest:
    return ReadRequest(ObjectType.COMPANY, cursor, full, STARTED)


def test_a_first_pass_is_full_and_ends_at_the_run_start_minus_the_lag_in_milliseconds() -> None:
    plan = plan_pass(request(None), LAG)

    assert (plan.full, plan.since, plan.until, plan.start) == (
        True,
        None,
        UNTIL,
        Position(Phase.LIST),
    )
    assert plan.phases == (Phase.LIST, Phase.ARCHIVED)
    assert plan.end_since == UNTIL


def test_a_pass_from_a_since_cursor_is_incremental_unless_a_full_sync_is_asked_for() -> None:
    incremental = plan_pass(request(Cursor(since=SINCE)), LAG)
    full = plan_pass(request(Cursor(since=SINCE), full=True), LAG)

    assert (incremental.full, incremental.since, incremental.start.phase) == (
        False, SINCE, Phase.SEARCH
    )  # fmt: skip
    assert incremental.phases == (Phase.SEARCH, Phase.ARCHIVED)
    assert (full.full, full.since, full.start.phase) == (True, SINCE, Phase.LIST)


def test_an_interrupted_pass_resumes_with_its_kind_window_and_position_whatever_is_asked() -> None:
    saved = Cursor(since=SINCE, until=UNTIL - LAG, position="search:1234", full=False)

    plan = plan_pass(request(saved, full=True), LAG)

    assert (plan.full, plan.since, plan.until) == (False, SINCE, UNTIL - LAG)
    assert plan.start == Position(Phase.SEARCH, "1234")


def test_the_pass_never_ends_before_the_since_it_started_from() -> None:
    later = UNTIL + timedelta(seconds=5)

    plan = plan_pass(request(Cursor(since=later)), LAG)

    assert plan.window_is_empty
    assert plan.end_since == later
    assert not plan_pass(request(Cursor(since=UNTIL)), LAG).window_is_empty


def test_cursors_inside_a_pass_keep_since_until_and_kind_and_the_last_one_keeps_only_since() -> (
    None
):
    plan = plan_pass(request(Cursor(since=SINCE)), LAG)

    assert plan.cursor(Position(Phase.ARCHIVED)) == Cursor(
        since=SINCE, until=UNTIL, position="archived:", full=False
    )
    assert plan.cursor(None) == Cursor(since=UNTIL)


@pytest.mark.parametrize(
    "position",
    [Position(Phase.LIST, "abc"), Position(Phase.SEARCH, "99"), Position(Phase.ARCHIVED)],
)
def test_positions_survive_their_text_form(position: Position) -> None:
    assert Position.parse(position.encode()) == position


@pytest.mark.parametrize("text", ["", "list", "offset:3", "LIST:2"])
def test_a_position_of_another_kind_fails_and_says_to_run_a_full_sync(text: str) -> None:
    with pytest.raises(FatalConnectorError, match="run a full sync"):
        Position.parse(text)


def test_a_list_position_cannot_resume_an_incremental_pass() -> None:
    saved = Cursor(since=SINCE, until=UNTIL, position="list:5", full=False)

    with pytest.raises(FatalConnectorError, match="does not fit an incremental pass"):
        plan_pass(request(saved), LAG)


def test_epoch_milliseconds_round_down() -> None:
    assert epoch_ms(datetime(1970, 1, 1, 0, 0, 1, 999_999, tzinfo=UTC)) == 1_999
