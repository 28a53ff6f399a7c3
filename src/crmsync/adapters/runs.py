"""Sync bookkeeping: cursors, run records, the quarantine, and per-connector leases."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.sql import insert_for, is_in
from crmsync.adapters.tables import quarantine, sync_leases, sync_runs, sync_state
from crmsync.sdk.records import BadRecord, Cursor, ObjectType

__all__ = [
    "RunCounts",
    "acquire_lease",
    "finish_run",
    "load_cursor",
    "quarantine_records",
    "release_lease",
    "resolve_quarantine",
    "save_cursor",
    "start_run",
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


def mark_abandoned(conn: Connection, connector: str, stale_before: datetime, now: datetime) -> int:
    """Close runs whose process died (no heartbeat since ``stale_before``)."""
    result = conn.execute(
        sa.update(sync_runs)
        .where(
            sync_runs.c.connector == connector,
            sync_runs.c.status == "running",
            sync_runs.c.heartbeat_at < stale_before,
        )
        .values(
            status="abandoned",
            finished_at=now,
            error="the process running this sync stopped without finishing it",
        )
    )
    return result.rowcount


def abandon_worker(conn: Connection, connector: str, worker: str, now: datetime) -> int:
    """Close the running runs of a worker known to be dead."""
    result = conn.execute(
        sa.update(sync_runs)
        .where(
            sync_runs.c.connector == connector,
            sync_runs.c.status == "running",
            sync_runs.c.worker == worker,
        )
        .values(
            status="abandoned",
            finished_at=now,
            error="the process running this sync stopped without finishing it",
        )
    )
    return result.rowcount


def _record_key(bad: BadRecord) -> str:
    if bad.external_id:
        return bad.external_id
    return "sha256:" + hashlib.sha256(bad.raw.encode()).hexdigest()


def quarantine_records(
    conn: Connection,
    connector: str,
    bad: Sequence[BadRecord],
    run_id: int | None,
    now: datetime,
) -> None:
    """Keep bad records with their reasons; seeing one again bumps its count."""
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
                "external_id": b.external_id,
                "raw": b.raw,
                "reason": b.reason,
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


def acquire_lease(
    conn: Connection,
    connector: str,
    owner: str,
    now: datetime,
    ttl: timedelta,
    *,
    take_from: str | None = None,
) -> str | None:
    """Take or renew the connector's lease; returns the current holder if someone else has it.

    The lease is free when nobody holds it or it expired; ``take_from`` also takes it
    from that holder (one known to be dead).
    """
    stmt = insert_for(conn, sync_leases).values(
        connector=connector, owner=owner, expires_at=now + ttl
    )
    free = [sync_leases.c.owner == owner, sync_leases.c.expires_at < now]
    if take_from is not None:
        free.append(sync_leases.c.owner == take_from)
    stmt = stmt.on_conflict_do_update(
        index_elements=[sync_leases.c.connector],
        set_={"owner": stmt.excluded.owner, "expires_at": stmt.excluded.expires_at},
        where=sa.or_(*free),
    )
    if conn.execute(stmt.returning(sync_leases.c.owner)).first() is not None:
        return None  # taken or renewed (one statement: this runs with every page)
    holder: Any = conn.execute(
        sa.select(sync_leases.c.owner).where(sync_leases.c.connector == connector)
    ).scalar_one()
    return None if holder == owner else str(holder)


def release_lease(conn: Connection, connector: str, owner: str) -> None:
    conn.execute(
        sa.delete(sync_leases).where(
            sync_leases.c.connector == connector, sync_leases.c.owner == owner
        )
    )
