"""Reading what a push needs from the store, and recording how each push went.

:func:`candidates` reads one page of customers a push must look at (held ones, and
ready ones whose version moved past the version last pushed), keyset on the id, with
one query per related table per page. :func:`record_success` and
:func:`record_failure` write a customer's ``billing_links`` row, each as one
conditional upsert: a success never moves ``pushed_version`` backwards (two pushes of
one customer may end in any order), and the unique key on ``billing_customer_id``
refuses linking one billing customer to two customers (:class:`AlreadyLinked`).
:func:`merged_away` lists pushed customers the CRM merged into another since.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.batch import insert_for
from crmsync.adapters.sql import is_in
from crmsync.adapters.tables import aliases, billing_links, contacts, customers, external_refs
from crmsync.billing.models import IntegrationService
from crmsync.domain import check_email
from crmsync.domain.push import CrmRecord, Held, PushContact, PushCustomer
from crmsync.sdk.records import ObjectType

__all__ = [
    "AlreadyLinked",
    "Candidate",
    "Link",
    "MergedAway",
    "candidates",
    "linked_to",
    "merged_away",
    "record_failure",
    "record_success",
    "unchanged_count",
    "waiting_count",
]

_PRIMARY = "PRIMARY"
_MAX_ERROR = 1000


class AlreadyLinked(Exception):
    """The billing customer is linked to another customer already."""


@dataclass(frozen=True, slots=True)
class Link:
    billing_customer_id: str | None
    pushed_version: int | None
    attempts: int


@dataclass(frozen=True, slots=True)
class Candidate:
    customer: PushCustomer
    link: Link | None


def _needs_look() -> Any:
    """Held customers, and ready ones never pushed or changed since."""
    return sa.or_(
        customers.c.ready.is_(False),
        billing_links.c.pushed_version.is_(None),
        customers.c.version > billing_links.c.pushed_version,
    )


def _base(ids: Sequence[str] | None, conn: Connection) -> Any:
    stmt = (
        sa.select(
            customers,
            billing_links.c.billing_customer_id,
            billing_links.c.pushed_version,
            billing_links.c.attempts,
            billing_links.c.customer_id.label("linked"),
        )
        .select_from(customers.outerjoin(billing_links))
        .where(customers.c.merged_into.is_(None), customers.c.archived_at.is_(None))
    )
    if ids is not None:
        stmt = stmt.where(is_in(conn, customers.c.id, ids))
    return stmt


def _count(conn: Connection, stmt: Any) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(stmt.subquery())).scalar_one())


def waiting_count(conn: Connection, ids: Sequence[str] | None = None) -> int:
    """Customers whose readiness waits for a recompute (a sync marked them after the
    push refreshed): not trusted, left for the next push."""
    return _count(conn, _base(ids, conn).where(customers.c.refresh_pending.is_(True)))


@dataclass(frozen=True, slots=True)
class MergedAway:
    """A pushed customer the CRM merged into another: two billing customers to reconcile."""

    customer_id: str
    billing_customer_id: str
    survivor_id: str
    survivor_billing_customer_id: str | None


def merged_away(conn: Connection, ids: Sequence[str] | None = None) -> list[MergedAway]:
    """Pushed customers merged away since (``ids``: only those merged into these)."""
    survivor = billing_links.alias("survivor_link")
    stmt = (
        sa.select(
            customers.c.id,
            billing_links.c.billing_customer_id,
            customers.c.merged_into,
            survivor.c.billing_customer_id.label("survivor_billing"),
        )
        .select_from(
            customers.join(billing_links).outerjoin(
                survivor, survivor.c.customer_id == customers.c.merged_into
            )
        )
        .where(
            customers.c.merged_into.is_not(None),
            billing_links.c.billing_customer_id.is_not(None),
        )
        .order_by(customers.c.id)
    )
    if ids is not None:
        stmt = stmt.where(is_in(conn, customers.c.merged_into, ids))
    return [
        MergedAway(r.id, r.billing_customer_id, r.merged_into, r.survivor_billing)
        for r in conn.execute(stmt).all()
    ]


def unchanged_count(conn: Connection, ids: Sequence[str] | None = None) -> int:
    """Ready customers whose pushed version is their version: they cost nothing."""
    stmt = _base(ids, conn).where(
        customers.c.ready.is_(True), customers.c.version <= billing_links.c.pushed_version
    )
    return _count(conn, stmt)


def candidates(
    conn: Connection,
    *,
    after: str,
    limit: int,
    ids: Sequence[str] | None,
    service_for: Callable[[str], IntegrationService | None],
) -> list[Candidate]:
    """The next ``limit`` customers after id ``after`` that a push must look at."""
    rows = conn.execute(
        _base(ids, conn)
        .where(customers.c.id > after, customers.c.refresh_pending.is_(False), _needs_look())
        .order_by(customers.c.id)
        .limit(limit)
    ).all()
    if not rows:
        return []
    ready = [r.id for r in rows if r.ready]
    people, names, records = _related(conn, ready, service_for)
    return [
        Candidate(
            customer=_customer(row, people[row.id], names[row.id], records[row.id]),
            link=Link(row.billing_customer_id, row.pushed_version, row.attempts or 0)
            if row.linked is not None
            else None,
        )
        for row in rows
    ]


def _related(
    conn: Connection,
    ids: Sequence[str],
    service_for: Callable[[str], IntegrationService | None],
) -> tuple[dict[str, list[PushContact]], dict[str, list[str]], dict[str, list[CrmRecord]]]:
    people: dict[str, list[PushContact]] = defaultdict(list)
    names: dict[str, list[str]] = defaultdict(list)
    records: dict[str, list[CrmRecord]] = defaultdict(list)
    if not ids:
        return people, names, records
    for c in conn.execute(
        sa.select(
            contacts.c.customer_id,
            contacts.c.name,
            contacts.c.email,
            contacts.c.email_valid,
            contacts.c.billing_preference,
        )
        .where(is_in(conn, contacts.c.customer_id, ids), contacts.c.removed_at.is_(None))
        .order_by(contacts.c.created_at, contacts.c.id)
    ).all():
        people[c.customer_id].append(_contact(c))
    for a in conn.execute(
        sa.select(aliases.c.customer_id, aliases.c.value)
        .where(is_in(conn, aliases.c.customer_id, ids))
        .order_by(aliases.c.created_at, aliases.c.value)
    ).all():
        names[a.customer_id].append(a.value)
    for ref in conn.execute(
        sa.select(
            external_refs.c.customer_id, external_refs.c.connector, external_refs.c.external_id
        )
        .where(
            is_in(conn, external_refs.c.customer_id, ids),
            external_refs.c.object_type == ObjectType.COMPANY.value,
        )
        .order_by(
            external_refs.c.created_at, external_refs.c.connector, external_refs.c.external_id
        )
    ).all():
        records[ref.customer_id].append(
            CrmRecord(ref.connector, ref.external_id, service_for(ref.connector))
        )
    return people, names, records


def _contact(row: Any) -> PushContact:
    valid = row.email_valid
    if valid is None:  # checked lazily: the refresh checks the primary's, readers the rest
        valid = check_email(row.email).valid
    return PushContact(
        name=row.name,
        email=row.email,
        primary=row.billing_preference == _PRIMARY,
        email_valid=bool(valid),
    )


def _customer(
    row: Any, people: list[PushContact], names: list[str], records: list[CrmRecord]
) -> PushCustomer:
    held = tuple(
        Held(str(r.get("code", "")), str(r.get("message", "")))
        for r in (row.blocked_reasons or [])
        if isinstance(r, dict)
    )
    return PushCustomer(
        id=row.id,
        version=row.version,
        ready=bool(row.ready),
        held=held,
        legal_name=row.company_name,
        line1=row.line1,
        line2=row.line2,
        city=row.city,
        state=row.state,
        postal_code=row.postal_code,
        country=row.country,
        tax_status=row.tax_status,
        contacts=tuple(people),
        aliases=tuple(names),
        records=tuple(records),
    )


def linked_to(conn: Connection, billing_customer_id: str) -> str | None:
    """The customer the billing customer is linked to, if any."""
    found = conn.execute(
        sa.select(billing_links.c.customer_id).where(
            billing_links.c.billing_customer_id == billing_customer_id
        )
    ).scalar_one_or_none()
    return None if found is None else str(found)


def record_success(
    conn: Connection,
    customer_id: str,
    *,
    billing_customer_id: str,
    version: int,
    outcome: str,
    now: datetime,
) -> None:
    """Link the customer to its billing customer at ``version`` (never backwards).

    Raises :class:`AlreadyLinked` when another customer holds that billing customer
    (the transaction is then unusable: the caller rolls it back).
    """
    insert = insert_for(conn, billing_links)
    values = {
        "customer_id": customer_id,
        "billing_customer_id": billing_customer_id,
        "pushed_version": version,
        "last_outcome": outcome,
        "last_error": None,
        "pushed_at": now,
        "attempts": 0,
    }
    stmt = insert.values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[billing_links.c.customer_id],
        set_={k: stmt.excluded[k] for k in values if k != "customer_id"},
        where=sa.or_(
            billing_links.c.pushed_version.is_(None),
            billing_links.c.pushed_version <= stmt.excluded.pushed_version,
        ),
    )
    try:
        conn.execute(stmt)
    except sa.exc.IntegrityError:
        raise AlreadyLinked(billing_customer_id) from None


def record_failure(
    conn: Connection, customer_id: str, *, outcome: str, error: str, now: datetime
) -> None:
    """Note a push that did not land (``conflict`` or ``failed``): one more attempt; the
    link and the pushed version stay as they were."""
    insert = insert_for(conn, billing_links)
    text = error if len(error) <= _MAX_ERROR else error[: _MAX_ERROR - 3] + "..."
    stmt = insert.values(
        customer_id=customer_id,
        billing_customer_id=None,
        pushed_version=None,
        last_outcome=outcome,
        last_error=text,
        pushed_at=now,
        attempts=1,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[billing_links.c.customer_id],
        set_={
            "last_outcome": stmt.excluded.last_outcome,
            "last_error": stmt.excluded.last_error,
            "pushed_at": stmt.excluded.pushed_at,
            "attempts": billing_links.c.attempts + 1,
        },
    )
    conn.execute(stmt)
