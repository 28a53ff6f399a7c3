"""Where a pass over one Pipedrive entity stands, and the cursors that say so.

A **full pass** pages through the whole list in id order. An **incremental pass** pages
through the records updated in ``[since, until]`` (``updated_since`` is inclusive;
``until`` is the run's start, so a record changed while the run goes on is left to the
next run) in update order. Pipedrive's ``next_cursor`` is the position.

``updated_since`` is inclusive, so the records updated at exactly ``since`` were already
delivered by the pass before. The cursor ending a pass keeps their ids (``boundary``, at
most :data:`MAX_BOUNDARY` of them) and the next pass skips a record it finds there with
that same update time: an unchanged record is not delivered twice, a record updated
again (a later time) is. A pass ends with ``since`` = the newest update time it saw,
never past the run's start.

Cursor layout: between passes ``Cursor(since, extra={"boundary": [...]})``; during a
pass ``Cursor(since, until, position=next_cursor, full, extra={"skip", "newest",
"at_newest"})``, from which a restarted process resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import Cursor

__all__ = ["MAX_BOUNDARY", "PassState"]

MAX_BOUNDARY = 1_000
"""Most ids kept to skip at the boundary; beyond it the boundary is re-delivered (the
store recognises unchanged records by their content hash)."""


def _ids(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


@dataclass(slots=True)
class PassState:
    """One pass' bounds and what it has seen so far; :meth:`observe` each raw record."""

    full: bool
    previous_since: datetime | None
    """The ``since`` the pass started from (kept in its in-pass cursors)."""
    until: datetime
    position: str | None = None
    skip: frozenset[str] = frozenset()
    newest: datetime | None = None
    at_newest: list[str] | None = field(default_factory=list)
    """Ids seen at ``newest`` (``None``: more than :data:`MAX_BOUNDARY`)."""

    @classmethod
    def start(cls, request: ReadRequest) -> PassState:
        """The pass the request asks for: resumed, full or incremental."""
        cursor = request.cursor or Cursor()
        extra = cursor.extra
        if cursor.in_pass:
            at_newest = extra.get("at_newest", [])
            return cls(
                full=cursor.full,
                previous_since=cursor.since,
                until=cursor.until or request.started_at,
                position=cursor.position,
                skip=frozenset(_ids(extra.get("skip"))),
                newest=_time(extra.get("newest")),
                at_newest=_ids(at_newest) if at_newest is not None else None,
            )
        full = request.full or cursor.since is None
        skip = frozenset() if full else frozenset(_ids(extra.get("boundary")))
        return cls(full=full, previous_since=cursor.since, until=request.started_at, skip=skip)

    @property
    def since(self) -> datetime | None:
        """The lower bound of this pass' window (``None`` in a full pass)."""
        return None if self.full else self.previous_since

    def observe(self, record_id: str | None, updated: datetime | None) -> bool:
        """Note a raw record; say whether to deliver it (``False``: delivered last pass)."""
        if updated is not None and record_id is not None:
            if self.newest is None or updated > self.newest:
                self.newest, self.at_newest = updated, [record_id]
            elif updated == self.newest and self.at_newest is not None:
                self.at_newest.append(record_id)
                if len(self.at_newest) > MAX_BOUNDARY:
                    self.at_newest = None
        skip = self.since is not None and updated == self.since and record_id in self.skip
        return not skip

    def in_pass(self, position: str) -> Cursor:
        """The cursor resuming right after the page whose next cursor is ``position``."""
        self.position = position
        extra: dict[str, object] = {"skip": sorted(self.skip), "at_newest": self.at_newest}
        if self.newest is not None:
            extra["newest"] = self.newest.isoformat()
        return Cursor(
            since=self.previous_since,
            until=self.until,
            position=position,
            full=self.full,
            extra=extra,
        )

    def ended(self) -> Cursor:
        """The cursor ending the pass: the newest update time seen, capped at the run start."""
        if self.newest is None:
            return Cursor(since=self.previous_since if self.previous_since else self.until)
        if self.newest > self.until:
            since = self.until
            boundary: list[str] | None = None
        else:
            since, boundary = self.newest, self.at_newest
        if self.previous_since is not None and since < self.previous_since:
            return Cursor(since=self.previous_since)
        extra: dict[str, object] = {"boundary": sorted(boundary)} if boundary else {}
        return Cursor(since=since, extra=extra)
