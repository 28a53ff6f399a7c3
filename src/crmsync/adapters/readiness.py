"""Re-applying the domain rules to stored customers after anything about them changed.

:func:`refresh_customers` locks a batch of customers, loads what the rules need,
asks the domain who the primary billing contact is and whether each customer is
ready, and writes back only what differs: the contacts' billing preferences (the
old primary is demoted before the new one is promoted, so the one-primary index
never trips) and the customer's ``ready`` flag and ``blocked_reasons``.

A writer hands over the contact rows it is about to insert or update as
:class:`ContactChanges`; the refresh decides on them together with the stored rows
and writes them in their final state (a new primary billing contact is inserted as
primary, its address checked once), under the same customer locks.
:func:`new_customer_readiness` gives the same answer for a customer about to be
created from a CRM record, so that it can be inserted in its final state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.batch import copy_rows, update_rows
from crmsync.adapters.changelog import ChangeLog
from crmsync.adapters.sql import chunks, is_in
from crmsync.adapters.tables import contacts, customers, external_refs
from crmsync.domain import (
    Address,
    BillingPreference,
    BlockedReason,
    ContactOrigin,
    ContactView,
    CustomerView,
    PrimarySource,
    TaxStatus,
    assess,
    check_email,
    choose_primary,
)
from crmsync.domain.changes import (
    FieldChange,
    blocked_codes,
    contact_summary,
    contact_write,
    merged_reason,
    set_changes,
)
from crmsync.domain.readiness import Judgement, judge

__all__ = [
    "ContactChanges",
    "OrderFor",
    "email_valid",
    "mark_pending",
    "new_customer_readiness",
    "pending_count",
    "refresh_customers",
    "refresh_pending",
    "write_deferred",
]

OrderFor = Callable[[str | None], Sequence[PrimarySource]]
"""Maps a customer's first connector (or None) to its primary-contact order."""

_PRIMARY = BillingPreference.PRIMARY.value
_STANDARD = BillingPreference.STANDARD.value

#: The unique key of a contact membership: one row per (customer, CRM contact).
MEMBERSHIP_KEY = ("customer_id", "connector", "external_id")


@dataclass(slots=True)
class ContactChanges:
    """Contact rows a writer decided on and has not written: the refresh writes them.

    ``inserts`` are whole ``contacts`` rows; ``updates`` are ``(customer id, values)``
    with the row's ``id`` among the values. Their ``billing_preference`` and
    ``email_valid`` are decided by the refresh.
    """

    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    before: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """The stored rows the updates change (``id``, ``name``, ``email``,
    ``billing_preference``, ``removed_at``), by contact id: what the change log
    compares with when the contacts are written ahead of the refresh."""

    def customers(self) -> set[str]:
        return {row["customer_id"] for row in self.inserts} | {cid for cid, _ in self.updates}


def customer_view(
    row: Mapping[Any, Any], contact_count: int, deleted_in: Sequence[str]
) -> CustomerView:
    """The domain's view of a ``customers`` row (its mapping, or the values to insert)."""
    return CustomerView(
        company_name=row["company_name"],
        address=Address(
            line1=row["line1"],
            line2=row["line2"],
            city=row["city"],
            state=row["state"],
            postal_code=row["postal_code"],
            country=row["country"],
        ),
        tax_status=TaxStatus(row["tax_status"]) if row["tax_status"] else None,
        contact_count=contact_count,
        archived=row["archived_at"] is not None,
        source_deleted=tuple(sorted(deleted_in)),
        alias_conflicts=tuple(row["alias_conflicts"] or ()),
    )


def email_valid(row: Any) -> bool:
    """Whether a ``contacts`` row's email address is valid: as stored once checked, else checked."""
    return _checked(row._mapping)


def _checked(row: Mapping[str, Any]) -> bool:
    known = row["email_valid"]
    return bool(known) if known is not None else check_email(row["email"]).valid


def contact_view(row: Mapping[str, Any], *, valid: bool | None = None) -> ContactView:
    """The domain's view of a contact row (a mapping of ``contacts`` columns).

    ``valid`` is the email check's outcome when the caller has it; without it, an
    address not checked yet counts as not valid (the rules only look at the
    primary's, which the refresh checks).
    """
    return ContactView(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        email_valid=bool(row["email_valid"]) if valid is None else valid,
        origin=ContactOrigin(row["origin"]),
        crm_designated=row["crm_designated"],
        designated_at=row["designated_at"],
    )


