"""Re-applying the domain rules to stored customers after anything about them changed.

:func:`refresh_customers` loads what the rules need for a batch of customers, asks
the domain who the primary billing contact is and whether each customer is ready,
and writes back only what differs: the contacts' billing preferences (the old
primary is demoted before the new one is promoted, so the one-primary index never
trips) and the customer's ``ready`` flag and ``blocked_reasons``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.sql import chunks
from crmsync.adapters.tables import contacts, customers, external_refs
from crmsync.domain import (
    Address,
    BillingPreference,
    ContactOrigin,
    ContactView,
    CustomerView,
    PrimarySource,
    TaxStatus,
    assess,
    choose_primary,
)

__all__ = ["OrderFor", "refresh_customers"]

OrderFor = Callable[[str | None], Sequence[PrimarySource]]
"""Maps a customer's first connector (or None) to its primary-contact order."""

_DEMOTE = (
    sa.update(contacts)
    .where(contacts.c.id == sa.bindparam("b_id"))
    .values(billing_preference=sa.bindparam("b_pref"), updated_at=sa.bindparam("b_now"))
)
_CUSTOMER = (
    sa.update(customers)
    .where(customers.c.id == sa.bindparam("b_id"))
    .values(
        ready=sa.bindparam("b_ready"),
        blocked_reasons=sa.bindparam("b_reasons"),
        updated_at=sa.bindparam("b_now"),
    )
)


def customer_view(row: Any, contact_count: int, deleted_in: Sequence[str]) -> CustomerView:
    """The domain's view of a ``customers`` row."""
    return CustomerView(
        company_name=row.company_name,
        address=Address(
            line1=row.line1,
            line2=row.line2,
            city=row.city,
            state=row.state,
            postal_code=row.postal_code,
            country=row.country,
        ),
        tax_status=TaxStatus(row.tax_status) if row.tax_status else None,
        contact_count=contact_count,
        archived=row.archived_at is not None,
        source_deleted=tuple(sorted(deleted_in)),
        alias_conflicts=tuple(row.alias_conflicts or ()),
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


def refresh_customers(
    conn: Connection, ids: Iterable[str], *, order_for: OrderFor, now: datetime
) -> int:
    """Recompute primary contacts and readiness; returns how many customers changed."""
    changed = 0
    for batch in chunks(sorted(set(ids))):
        # Lock the customers (in id order) before reading their contacts: two writers
        # refreshing one customer take turns, and the second sees the first's result.
        cust_rows = conn.execute(
            sa.select(customers)
            .where(customers.c.id.in_(batch))
            .order_by(customers.c.id)
            .with_for_update()
        ).all()
        contact_rows = conn.execute(
            sa.select(contacts)
            .where(contacts.c.customer_id.in_(batch), contacts.c.removed_at.is_(None))
            .order_by(contacts.c.customer_id, contacts.c.created_at, contacts.c.id)
        ).all()
        ref_rows = conn.execute(
            sa.select(
                external_refs.c.customer_id, external_refs.c.connector, external_refs.c.deleted_at
            )
            .where(external_refs.c.customer_id.in_(batch), external_refs.c.merged_into.is_(None))
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
                        {"b_id": r.id, "b_pref": BillingPreference.STANDARD.value, "b_now": now}
                    )
                elif not is_primary and r.id == choice.contact_id:
                    promote.append(
                        {"b_id": r.id, "b_pref": BillingPreference.PRIMARY.value, "b_now": now}
                    )
            primary = next((v for v in views if v.id == choice.contact_id), None)
            reasons = assess(
                customer_view(cust, len(views), deleted_in.get(cust.id, ())), choice, primary
            )
            blocked = [{"code": r.code.value, "message": r.message} for r in reasons]
            if cust.ready != (not reasons) or list(cust.blocked_reasons or []) != blocked:
                updates.append(
                    {"b_id": cust.id, "b_ready": not reasons, "b_reasons": blocked, "b_now": now}
                )
        if demote:
            conn.execute(_DEMOTE, demote)
        if promote:
            conn.execute(_DEMOTE, promote)
        if updates:
            conn.execute(_CUSTOMER, updates)
        changed += len(updates) + len(promote)
    return changed
