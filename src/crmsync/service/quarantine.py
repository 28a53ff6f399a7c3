"""The quarantine: bad records kept with their reasons, and the ways entries leave it.

An entry leaves the quarantine when

* a valid version of its record arrives (the sync engine resolves it by external id);
* it has no external id (a row without an id, a line that could not be read) and a
  completed pass that delivers every bad record no longer delivers it
  (:func:`forget_unseen`, called by the engine with the pass' start time);
* a person clears it (:func:`clear`, behind ``crm-sync quarantine clear``).

Like :class:`crmsync.service.customers.CustomerService`, these functions run inside
the caller's transaction (``conn``) and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from crmsync.adapters import runs
from crmsync.sdk.records import ObjectType

__all__ = ["clear", "forget_unseen"]


def clear(conn: Connection, *, connector: str | None = None, ids: Sequence[str] = ()) -> int:
    """Delete quarantine entries by hand; returns how many were deleted.

    ``ids`` names external ids (as ``crm-sync quarantine`` shows them): their entries
    are deleted, of ``connector`` only when it is given. Without ``ids`` every entry
    of ``connector`` is deleted, or every entry of every connector when ``connector``
    is None too. An entry deleted for a record that is still bad comes back with the
    next sync that reads it.
    """
    wanted = tuple(dict.fromkeys(i.strip() for i in ids if i.strip()))
    if ids and not wanted:
        return 0  # only blank ids: never read as "clear everything"
    return runs.clear_quarantine(conn, connector=connector, external_ids=wanted)


def forget_unseen(
    conn: Connection, connector: str, object_type: ObjectType, seen_before: datetime
) -> int:
    """Delete ``connector``'s id-less entries of ``object_type`` not seen since ``seen_before``.

    Call it at the end of a completed pass that delivers every bad record the source
    holds, with the time the pass started: an id-less entry the pass did not deliver
    describes a problem the source no longer has. Returns how many were deleted.
    """
    return runs.forget_unseen_without_id(conn, connector, object_type, seen_before)