# Only the columns the rules read: every column a row carries costs conversion time.
_CUSTOMER_COLUMNS = (
    customers.c.id,
    customers.c.company_name,
    customers.c.line1,
    customers.c.line2,
    customers.c.city,
    customers.c.state,
    customers.c.postal_code,
    customers.c.country,
    customers.c.tax_status,
    customers.c.manual_primary_contact_id,
    customers.c.manual_primary_set_at,
    customers.c.alias_conflicts,
    customers.c.ready,
    customers.c.blocked_reasons,
    customers.c.archived_at,
    customers.c.version,
    customers.c.merged_into,
    customers.c.refresh_pending,
)
_CONTACT_COLUMNS = (
    contacts.c.id,
    contacts.c.customer_id,
    contacts.c.name,
    contacts.c.email,
    contacts.c.email_valid,
    contacts.c.origin,
    contacts.c.crm_designated,
    contacts.c.designated_at,
    contacts.c.billing_preference,
    contacts.c.connector,
    contacts.c.external_id,
)

#: Customers refreshed per round of queries (each list is bound as one parameter).
_BATCH = 1_000
#: Customers a deferred refresh takes per transaction: all their contacts are read at
#: once, and a customer of a large CRM account can have hundreds.
_PENDING_BATCH = 250


def _stored(reasons: Sequence[BlockedReason]) -> list[dict[str, str]]:
    """Blocked reasons as the ``blocked_reasons`` column holds them."""
    return [{"code": r.code.value, "message": r.message} for r in reasons]


def new_customer_readiness(
    values: Mapping[str, Any], *, order: Sequence[PrimarySource]
) -> tuple[bool, list[dict[str, str]]]:
    """``ready`` and ``blocked_reasons`` for a customer row about to be inserted.

    This is what :func:`refresh_customers` computes for it right after the insert:
    no contacts, no hand-made choices, not deleted at the source; so the row can be
    created in its final state instead of being read back and updated. ``order`` is
    the primary-contact order of the connector creating it.
    """
    reasons = assess(customer_view(values, 0, ()), choose_primary((), order=order), None)
    return not reasons, _stored(reasons)


def refresh_customers(
    conn: Connection,
    ids: Iterable[str],
    *,
    order_for: OrderFor,
    now: datetime,
    changes: ContactChanges | None = None,
    log: ChangeLog | None = None,
) -> int:
    """Recompute primary contacts and readiness, writing ``changes`` on the way.

    What changed about each customer (readiness, primary contact, contacts) is noted in
    ``log``, together with what the caller noted there before; the caller flushes it.
    Without a log, the changes are logged here, as caused by a readiness refresh. The
    customers whose versions ``log`` will bump are among ``ids`` (they are locked here).
    Returns how many customers' readiness or primary contact changed.
    """
    own = log is None
    changelog = ChangeLog(cause="readiness refresh", at=now) if log is None else log
    pending = changes or ContactChanges()
    wanted = set(ids) | pending.customers()
    inserts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in pending.inserts:
        inserts[row["customer_id"]].append(row)
    updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cid, values in pending.updates:
        updates[cid].append(values)
    changed = 0
    for batch in chunks(sorted(wanted), _BATCH):
        changed += _refresh_batch(conn, batch, order_for, now, inserts, updates, changelog)
    if own:
        changelog.flush(conn)
    return changed


def primary_value(row: Mapping[Any, Any] | ContactView | None) -> dict[str, Any] | None:
    """The primary billing contact as a change log entry records it."""
    if row is None:
        return None
    if isinstance(row, ContactView):
        return {"id": row.id, "name": row.name, "email": row.email}
    return contact_summary(row)


def write_deferred(conn: Connection, changes: ContactChanges, log: ChangeLog) -> set[str]:
    """Write a writer's contact rows now and leave the primary contact and readiness of
    their customers to a later refresh (see :func:`mark_pending`).

    The rows keep the billing preference they have (a new row is standard; a row
    leaving its customer has none), so the one-primary index holds without deciding
    anything. What the rows change about their customers (contacts joining or leaving,
    the primary's details) is noted in ``log``. A membership a concurrent transaction
    inserted first makes the insert fail, and the page is retried against it. Returns
    the customers whose contacts were written.
    """
    for row in changes.inserts:
        log.note(row["customer_id"], [FieldChange("contacts", None, row["id"])])
    for cid, values in changes.updates:
        log.note(cid, contact_write(changes.before.get(values["id"]), values, primary=_PRIMARY))
    update_rows(conn, contacts, ["id"], [values for _, values in changes.updates])
    copy_rows(conn, contacts, changes.inserts)
    return changes.customers()


