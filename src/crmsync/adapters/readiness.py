"""Re-applying the domain rules to stored customers after anything about them changed.

:func:`refresh_customers` loads what the rules need for a batch of customers, asks
the domain who the primary billing contact is and whether each customer is ready,
and writes back only what differs: the contacts' billing preferences (the old
primary is demoted before the new one is promoted, so the one-primary index never
trips) and the customer's ``ready`` flag and ``blocked_reasons``.
:func:`new_customer_readiness` gives the same answer for a customer about to be
created from a CRM record, so that it can be inserted in its final state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.sql import chunks, is_in, update_rows
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
    choose_primary,
)

__all__ = ["OrderFor", "new_customer_readiness", "refresh_customers"]

OrderFor = Callable[[str | None], Sequence[PrimarySource]]
"""Maps a customer's first connector (or None) to its primary-contact order."""


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


def contact_view(row: Any) -> ContactView:
    """The domain's view of a ``contacts`` row."""
    return ContactView(
        id=row.id,
        name=row.name,
        email=row.email,
        email_valid=row.email_valid,
        origin=ContactOrigin(row.origin),
        crm_designated=row.crm_designated,
        designated_at=row.designated_at,
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
)

#: Customers refreshed per round of queries (each list is bound as one parameter).
_BATCH = 1_000


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
    conn: Connection, ids: Iterable[str], *, order_for: OrderFor, now: datetime
) -> int:
    """Recompute primary contacts and readiness; returns how many customers changed."""
    changed = 0
    for batch in chunks(sorted(set(ids)), _BATCH):
        # Lock the customers (in id order) before reading their contacts: two writers
        # refreshing one customer take turns, and the second sees the first's result.
        cust_rows = conn.execute(
            sa.select(*_CUSTOMER_COLUMNS)
            .where(is_in(conn, customers.c.id, batch))
            .order_by(customers.c.id)
            .with_for_update()
        ).all()
        contact_rows = conn.execute(
            sa.select(*_CONTACT_COLUMNS)
            .where(is_in(conn, contacts.c.customer_id, batch), contacts.c.removed_at.is_(None))
            .order_by(contacts.c.customer_id, contacts.c.created_at, contacts.c.id)
        ).all()
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
        by_customer: dict[str, list[Any]] = defaultdict(list)
        for row in contact_rows:
            by_customer[row.customer_id].append(row)
        deleted_in: dict[str, list[str]] = defaultdict(list)
        first_connector: dict[str, str] = {}
        for ref in ref_rows:
            first_connector.setdefault(ref.customer_id, ref.connector)
            if ref.deleted_at is not None and ref.connector not in deleted_in[ref.customer_id]:
                deleted_in[ref.customer_id].append(ref.connector)

        demote: list[dict[str, Any]] = []
        promote: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for cust in cust_rows:
            rows = by_customer.get(cust.id, [])
            views = [contact_view(r) for r in rows]
            choice = choose_primary(
                views,
                order=order_for(first_connector.get(cust.id)),
                manual_id=cust.manual_primary_contact_id,
                manual_at=cust.manual_primary_set_at,
            )
            for r in rows:
                is_primary = r.billing_preference == BillingPreference.PRIMARY
                if is_primary and r.id != choice.contact_id:
                    demote.append(
                        {
                            "id": r.id,
                            "billing_preference": BillingPreference.STANDARD.value,
                            "updated_at": now,
                        }
                    )
                elif not is_primary and r.id == choice.contact_id:
                    promote.append(
                        {
                            "id": r.id,
                            "billing_preference": BillingPreference.PRIMARY.value,
                            "updated_at": now,
                        }
                    )
            primary = next((v for v in views if v.id == choice.contact_id), None)
            reasons = assess(
                customer_view(cust._mapping, len(views), deleted_in.get(cust.id, ())),
                choice,
                primary,
            )
            blocked = _stored(reasons)
            if cust.ready != (not reasons) or list(cust.blocked_reasons or []) != blocked:
                updates.append(
                    {
                        "id": cust.id,
                        "ready": not reasons,
                        "blocked_reasons": blocked,
                        "updated_at": now,
                    }
                )
        # demote before promoting, so that the one-primary index never sees two
        update_rows(conn, contacts, ["id"], demote)
        update_rows(conn, contacts, ["id"], promote)
        update_rows(conn, customers, ["id"], updates)
        changed += len(updates) + len(promote)
    return changed
