"""Sync bookkeeping: cursors, run records, the quarantine, and per-connector leases."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.sql import insert_for, is_in
from crmsync.adapters.tables import quarantine, sync_runs, sync_state
from crmsync.sdk.records import BadRecord, Cursor, ObjectType

__all__ = [
    "RunCounts",
    "clear_quarantine",
    "finish_run",
    "forget_unseen_without_id",
    "last_sync_starts",
    "load_cursor",
    "quarantine_records",
    "resolve_quarantine",
    "save_cursor",
    "start_run",
    "storable_text",
    "update_run",
]


@dataclass(slots=True)
class RunCounts:
    """Record counts of a sync run."""

    seen: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    stale: int = 0
    """Records skipped because the store already held a newer version of them."""
    skipped: int = 0
    """Records with nothing to store: deleted in the CRM before crm-sync ever saw them."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def load_cursor(conn: Connection, connector: str, stream: ObjectType) -> Cursor | None:
    row = conn.execute(
        sa.select(sync_state.c.cursor).where(
            sync_state.c.connector == connector, sync_state.c.stream == stream.value
        )
    ).first()
    return None if row is None else Cursor.model_validate(row.cursor)


def save_cursor(
    conn: Connection, connector: str, stream: ObjectType, cursor: Cursor, now: datetime
) -> None:
    stmt = insert_for(conn, sync_state).values(
        connector=connector,
        stream=stream.value,
        cursor=cursor.model_dump(mode="json"),
        updated_at=now,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[sync_state.c.connector, sync_state.c.stream],
            set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at},
        )
    )


def start_run(conn: Connection, connector: str, mode: str, worker: str, now: datetime) -> int:
    result = conn.execute(
        sa.insert(sync_runs).returning(sync_runs.c.id),
        {
            "connector": connector,
            "mode": mode,
            "status": "running",
            "started_at": now,
            "heartbeat_at": now,
            "finished_at": None,
            "error": None,
            "worker": worker,
            **RunCounts().as_dict(),
        },
    )
    return int(result.scalar_one())


def last_sync_starts(
    conn: Connection, connectors: Sequence[str], *, excluding: Collection[str] = ()
) -> dict[str, dict[str, datetime]]:
    """When each connector's latest sync run of each mode (``full``, ``incremental``)
    started, leaving out runs whose status is in ``excluding``."""
    if not connectors:
        return {}
    rows = conn.execute(
        sa.select(sync_runs.c.connector, sync_runs.c.mode, sa.func.max(sync_runs.c.started_at))
        .where(
            sync_runs.c.connector.in_(list(connectors)),
            sync_runs.c.mode.in_(("full", "incremental")),
            sync_runs.c.status.not_in(list(excluding)),
        )
        .group_by(sync_runs.c.connector, sync_runs.c.mode)
    ).all()
    found: dict[str, dict[str, datetime]] = {}
    for connector, mode, started in rows:
        found.setdefault(connector, {})[mode] = started
    return found


def update_run(conn: Connection, run_id: int, counts: RunCounts, now: datetime) -> None:
    conn.execute(
        sa.update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(heartbeat_at=now, **counts.as_dict())
    )


def finish_run(
    conn: Connection,
    run_id: int,
    status: str,
    counts: RunCounts,
    now: datetime,
    error: str | None = None,
) -> None:
    conn.execute(
        sa.update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(status=status, finished_at=now, heartbeat_at=now, error=error, **counts.as_dict())
    )


MAX_QUARANTINE_RAW = 16_384
"""Characters of a bad record's raw text the quarantine keeps; longer text is cut and
ends with ``…[cut]``."""

MAX_QUARANTINE_REASON = 2_000
"""Characters of a reason the quarantine keeps (cut the same way)."""

_MAX_EXTERNAL_ID = 255  # the width of quarantine.external_id
_CUT = "…[cut]"


