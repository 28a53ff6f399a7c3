"""Where a pass over one stream stands, and how that is written into the engine's cursor.

A **full** pass reads every row of the object through ``queryAll`` (deleted and merged
rows included), ordered by ``SystemModstamp, Id``. An **incremental** pass reads the rows
with ``SystemModstamp`` in ``[since, until]`` the same way, then (contacts only) the
contacts whose ``AccountContactRelation`` rows changed in the window, then the ids the
getDeleted log reports deleted in it (records purged from the recycle bin, which
queryAll no longer returns).

``until`` is fixed when the pass starts: the run's start minus the lag, to the whole
second (Salesforce compares dateTimes to the second). It is kept in the cursor, so a
resumed pass reads the same window; the pass ends with ``since = max(since, until)``.

``Cursor.position`` is ``"<phase>:<token>"``:

==============================  ========================================================
``query:<stamp>|<id>|<skip>``   restart the query after the row (``stamp``, ``id``) and
                                skip ``skip`` rows (unreadable ones already reported);
                                an empty token: from the start
``accounts:<account>|<id>|<skip>``  full passes over contacts: the same, ordered by
                                ``AccountId`` (``~``: none), then ``Id``
``relations:<stamp>|<id>|0``    the same over AccountContactRelation
``deleted:<offset>``            the getDeleted answer, from its ``offset``-th id
==============================  ========================================================

Query answers are followed through ``nextRecordsUrl`` within a run; a resumed pass
restarts the query with ``(SystemModstamp > stamp OR (SystemModstamp = stamp AND Id > id))``
(keyset paging). Records sharing one ``SystemModstamp`` are ordered by ``Id``, so however
many share it, none is lost or read twice.

A full pass over contacts reads them ordered by ``AccountId, Id`` instead (keyset
``(AccountId > a OR (AccountId = a AND Id > id))``): the contacts of one account then
arrive together, and the store refreshes each customer once instead of once per page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from crmsync.errors import FatalConnectorError
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import Cursor

__all__ = ["NO_ACCOUNT", "Keyset", "PassPlan", "Phase", "Position", "plan_pass", "to_second"]

NO_ACCOUNT = "~"
"""The keyset value of a contact without an AccountId (no Id contains it)."""


def to_second(moment: datetime) -> datetime:
    """``moment`` without its fraction of a second."""
    return moment.replace(microsecond=0)


class Phase(StrEnum):
    """The parts of a pass, in the order they are read."""

    QUERY = "query"
    ACCOUNTS = "accounts"
    RELATIONS = "relations"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Keyset:
    """Where a query resumes: after the row (``key``, ``id``), skipping ``skip`` more rows.

    ``key`` is the row's value of the first sort field: a SOQL dateTime literal
    (SystemModstamp) or an AccountId (:data:`NO_ACCOUNT` for none). Without a row (``key``
    and ``id`` empty) the query restarts from its start and skips ``skip`` rows
    (unreadable rows reported before any readable one).
    """

    key: str = ""
    id: str = ""
    skip: int = 0

    def encode(self) -> str:
        return f"{self.key}|{self.id}|{self.skip}"

    def after_unreadable(self) -> Keyset:
        """The keyset once one more row (an unreadable one) was delivered."""
        return Keyset(self.key, self.id, self.skip + 1)

    @classmethod
    def parse(cls, text: str) -> Keyset:
        if not text:
            return cls()
        parts = text.split("|")
        if len(parts) != 3 or not parts[2].isdigit() or bool(parts[0]) != bool(parts[1]):
            raise FatalConnectorError(
                f"the saved cursor position {text!r} is not a Salesforce keyset; "
                "run a full sync to start over"
            )
        return cls(parts[0], parts[1], int(parts[2]))


@dataclass(frozen=True, slots=True)
class Position:
    """A phase and the token to resume it from (``""``: from its start)."""

    phase: Phase
    token: str = ""

    def encode(self) -> str:
        return f"{self.phase.value}:{self.token}"

    @classmethod
    def parse(cls, text: str) -> Position:
        phase, separator, token = text.partition(":")
        if not separator or phase not in Phase.__members__.values():
            raise FatalConnectorError(
                f"the saved cursor position {text!r} is not a Salesforce position; "
                "run a full sync to start over"
            )
        return cls(Phase(phase), token)


@dataclass(frozen=True, slots=True)
class PassPlan:
    """One pass over one stream: its kind, its window and where it starts."""

    full: bool
    since: datetime | None
    until: datetime
    start: Position

    @property
    def end_since(self) -> datetime:
        """The ``since`` the pass ends with: never before the one it started from."""
        return self.until if self.since is None else max(self.since, self.until)

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
    fresh_until = to_second(request.started_at - lag)
    if cursor.position is not None:  # cursor.in_pass: resume the interrupted pass
        start = Position.parse(cursor.position)
        if cursor.full and start.phase not in (Phase.QUERY, Phase.ACCOUNTS):
            raise FatalConnectorError(
                f"the saved cursor position {cursor.position!r} does not fit a full pass; "
                "run a full sync"
            )
        return PassPlan(cursor.full, cursor.since, cursor.until or fresh_until, start)
    full = request.full or cursor.since is None
    return PassPlan(full, cursor.since, fresh_until, Position(Phase.QUERY))
