"""The webhook inbox in the store: events stored on arrival, claimed, settled.

Every write here is safe to repeat and safe under concurrency as the database decides
it:

- an event is stored with ``ON CONFLICT DO NOTHING`` on (connector, event key), so a
  re-delivery, or two deliveries racing with the same event, store it once;
- a claim is one ``UPDATE`` of the due events that pushes their ``next_attempt_at`` past
  the claim's end (a visibility timeout): on PostgreSQL the events are picked with
  ``FOR UPDATE SKIP LOCKED``, so workers claiming at the same time never take the same
  event and never wait for each other; on SQLite the writer holds the file. An event
  whose worker died comes back when the claim ends;
- settling is conditional on the event still being pending: marking one done twice, or
  a late failure after another worker applied it, changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.batch import insert_for
from crmsync.adapters.tables import webhook_inbox
from crmsync.domain.inbox import EventStatus

__all__ = [
    "InboxDepth",
    "StoredEvent",
    "add_events",
    "claim_due",
    "depth",
    "due_connectors",
    "list_events",
    "mark_done",
    "mark_failed",
    "prune_done",
    "release",
    "requeue",
]

_PENDING = EventStatus.PENDING.value
_t = webhook_inbox


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One inbox row."""

    id: int
    connector: str
    event_key: str
    action: str
    object_type: str
    external_id: str
    merged_ids: tuple[str, ...]
    related_ids: tuple[str, ...]
    occurred_at: datetime | None
    received_at: datetime
    attempts: int
    next_attempt_at: datetime
    status: str
    last_error: str | None
    processed_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> StoredEvent:
        m = row._mapping
        return cls(
            id=m["id"],
            connector=m["connector"],
            event_key=m["event_key"],
            action=m["action"],
            object_type=m["object_type"],
            external_id=m["external_id"],
            merged_ids=tuple(m["merged_ids"] or ()),
            related_ids=tuple(m["related_ids"] or ()),
            occurred_at=m["occurred_at"],
            received_at=m["received_at"],
            attempts=m["attempts"],
            next_attempt_at=m["next_attempt_at"],
            status=m["status"],
            last_error=m["last_error"],
            processed_at=m["processed_at"],
        )


def add_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """Store new events (dicts with every column but the id and the settling ones); returns
    the (connector, event key) of those the inbox did not hold. Rows are inserted in key
    order, so two deliveries sharing events lock them in the same order."""
    if not rows:
        return set()
    ordered = sorted(rows, key=lambda row: (row["connector"], row["event_key"]))
    stmt = (
        insert_for(conn, _t)
        .on_conflict_do_nothing(index_elements=[_t.c.connector, _t.c.event_key])
        .returning(_t.c.connector, _t.c.event_key)
    )
    return {(row[0], row[1]) for row in conn.execute(stmt, ordered)}