def storable_text(text: str, limit: int) -> str:
    """``text`` as every store can hold it, at most ``limit`` characters (plus the cut mark).

    PostgreSQL text cannot hold NUL: a NUL is written as the four characters ``\\x00``.
    A lone surrogate (a byte that did not decode, kept by ``surrogateescape``) cannot be
    encoded as UTF-8: it is written as its escape, e.g. ``\\udcfc``. Other control
    characters are kept as they are (readers escape them when they print).
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        return text[:limit] + _CUT
    return text


def _record_key(bad: BadRecord) -> str:
    """The quarantine key of a bad record: its external id, or a hash of its raw text.

    An id the store cannot hold as an id (over 255 characters, or with characters no
    store can hold) is hashed too, so it is never cut into another record's id.
    """
    external_id = _storable_id(bad.external_id)
    if external_id is not None:
        return external_id
    basis = bad.external_id if bad.external_id else bad.raw
    return "sha256:" + hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()


def _storable_id(external_id: str | None) -> str | None:
    if not external_id or len(external_id) > _MAX_EXTERNAL_ID:
        return None
    if storable_text(external_id, _MAX_EXTERNAL_ID) != external_id:
        return None
    return external_id


def quarantine_records(
    conn: Connection,
    connector: str,
    bad: Sequence[BadRecord],
    run_id: int | None,
    now: datetime,
) -> None:
    """Keep bad records with their reasons; seeing one again bumps its count.

    A record is keyed by its external id, or (without a usable one) by a hash of its
    raw text. Raw text and reason are stored bounded and storable on every backend
    (see :func:`storable_text`); ``last_seen_at`` is ``now`` for every record given.
    """
    if not bad:
        return
    latest = {(b.object_type.value, _record_key(b)): b for b in bad}
    stmt = insert_for(conn, quarantine)
    stmt = stmt.on_conflict_do_update(
        index_elements=[quarantine.c.connector, quarantine.c.object_type, quarantine.c.record_key],
        set_={
            "raw": stmt.excluded.raw,
            "reason": stmt.excluded.reason,
            "run_id": stmt.excluded.run_id,
            "last_seen_at": stmt.excluded.last_seen_at,
            "occurrences": quarantine.c.occurrences + 1,
        },
    )
    conn.execute(
        stmt,
        [
            {
                "connector": connector,
                "object_type": kind,
                "record_key": key,
                "external_id": _storable_id(b.external_id),
                "raw": storable_text(b.raw, MAX_QUARANTINE_RAW),
                "reason": storable_text(b.reason, MAX_QUARANTINE_REASON),
                "run_id": run_id,
                "occurrences": 1,
                "first_seen_at": now,
                "last_seen_at": now,
            }
            for (kind, key), b in sorted(latest.items())
        ],
    )


def resolve_quarantine(
    conn: Connection, connector: str, object_type: ObjectType, external_ids: Sequence[str]
) -> None:
    """Forget quarantined versions of records that have now arrived valid."""
    if not external_ids:
        return
    held = conn.execute(
        sa.select(quarantine.c.id)
        .where(quarantine.c.connector == connector, quarantine.c.object_type == object_type.value)
        .limit(1)
    ).first()
    if held is None:  # the usual case: one indexed probe instead of one per record
        return
    conn.execute(
        sa.delete(quarantine).where(
            quarantine.c.connector == connector,
            quarantine.c.object_type == object_type.value,
            is_in(conn, quarantine.c.record_key, external_ids),
        )
    )


def forget_unseen_without_id(
    conn: Connection, connector: str, object_type: ObjectType, seen_before: datetime
) -> int:
    """Delete the connector's id-less entries of ``object_type`` last seen before ``seen_before``.

    An entry without an external id (a row with no id, a line that could not be read)
    cannot be cleared by a later valid version of its record: it is kept only while
    passes keep delivering it. Call this after a pass that delivered every bad record
    the source holds, with the time the pass started; returns how many were deleted.
    """
    result = conn.execute(
        sa.delete(quarantine).where(
            quarantine.c.connector == connector,
            quarantine.c.object_type == object_type.value,
            quarantine.c.external_id.is_(None),
            quarantine.c.last_seen_at < seen_before,
        )
    )
    return int(result.rowcount)


def clear_quarantine(
    conn: Connection, *, connector: str | None, external_ids: Sequence[str]
) -> int:
    """Delete quarantine entries by hand; returns how many were deleted.

    With ``external_ids``: the entries of those external ids (of ``connector``, or of
    every connector when it is None). Without: every entry of ``connector``, or every
    entry at all when it is None as well.
    """
    conditions = []
    if connector is not None:
        conditions.append(quarantine.c.connector == connector)
    if external_ids:
        storable = [i for i in external_ids if _storable_id(i) is not None]
        if not storable:
            return 0  # no entry can hold such an id
        conditions.append(is_in(conn, quarantine.c.external_id, storable))
    result = conn.execute(sa.delete(quarantine).where(sa.true(), *conditions))
    return int(result.rowcount)