def mark_pending(conn: Connection, customer_ids: Iterable[str]) -> None:
    """Mark customers whose readiness a later :func:`refresh_pending` recomputes.

    The update takes each customer's row lock, unconditionally: a refresh under way
    for one of them finishes first, and then the mark stays for the next one (a
    conditional ``WHERE NOT refresh_pending`` could skip a row a refresh is about to
    clear, and lose this transaction's changes from its readiness).
    """
    for batch in chunks(sorted(set(customer_ids)), _BATCH):
        conn.execute(
            sa.update(customers)
            .where(is_in(conn, customers.c.id, batch))
            .values(refresh_pending=True)
        )


def pending_count(conn: Connection) -> int:
    """How many customers wait for their readiness refresh (read from the partial index)."""
    return int(
        conn.execute(sa.select(sa.func.count()).where(customers.c.refresh_pending)).scalar_one()
    )


def refresh_pending(
    conn: Connection,
    *,
    order_for: OrderFor,
    now: datetime,
    cause: str,
    limit: int = _PENDING_BATCH,
) -> int:
    """Recompute the readiness of up to ``limit`` customers marked pending, in this
    transaction; returns how many were taken (0: none is waiting).

    On PostgreSQL, customers another transaction is refreshing are skipped (``SKIP
    LOCKED``), so several workers share the waiting ones instead of queueing on them.
    """
    query = (
        sa.select(customers.c.id)
        .where(customers.c.refresh_pending)
        .order_by(customers.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    ids = list(conn.execute(query).scalars())
    if ids:
        log = ChangeLog(cause=cause, at=now)
        refresh_customers(conn, ids, order_for=order_for, now=now, log=log)
        log.flush(conn)
    return len(ids)


def _as_stored(
    rows: Sequence[dict[str, Any]],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
    """Each customer's active contact rows and primary contact row, as stored."""
    before: dict[str, list[dict[str, Any]]] = defaultdict(list)
    primary: dict[str, dict[str, Any]] = {}
    for row in rows:
        before[row["customer_id"]].append(row)
        if row["billing_preference"] == _PRIMARY:
            primary[row["customer_id"]] = row
    return before, primary


def _readiness(cust: Any, reasons: Sequence[BlockedReason]) -> dict[str, Any]:
    """``ready`` and ``blocked_reasons`` as they must be stored."""
    blocked = _stored(reasons)
    if cust.merged_into is not None:  # folded into another customer: held for good
        blocked = [merged_reason(cust.merged_into)]
    return {"ready": not blocked, "blocked_reasons": blocked}


def _customer_update(
    log: ChangeLog, cust: Any, readiness: Mapping[str, Any], now: datetime
) -> tuple[dict[str, Any] | None, bool]:
    """The ``customers`` row update (None: nothing to write) and whether readiness moved.

    A logged change bumps the version in the same write as the readiness."""
    version = log.bump(cust.id, cust.version)
    moved = cust.ready != readiness["ready"] or (
        list(cust.blocked_reasons or []) != readiness["blocked_reasons"]
    )
    if not moved and version is None:
        return None, False
    return {
        "id": cust.id,
        **readiness,
        "updated_at": now,
        "version": version or cust.version,
        "refresh_pending": False,
    }, moved


def _noted(
    cust: Any,
    before: Sequence[Mapping[str, Any]],
    old_primary: Mapping[str, Any] | None,
    after: Sequence[Mapping[str, Any]],
    new_primary: ContactView | None,
    readiness: Mapping[str, Any],
) -> list[FieldChange]:
    """What a refresh changes about one customer, for its change log."""
    changes: list[FieldChange] = []
    old_ids, new_ids = {r["id"] for r in before}, {r["id"] for r in after}
    if old_ids != new_ids:
        changes += set_changes("contacts", old_ids, new_ids)
    old_value, new_value = primary_value(old_primary), primary_value(new_primary)
    if old_value != new_value:
        changes.append(FieldChange("primary_contact", old_value, new_value))
    if cust.ready != readiness["ready"]:
        changes.append(FieldChange("ready", cust.ready, readiness["ready"]))
    old_codes = blocked_codes(cust.blocked_reasons)
    new_codes = blocked_codes(readiness["blocked_reasons"])
    if old_codes != new_codes:
        changes.append(FieldChange("blocked", old_codes, new_codes))
    return changes


@dataclass(slots=True)
class _Overlay:
    """A batch's contacts as they will be once the transaction's writes are done."""

    changing: dict[str, dict[str, Any]]
    """Pending updates by contact id."""
    stored_pref: dict[str, str]
    """Each stored row's billing preference (removed rows coming back included)."""
    new_rows: list[dict[str, Any]]
    """Pending inserts no concurrent writer beat us to."""
    by_customer: dict[str, list[dict[str, Any]]]
    """Each customer's current contacts, the pending writes laid over the stored rows."""


def _load(conn: Connection, batch: list[str]) -> tuple[list[Any], list[dict[str, Any]], list[Any]]:
    """The batch's customers (locked, in id order), their active contacts, their links."""
    # Lock the customers before reading their contacts: two writers refreshing one
    # customer take turns, and the second sees the first's result.
    cust_rows = conn.execute(
        sa.select(*_CUSTOMER_COLUMNS)
        .where(is_in(conn, customers.c.id, batch))
        .order_by(customers.c.id)
        .with_for_update()
    ).all()
    stored = [
        dict(row._mapping)
        for row in conn.execute(
            sa.select(*_CONTACT_COLUMNS)
            .where(is_in(conn, contacts.c.customer_id, batch), contacts.c.removed_at.is_(None))
            .order_by(contacts.c.customer_id, contacts.c.created_at, contacts.c.id)
        )
    ]
    ref_rows = conn.execute(
        sa.select(
            external_refs.c.customer_id, external_refs.c.connector, external_refs.c.deleted_at
        )
        .where(
            is_in(conn, external_refs.c.customer_id, batch),
            external_refs.c.merged_into.is_(None),
        )
        .order_by(external_refs.c.created_at)
    ).all()
    return list(cust_rows), stored, list(ref_rows)


def _overlay(
    conn: Connection,
    batch: list[str],
    stored: list[dict[str, Any]],
    inserts: Mapping[str, list[dict[str, Any]]],
    updates: Mapping[str, list[dict[str, Any]]],
) -> _Overlay:
    changing = {values["id"]: values for cid in batch for values in updates.get(cid, ())}
    stored_pref: dict[str, str] = {}
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    keys: set[tuple[Any, ...]] = set()
    for row in stored:
        stored_pref[row["id"]] = row["billing_preference"]
        keys.add((row["customer_id"], row["connector"], row["external_id"]))
        members[row["customer_id"]].append(row)
    revived = [i for i in changing if i not in stored_pref]
    if revived:  # removed rows the CRM gives back: read what the update leaves as it was
        query = sa.select(*_CONTACT_COLUMNS).where(is_in(conn, contacts.c.id, revived))
        for found in conn.execute(query):
            stored_pref[found.id] = found.billing_preference
            members[found.customer_id].append(dict(found._mapping))
    new_rows = [
        row
        for cid in batch
        for row in inserts.get(cid, ())
        # a concurrent writer added this membership first: theirs stands
        if (cid, row["connector"], row["external_id"]) not in keys
    ]
    for row in new_rows:
        members[row["customer_id"]].append(row)
    by_customer = {
        cid: [
            merged
            for row in rows
            if (merged := {**row, **changing.get(row["id"], {})}).get("removed_at") is None
        ]
        for cid, rows in members.items()
    }
    return _Overlay(changing, stored_pref, new_rows, by_customer)


def _sources(ref_rows: Sequence[Any]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Per customer: the connectors that deleted its record, and its first connector."""
    deleted_in: dict[str, list[str]] = defaultdict(list)
    first_connector: dict[str, str] = {}
    for ref in ref_rows:
        first_connector.setdefault(ref.customer_id, ref.connector)
        if ref.deleted_at is not None and ref.connector not in deleted_in[ref.customer_id]:
            deleted_in[ref.customer_id].append(ref.connector)
    return deleted_in, first_connector


@dataclass(slots=True)
class _Outcome:
    """What a batch's judgements make the refresh write."""

    final: dict[str, str] = field(default_factory=dict)
    """Contact id -> the billing preference it must end with."""
    checked: dict[str, bool] = field(default_factory=dict)
    """Contact id -> the outcome of an email check made here."""
    customer_updates: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)
    """Customers that waited for this refresh and had nothing else change."""
    changed: int = 0
    """Customers whose readiness moved, plus contacts promoted to primary."""


def _settle(
    rows: Sequence[Mapping[str, Any]],
    verdict: Judgement,
    stored_pref: Mapping[str, str],
    outcome: _Outcome,
) -> None:
    """The billing preferences one customer's contacts end with."""
    for r in rows:
        current = stored_pref.get(r["id"], r["billing_preference"])
        if r["id"] == verdict.primary_id:
            outcome.final[r["id"]] = _PRIMARY
            outcome.changed += current != _PRIMARY
            if verdict.email_checked is not None:
                outcome.checked[r["id"]] = verdict.email_checked
        elif current == _PRIMARY:
            outcome.final[r["id"]] = _STANDARD


def _write(conn: Connection, overlay: _Overlay, outcome: _Outcome, now: datetime) -> None:
    final, checked = outcome.final, outcome.checked
    # Demote first, so that the one-primary index never sees two; then the pending
    # writes in their final state; then promotions of rows nothing else writes.
    demote = [
        {"id": i, "billing_preference": _STANDARD, "updated_at": now}
        for i, pref in overlay.stored_pref.items()
        if pref == _PRIMARY and final.get(i) != _PRIMARY
    ]
    update_rows(conn, contacts, ["id"], demote)
    written = list(overlay.changing.values())
    for values in written:
        values["billing_preference"] = final.get(values["id"], values["billing_preference"])
        values["email_valid"] = checked.pop(values["id"], values["email_valid"])
    update_rows(conn, contacts, ["id"], written)
    for row in overlay.new_rows:
        row["billing_preference"] = final.get(row["id"], _STANDARD)
        row["email_valid"] = checked.pop(row["id"], row["email_valid"])
    copy_rows(conn, contacts, overlay.new_rows)  # memberships a concurrent writer added: left out
    promote = [
        i
        for i, pref in final.items()
        if pref == _PRIMARY
        and overlay.stored_pref.get(i, _PRIMARY) != _PRIMARY
        and i not in overlay.changing
    ]
    update_rows(
        conn,
        contacts,
        ["id"],
        [{"id": i, "billing_preference": _PRIMARY, "updated_at": now} for i in promote],
    )
    # the addresses checked here that no write above carried
    update_rows(conn, contacts, ["id"], [{"id": i, "email_valid": v} for i, v in checked.items()])
    update_rows(conn, customers, ["id"], outcome.customer_updates)
    update_rows(conn, customers, ["id"], outcome.done)


def _refresh_batch(
    conn: Connection,
    batch: list[str],
    order_for: OrderFor,
    now: datetime,
    inserts: Mapping[str, list[dict[str, Any]]],
    updates: Mapping[str, list[dict[str, Any]]],
    log: ChangeLog,
) -> int:
    cust_rows, stored, ref_rows = _load(conn, batch)
    overlay = _overlay(conn, batch, stored, inserts, updates)
    before, old_primary = _as_stored(stored)
    deleted_in, first_connector = _sources(ref_rows)
    outcome = _Outcome()
    for cust in cust_rows:
        log.versions[cust.id] = cust.version
        rows = overlay.by_customer.get(cust.id, [])
        verdict = judge(
            customer_view(cust._mapping, len(rows), deleted_in.get(cust.id, ())),
            [contact_view(r) for r in rows],
            unchecked={r["id"] for r in rows if r["email_valid"] is None},
            order=order_for(first_connector.get(cust.id)),
            manual_id=cust.manual_primary_contact_id,
            manual_at=cust.manual_primary_set_at,
        )
        _settle(rows, verdict, overlay.stored_pref, outcome)
        readiness = _readiness(cust, verdict.reasons)
        log.note(
            cust.id,
            _noted(
                cust, before[cust.id], old_primary.get(cust.id), rows, verdict.primary, readiness
            ),
        )
        update, moved = _customer_update(log, cust, readiness, now)
        outcome.changed += moved
        if update is not None:
            outcome.customer_updates.append(update)
        elif cust.refresh_pending:
            outcome.done.append({"id": cust.id, "refresh_pending": False})
    _write(conn, overlay, outcome, now)
    return outcome.changed
