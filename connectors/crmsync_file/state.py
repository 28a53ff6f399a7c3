"""How a pass over an export file starts, resumes and ends, as pure functions of the cursor.

The cursor of a stream (see :class:`crmsync.sdk.records.Cursor`) is used so:

``position``
    While a pass is under way: the number of rows already read and delivered in it
    (rows skipped by the ``since`` filter included). ``None`` between passes.
``since``
    The lower bound of the next incremental pass. During a pass it keeps the value
    the pass started with; the last page raises it to the greatest modification time
    delivered, capped at the pass' start (``until``), and never lowers it. A file
    without a modification column sets it to the file's own mtime (capped likewise),
    so that later runs are incremental passes and the fingerprint decides.
``until``
    While a pass is under way: the run start at which it began. ``None`` between passes.
``full``
    Whether the pass under way delivers every row (``False`` once it ended).
``extra``
    ``fingerprint`` of the file the pass reads (or the last pass read); during a pass,
    ``max_seen``: the greatest modification time delivered so far; after a pass,
    ``row_times``: whether the file had a modification column. A file that gains one
    after a pass without it is read in full once, since that ``since`` was its mtime.

A resume on a file whose fingerprint changed restarts the same kind of pass from
the first row: row numbers of a changed file mean nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import Cursor

__all__ = ["PassPlan", "checkpoint", "end_of_pass", "plan_pass"]

logger = logging.getLogger(__name__)

FINGERPRINT = "fingerprint"
MAX_SEEN = "max_seen"
ROW_TIMES = "row_times"


@dataclass(frozen=True, slots=True)
class PassPlan:
    """What a read does: skip rows, filter by ``since`` or not, or read nothing at all."""

    full: bool
    since: datetime | None
    until: datetime
    fingerprint: str
    skip: int = 0
    max_seen: datetime | None = None
    unchanged: bool = False
    """Nothing to read: an incremental pass over a file without modification times
    whose fingerprint matches the last pass'."""

    @property
    def lower_bound(self) -> datetime | None:
        """The inclusive bound rows are filtered by (``None``: every row)."""
        return None if self.full else self.since


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _resume_position(position: str) -> int | None:
    return int(position) if position.isascii() and position.isdigit() else None


def plan_pass(request: ReadRequest, fingerprint: str, *, has_modified: bool) -> PassPlan:
    """Decide how to read, from the request and the fingerprint of the file as it is now."""
    cursor = request.cursor or Cursor()
    if cursor.position is not None:
        until = cursor.until or request.started_at
        skip = _resume_position(cursor.position)
        if skip is not None and cursor.extra.get(FINGERPRINT) == fingerprint:
            max_seen = _parse_time(cursor.extra.get(MAX_SEEN))
            return PassPlan(cursor.full, cursor.since, until, fingerprint, skip, max_seen)
        logger.info(
            "%s: the file changed since the interrupted pass (or its position %r is not "
            "a row number); restarting the pass",
            request.stream,
            cursor.position,
        )
        return PassPlan(cursor.full, cursor.since, until, fingerprint)
    since_was_mtime = has_modified and cursor.extra.get(ROW_TIMES) is False
    full = request.full or cursor.since is None or since_was_mtime
    unchanged = not full and not has_modified and cursor.extra.get(FINGERPRINT) == fingerprint
    return PassPlan(full, cursor.since, request.started_at, fingerprint, unchanged=unchanged)


def checkpoint(plan: PassPlan, position: int, max_seen: datetime | None) -> Cursor:
    """The cursor of a page inside the pass: resume after row ``position``."""
    extra: dict[str, Any] = {FINGERPRINT: plan.fingerprint}
    if max_seen is not None:
        extra[MAX_SEEN] = max_seen.isoformat()
    return Cursor(
        since=plan.since, until=plan.until, position=str(position), full=plan.full, extra=extra
    )


def end_of_pass(plan: PassPlan, newest: datetime | None, *, row_times: bool) -> Cursor:
    """The cursor of the pass' last page.

    ``newest`` is the latest modification delivered, or the file's mtime when its rows
    have no modification times (``row_times`` false).
    """
    capped = min(newest, plan.until) if newest is not None else None
    extra = {FINGERPRINT: plan.fingerprint, ROW_TIMES: row_times}
    return Cursor(since=_later(plan.since, capped), extra=extra)
