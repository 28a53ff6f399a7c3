"""A store's content without generated ids and timestamps, to compare two stores."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from crmsync.adapters.readiness import email_valid
from crmsync.adapters.store import Store
from crmsync.adapters.tables import aliases, contacts, customers, external_refs, quarantine


def snapshot(store: Store) -> dict[str, Any]:
    """Customers keyed by their CRM record, with contacts, aliases and readiness."""
    with store.begin() as conn:
        refs = {
            r.customer_id: f"{r.connector}/{r.external_id}"
            for r in conn.execute(sa.select(external_refs))
        }
        result: dict[str, Any] = {}
        for c in conn.execute(sa.select(customers)):
            key = refs.get(c.id, c.company_name)
            result[key] = {
                "name": c.company_name,
                "address": (c.line1, c.line2, c.city, c.state, c.postal_code, c.country),
                "tax": (c.tax_status, c.tax_status_source),
                "ready": c.ready,
                "reasons": sorted(r["code"] for r in c.blocked_reasons),
                "conflicts": sorted(c.alias_conflicts),
                "archived": c.archived_at is not None,
                "contacts": sorted(
                    (
                        k.external_id or k.email,
                        k.name,
                        k.email,
                        email_valid(k),  # as shown: the column only remembers a check
                        k.billing_preference,
                        k.crm_designated,
                        k.removed_at is not None,
                    )
                    for k in conn.execute(sa.select(contacts).where(contacts.c.customer_id == c.id))
                ),
                "aliases": sorted(
                    a.value
                    for a in conn.execute(
                        sa.select(aliases).where(
                            aliases.c.customer_id == c.id, aliases.c.source != "id"
                        )
                    )
                ),
            }
        result["__quarantine__"] = sorted(
            (q.object_type, q.record_key, q.reason) for q in conn.execute(sa.select(quarantine))
        )
        return result


def row_counts(store: Store) -> dict[str, int]:
    with store.begin() as conn:
        return {
            t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in (customers, contacts, aliases, external_refs, quarantine)
        }


def max_updated_at(store: Store) -> Any:
    with store.begin() as conn:
        return (
            conn.execute(sa.select(sa.func.max(customers.c.updated_at))).scalar(),
            conn.execute(sa.select(sa.func.max(contacts.c.updated_at))).scalar(),
            conn.execute(sa.select(sa.func.max(external_refs.c.updated_at))).scalar(),
        )
