"""The one place a customer's change is recorded: its version bumped, an entry logged.

Whatever changes a customer's billing-relevant state (a sync's writer, the readiness
refresh, a person's command, a CRM merge) notes the change in the transaction's
:class:`ChangeLog`; :meth:`ChangeLog.flush` then writes, in that transaction, one log
entry per changed customer and bumps its ``version`` by one, each as one batched
statement. A customer nothing changed about gets neither. The entries' primary key
(customer, version) is what keeps two writers from both logging one version: the
second one's transaction fails and is retried.

What differs is decided by :mod:`crmsync.domain.changes`; this module reads and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.batch import insert_rows, update_rows
from crmsync.adapters.sql import select_in
from crmsync.adapters.tables import customer_changes, customers
from crmsync.domain.changes import FieldChange, combine

__all__ = ["ChangeLog", "entries", "prune_change_log"]


class ChangeLog:
    """The changes made to customers in one transaction, for one cause.

    ``note`` as often as needed: the changes of one customer are combined into one
    entry (first old value, last new value). ``created`` customers were inserted at
    version 1 in this transaction: their entry is version 1.
    """

    def __init__(self, *, cause: str, at: datetime) -> None:
        self.cause = cause
        self.at = at
        self._changes: dict[str, list[FieldChange]] = {}
        self._created: set[str] = set()
        self.versions: dict[str, int] = {}
        """Versions read under the customers' locks (the refresh reads them)."""
        self._written: set[str] = set()
        """Customers whose bumped version a caller wrote already (see :meth:`bump`)."""

    def note(self, customer_id: str, changes: Iterable[FieldChange]) -> None:
        items = list(changes)
        if not items:
            return
        earlier = self._changes.get(customer_id)
        self._changes[customer_id] = combine(earlier, items) if earlier else items

    def created(self, customer_ids: Iterable[str]) -> None:
        for customer_id in customer_ids:
            self._created.add(customer_id)
            self.versions[customer_id] = 1

    def customers(self) -> set[str]:
        """The customers with changes noted (the refresh locks and reads them)."""
        return set(self._changes)

    def pending(self, customer_id: str) -> list[FieldChange]:
        return list(self._changes.get(customer_id, []))

    def bump(self, customer_id: str, stored: int) -> int | None:
        """For a caller about to write the customer's row anyway (the refresh): the
        version to write in it when the customer has changes noted (``stored``, read
        under the row's lock, plus one), else None. :meth:`flush` then logs the entry
        at that version without writing the row again."""
        if not self._changes.get(customer_id):
            return None
        if customer_id in self._created:
            return 1
        if customer_id not in self._written:
            self.versions[customer_id] = stored
            self._written.add(customer_id)
        return self.versions[customer_id] + 1

    def flush(self, conn: Connection, *, also: Mapping[str, Any] | None = None) -> set[str]:
        """Write the noted changes: one entry per changed customer. Returns the customers
        whose rows it updated (their version bumped), with the values of ``also`` set in
        the same update (a caller's own mark, one row write instead of two)."""
        changed = {cid: items for cid, items in self._changes.items() if items}
        self._changes = {}
        if not changed:
            return set()
        unknown = [cid for cid in changed if cid not in self.versions]
        for row in select_in(
            conn, [customers.c.id, customers.c.version], customers.c.id, unknown, lock=True
        ):
            self.versions[row.id] = row.version
        bumps: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        for cid in sorted(changed):
            if cid in self._created:
                version = 1
            else:
                version = self.versions[cid] + 1
                if cid not in self._written:
                    bumps.append(
                        {"id": cid, "version": version, "updated_at": self.at, **(also or {})}
                    )
            self.versions[cid] = version
            rows.append(
                {
                    "customer_id": cid,
                    "version": version,
                    "at": self.at,
                    "cause": self.cause[:200],
                    # stored compact, each as [field, old, new] (a FieldChange is a named
                    # tuple): entries() gives them as objects
                    "changes": changed[cid],
                }
            )
        self._created -= changed.keys()
        self._written -= changed.keys()
        update_rows(conn, customers, ["id"], bumps)
        insert_rows(conn, customer_changes, rows)
        return {row["id"] for row in bumps}


def entries(
    conn: Connection,
    customer_id: str,
    *,
    limit: int | None = None,
    after_version: int | None = None,
    newest_first: bool = True,
) -> list[dict[str, Any]]:
    """A customer's log entries, JSON-ready: version, at, cause, changes."""
    order = customer_changes.c.version
    stmt = sa.select(customer_changes).where(customer_changes.c.customer_id == customer_id)
    if after_version is not None:
        stmt = stmt.where(customer_changes.c.version > after_version)
    stmt = stmt.order_by(order.desc() if newest_first else order)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_entry_json(row._mapping) for row in conn.execute(stmt)]


def _entry_json(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "version": row["version"],
        "at": row["at"].isoformat(),
        "cause": row["cause"],
        "changes": [{"field": f, "old": old, "new": new} for f, old, new in row["changes"] or []],
    }


def prune_change_log(
    conn: Connection, older_than: datetime, keep_latest_per_customer: int = 1
) -> int:
    """Delete entries logged before ``older_than``, except each customer's latest
    ``keep_latest_per_customer`` (at least its latest one). Returns how many went."""
    keep = max(1, keep_latest_per_customer)
    newer = customer_changes.alias("newer")
    latest = (
        sa.select(sa.func.max(newer.c.version))
        .where(newer.c.customer_id == customer_changes.c.customer_id)
        .scalar_subquery()
    )
    # versions are consecutive: the latest ``keep`` are those above ``latest - keep``
    result = conn.execute(
        sa.delete(customer_changes).where(
            customer_changes.c.at < older_than, customer_changes.c.version <= latest - keep
        )
    )
    return int(result.rowcount)
