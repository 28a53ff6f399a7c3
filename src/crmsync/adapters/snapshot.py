"""What a complete export no longer holds: the store side of snapshot passes.

A source whose full pass delivers every record it has (an export file; see
``ReadPlan.full_pass_is_snapshot``) tells deletions by absence. While such a pass runs,
each page stamps the records it delivered (``seen_at``); the stream's state keeps when
the pass began, so a pass resumed by a later run still knows. When the pass completes,
the records of the connector not stamped since then are the ones the source removed.
Nothing is erased: the engine applies them as deletions (tombstones), which hold their
customers as ``source_deleted``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.sql import chunks
from crmsync.adapters.tables import contacts, external_refs, sync_state
from crmsync.sdk.records import ObjectType

__all__ = ["live_count", "mark_seen", "pass_started_at", "start_pass", "unseen"]


def start_pass(conn: Connection, connector: str, stream: ObjectType, when: datetime | None) -> None:
    """Remember when the full pass under way began (``None``: no pass is under way)."""
    conn.execute(
        sa.update(sync_state)
        .where(sync_state.c.connector == connector, sync_state.c.stream == stream.value)
        .values(pass_started_at=when)
    )


def pass_started_at(conn: Connection, connector: str, stream: ObjectType) -> datetime | None:
    """When the full pass under way began, if one is (and was begun by this crm-sync)."""
    found: datetime | None = conn.execute(
        sa.select(sync_state.c.pass_started_at).where(
            sync_state.c.connector == connector, sync_state.c.stream == stream.value
        )
    ).scalar_one_or_none()
    return found


def mark_seen(
    conn: Connection, connector: str, stream: ObjectType, ids: Iterable[str], when: datetime
) -> None:
    """Stamp the records a page of a snapshot pass delivered."""
    for batch in chunks(list(dict.fromkeys(ids))):
        if stream is ObjectType.COMPANY:
            conn.execute(
                sa.update(external_refs)
                .where(
                    external_refs.c.connector == connector,
                    external_refs.c.object_type == stream.value,
                    external_refs.c.external_id.in_(batch),
                )
                .values(seen_at=when)
            )
        else:
            conn.execute(
                sa.update(contacts)
                .where(contacts.c.connector == connector, contacts.c.external_id.in_(batch))
                .values(seen_at=when)
            )


def _live(connector: str, stream: ObjectType) -> tuple[sa.Table, list[sa.ColumnElement[bool]]]:
    if stream is ObjectType.COMPANY:
        return external_refs, [
            external_refs.c.connector == connector,
            external_refs.c.object_type == stream.value,
            external_refs.c.deleted_at.is_(None),
            external_refs.c.merged_into.is_(None),
        ]
    return contacts, [contacts.c.connector == connector, contacts.c.removed_at.is_(None)]


def live_count(conn: Connection, connector: str, stream: ObjectType) -> int:
    """How many records of the stream the store holds as present at the source."""
    table, where = _live(connector, stream)
    return int(
        conn.execute(
            sa.select(sa.func.count(sa.distinct(table.c.external_id))).where(*where)
        ).scalar_one()
    )


def unseen(conn: Connection, connector: str, stream: ObjectType, since: datetime) -> list[str]:
    """The ids of present records the pass begun at ``since`` did not deliver."""
    table, where = _live(connector, stream)
    stmt = (
        sa.select(table.c.external_id)
        .distinct()
        .where(*where, sa.or_(table.c.seen_at.is_(None), table.c.seen_at < since))
        .order_by(table.c.external_id)
    )
    return [row.external_id for row in conn.execute(stmt)]
