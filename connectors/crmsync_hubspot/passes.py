"""Where a pass over one stream stands, and how that is written into the engine's cursor.

A **full** pass reads the live list (``GET /crm/v3/objects/{type}``, in id order) and
then the archived list (``archived=true``). An **incremental** pass searches for
records modified in ``[since, until]`` and then reads the archived list, keeping the
records archived at or after ``since`` (search never returns archived records).

``until`` is fixed when the pass starts: the run's start minus the search lag,
truncated to HubSpot's millisecond precision. It is kept in the cursor, so a resumed
pass reads the same window; the pass ends with ``since = max(since, until)``.

``Cursor.position`` is ``"<phase>:<token>"``:

========================  =============================================================
``list:<after>``          the live list resumes at HubSpot's ``after`` token
``search:<last id>``      the search resumes with ``hs_object_id > last id``
``archived:<after>``      the archived list resumes at ``after`` (empty: from its start)
========================  =============================================================

The search never pages with ``after``: every page is a new query from the last id
seen (keyset paging, sorted by ``hs_object_id``). A search can page through at most
10,000 results and its offsets shift when a record leaves the window during the pass
(it was modified again); restarting from the last id avoids both, at no extra cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from crmsync.errors import FatalConnectorError
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import Cursor

__all__ = ["PassPlan", "Phase", "Position", "epoch_ms", "plan_pass"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (rounded down), as HubSpot's filters take them."""
    return (moment - _EPOCH) // _MILLISECOND


class Phase(StrEnum):
    """The parts of a pass, in the order they are read."""

    LIST = "list"
    SEARCH = "search"
    ARCHIVED = "archived"


@dataclass(frozen=True, slots=True)
class Position:
    """A phase and the token to resume it from (``None``: from its start)."""

    phase: Phase
    token: str | None = None

    def encode(self) -> str:
        return f"{self.phase.value}:{self.token or ''}"

    @classmethod
    def parse(cls, text: str) -> Position:
        phase, separator, token = text.partition(":")
        if not separator or phase not in Phase.__members__.values():
            raise FatalConnectorError(
                f"the saved cursor position {text!r} is not a HubSpot position; "
                "run a full sync to start over"
            )
        return cls(Phase(phase), token or None)


@dataclass(frozen=True, slots=True)
class PassPlan:
    """One pass over one stream: its kind, its window and where it starts."""

    full: bool
    since: datetime | None
    until: datetime
    start: Position

    @property
    def phases(self) -> tuple[Phase, ...]:
        """Every phase of this kind of pass, in order."""
        return (Phase.LIST, Phase.ARCHIVED) if self.full else (Phase.SEARCH, Phase.ARCHIVED)

    @property
    def end_since(self) -> datetime:
        """The ``since`` the pass ends with: never before the one it started from."""
        return self.until if self.since is None else max(self.since, self.until)

    @property
    def window_is_empty(self) -> bool:
        """Whether no modification time lies in ``[since, until]`` (runs close together)."""
        return self.since is not None and epoch_ms(self.until) < epoch_ms(self.since)

    def cursor(self, position: Position | None) -> Cursor:
        """The cursor after a page: in the pass at ``position``, or ending it (``None``)."""
        if position is None:
            return Cursor(since=self.end_since)
        return Cursor(
            since=self.since, until=self.until, position=position.encode(), full=self.full
        )


def plan_pass(request: ReadRequest, lag: timedelta) -> PassPlan:
    """Resume the interrupted pass, or start a full or an incremental one (see ReadRequest)."""
    cursor = request.cursor or Cursor()
    fresh_until = _to_ms(request.started_at - lag)
    if cursor.position is not None:  # cursor.in_pass: resume the interrupted pass
        start = Position.parse(cursor.position)
        until = cursor.until or fresh_until
        if start.phase not in PassPlan(cursor.full, cursor.since, until, start).phases:
            raise FatalConnectorError(
                f"the saved cursor position {cursor.position!r} does not fit "
                f"{'a full' if cursor.full else 'an incremental'} pass; run a full sync"
            )
        return PassPlan(cursor.full, cursor.since, until, start)
    full = request.full or cursor.since is None
    start = Position(Phase.LIST if full else Phase.SEARCH)
    return PassPlan(full, cursor.since, fresh_until, start)


def _to_ms(moment: datetime) -> datetime:
    return _EPOCH + epoch_ms(moment) * _MILLISECOND
