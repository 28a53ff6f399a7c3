"""A customer's change log as the tests read it: its entries, its billing-relevant
state as stored, and the state its entries replay to."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from crmsync.adapters import changelog
from crmsync.adapters.store import Store
from crmsync.adapters.tables import aliases, contacts, customers
from crmsync.domain import BillingPreference
from crmsync.domain.changes import SCALAR_FIELDS, FieldChange, json_value, replay


def log_of(store: Store, cid: str) -> list[dict[str, Any]]:
    """The customer's entries, oldest first."""
    with store.begin() as conn:
        return changelog.entries(conn, cid, newest_first=False)


def billing_state(store: Store, cid: str) -> dict[str, Any]:
    """The customer's billing-relevant state as the store holds it now."""
    with store.begin() as conn:
        row = conn.execute(sa.select(customers).where(customers.c.id == cid)).one()
        active = conn.execute(
            sa.select(
                contacts.c.id, contacts.c.name, contacts.c.email, contacts.c.billing_preference
            ).where(contacts.c.customer_id == cid, contacts.c.removed_at.is_(None))
        ).all()
        alias_values = conn.execute(
            sa.select(aliases.c.value).where(aliases.c.customer_id == cid)
        ).scalars()
        merged = conn.execute(
            sa.select(customers.c.id).where(customers.c.merged_into == cid)
        ).scalars()
        state = {name: json_value(row._mapping.get(name)) for name in SCALAR_FIELDS}
        primary = next(
            (c for c in active if c.billing_preference == BillingPreference.PRIMARY), None
        )
        state["primary_contact"] = (
            None
            if primary is None
            else {"id": primary.id, "name": primary.name, "email": primary.email}
        )
        state["blocked"] = [r["code"] for r in row.blocked_reasons]
        state["contacts"] = {c.id for c in active}
        state["aliases"] = set(alias_values)
        state["merged_customers"] = set(merged)
        return state


def replayed(store: Store, cid: str) -> dict[str, Any]:
    """The state the customer's log, replayed from version 1, leaves it in."""
    entries = log_of(store, cid)
    assert [e["version"] for e in entries] == list(range(1, len(entries) + 1))
    return replay(
        [FieldChange(c["field"], c["old"], c["new"]) for c in e["changes"]] for e in entries
    )