def claim_due(
    conn: Connection, connector: str, now: datetime, *, limit: int, hold: timedelta
) -> list[StoredEvent]:
    """Claim up to ``limit`` due events of ``connector``, oldest first: their attempts go
    up by one and they are not due again before ``now + hold`` (unless settled)."""
    due = (
        sa.select(_t.c.id)
        .where(_t.c.connector == connector, _t.c.status == _PENDING, _t.c.next_attempt_at <= now)
        .order_by(_t.c.next_attempt_at, _t.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        sa.update(_t)
        .where(_t.c.id.in_(due.scalar_subquery()))
        .values(attempts=_t.c.attempts + 1, next_attempt_at=now + hold)
        .returning(*_t.c)
    )
    claimed = [StoredEvent.from_row(row) for row in conn.execute(stmt)]
    return sorted(claimed, key=lambda e: e.id)


def mark_done(conn: Connection, ids: Sequence[int], now: datetime) -> int:
    """Settle applied events (those still pending); returns how many changed."""
    if not ids:
        return 0
    result = conn.execute(
        sa.update(_t)
        .where(_t.c.id.in_(list(ids)), _t.c.status == _PENDING)
        .values(status=EventStatus.DONE.value, processed_at=now, last_error=None)
    )
    return int(result.rowcount)


def mark_failed(
    conn: Connection,
    ids: Sequence[int],
    *,
    status: EventStatus,
    next_attempt_at: datetime,
    error: str,
    now: datetime,
) -> int:
    """Record a failed attempt of events still pending: retried from ``next_attempt_at``,
    or set aside (``FAILED``) with ``error`` as the reason."""
    if not ids:
        return 0
    values: dict[str, Any] = {
        "status": status.value,
        "next_attempt_at": next_attempt_at,
        "last_error": error,
    }
    if status is EventStatus.FAILED:
        values["processed_at"] = now
    result = conn.execute(
        sa.update(_t).where(_t.c.id.in_(list(ids)), _t.c.status == _PENDING).values(values)
    )
    return int(result.rowcount)


def release(conn: Connection, ids: Sequence[int], now: datetime) -> int:
    """Hand claimed events back untried (a worker stopping): due now, the claim's attempt
    not counted."""
    if not ids:
        return 0
    untried = sa.case((_t.c.attempts > 0, _t.c.attempts - 1), else_=0)
    result = conn.execute(
        sa.update(_t)
        .where(_t.c.id.in_(list(ids)), _t.c.status == _PENDING)
        .values(next_attempt_at=now, attempts=untried)
    )
    return int(result.rowcount)


def due_connectors(conn: Connection, now: datetime) -> list[str]:
    """The connectors with events due now."""
    rows = conn.execute(
        sa.select(_t.c.connector)
        .where(_t.c.status == _PENDING, _t.c.next_attempt_at <= now)
        .group_by(_t.c.connector)
    )
    return sorted(row.connector for row in rows)


def list_events(
    conn: Connection,
    *,
    status: EventStatus | None = None,
    connector: str | None = None,
    limit: int = 100,
) -> list[StoredEvent]:
    """Events newest first, of one status and connector when given."""
    stmt = sa.select(_t).order_by(_t.c.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(_t.c.status == status.value)
    if connector is not None:
        stmt = stmt.where(_t.c.connector == connector)
    return [StoredEvent.from_row(row) for row in conn.execute(stmt)]


def requeue(
    conn: Connection, now: datetime, *, ids: Sequence[int] = (), failed: bool = False
) -> list[StoredEvent]:
    """Make events due again as new (attempts 0, no error): the given ids whatever their
    status, and with ``failed`` every event set aside. Returns them."""
    where: list[sa.ColumnElement[bool]] = []
    if ids:
        where.append(_t.c.id.in_(list(ids)))
    if failed:
        where.append(_t.c.status == EventStatus.FAILED.value)
    if not where:
        return []
    stmt = (
        sa.update(_t)
        .where(sa.or_(*where))
        .values(
            status=_PENDING, attempts=0, next_attempt_at=now, last_error=None, processed_at=None
        )
        .returning(*_t.c)
    )
    return sorted((StoredEvent.from_row(row) for row in conn.execute(stmt)), key=lambda e: e.id)


def prune_done(conn: Connection, older_than: datetime) -> int:
    """Forget events applied before ``older_than`` (a re-delivery after that is applied
    again, which is harmless)."""
    result = conn.execute(
        sa.delete(_t).where(_t.c.status == EventStatus.DONE.value, _t.c.processed_at < older_than)
    )
    return int(result.rowcount)


@dataclass(frozen=True, slots=True)
class InboxDepth:
    """The pending events of a connector and when the oldest of them arrived."""

    connector: str
    pending: int
    failed: int
    oldest_pending: datetime | None


def depth(conn: Connection) -> list[InboxDepth]:
    """Pending and set-aside events per connector (for the metrics)."""
    rows = conn.execute(
        sa.select(
            _t.c.connector,
            _t.c.status,
            sa.func.count(),
            sa.func.min(_t.c.received_at),
        )
        .where(_t.c.status.in_([_PENDING, EventStatus.FAILED.value]))
        .group_by(_t.c.connector, _t.c.status)
    )
    found: dict[str, dict[str, Any]] = {}
    for connector, status, count, oldest in rows:
        entry = found.setdefault(connector, {"pending": 0, "failed": 0, "oldest": None})
        entry[status] = int(count)
        if status == _PENDING:
            entry["oldest"] = oldest
    return [
        InboxDepth(name, entry["pending"], entry["failed"], entry["oldest"])
        for name, entry in sorted(found.items())
    ]
