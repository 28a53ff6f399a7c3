"""Writing one page of CRM records into the store: batched, idempotent, safe to race.

For each page the writer reads what the store already has for the page's ids in
one query, skips records whose content hash is unchanged (so a second sync over
the same data writes nothing, not even timestamps), and writes the rest with
multi-row statements. Concurrent writers are safe:

- a new CRM company is *claimed* by inserting its ``external_refs`` row with
  ``ON CONFLICT DO NOTHING``; only the claimant creates the customer (the foreign
  key is deferred), a loser updates the winner's customer instead;
- contacts and aliases are inserted with ``ON CONFLICT DO NOTHING`` against their
  unique keys, and an alias a concurrent writer took is reported as a conflict;
- a record older than what is stored (``modified_at``) never overwrites it.

Nothing here commits: the engine wraps a page and its cursor in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.readiness import OrderFor, refresh_customers
from crmsync.adapters.sql import insert_for, new_id, select_in
from crmsync.adapters.tables import (
    aliases,
    billing_schedules,
    contacts,
    customers,
    external_refs,
    invoices,
    pending_links,
)
from crmsync.domain import (
    AddressInput,
    BillingPreference,
    ContactOrigin,
    FieldSource,
    TaxStatus,
    check_email,
    normalize_address,
)
from crmsync.sdk.records import CompanyRecord, ContactRecord, ObjectType

__all__ = ["WriteCounts", "Writer", "content_hash"]

_HASH_EXCLUDE = {"modified_at"}


def content_hash(record: CompanyRecord | ContactRecord) -> str:
    """A digest of what the record says (not when it was modified)."""
    payload = record.model_dump_json(exclude=_HASH_EXCLUDE).encode()
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


@dataclass(slots=True)
class WriteCounts:
    """What a write did, record by record."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    touched: set[str] = field(default_factory=set)
    """Customers whose readiness must be recomputed."""

    def add(self, other: WriteCounts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.touched |= other.touched


def _last_by_id(records: Iterable[Any]) -> list[Any]:
    """Keep the last record for each external id, in first-seen order."""
    latest: dict[str, Any] = {}
    for record in records:
        latest.pop(record.external_id, None)
        latest[record.external_id] = record
    return list(latest.values())


def _clean_aliases(values: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        text = value.strip()
        if text and text.casefold() not in seen:
            seen[text.casefold()] = text
    return list(seen.values())


_UPDATE_CUSTOMER = (
    sa.update(customers)
    .where(customers.c.id == sa.bindparam("b_id"))
    .values(
        company_name=sa.bindparam("b_company_name"),
        line1=sa.bindparam("b_line1"),
        line2=sa.bindparam("b_line2"),
        city=sa.bindparam("b_city"),
        state=sa.bindparam("b_state"),
        postal_code=sa.bindparam("b_postal_code"),
        country=sa.bindparam("b_country"),
        tax_status=sa.bindparam("b_tax_status"),
        tax_status_source=sa.bindparam("b_tax_status_source"),
        updated_at=sa.bindparam("b_now"),
    )
)
_UPDATE_REF = (
    sa.update(external_refs)
    .where(
        external_refs.c.connector == sa.bindparam("b_connector"),
        external_refs.c.object_type == sa.bindparam("b_type"),
        external_refs.c.external_id == sa.bindparam("b_external_id"),
    )
    .values(
        content_hash=sa.bindparam("b_hash"),
        source_modified_at=sa.bindparam("b_modified"),
        deleted_at=sa.bindparam("b_deleted_at"),
        updated_at=sa.bindparam("b_now"),
    )
)
_UPDATE_CONTACT = (
    sa.update(contacts)
    .where(contacts.c.id == sa.bindparam("b_id"))
    .values(
        name=sa.bindparam("b_name"),
        email=sa.bindparam("b_email"),
        email_valid=sa.bindparam("b_email_valid"),
        crm_designated=sa.bindparam("b_designated"),
        designated_at=sa.bindparam("b_designated_at"),
        content_hash=sa.bindparam("b_hash"),
        source_modified_at=sa.bindparam("b_modified"),
        removed_at=sa.bindparam("b_removed_at"),
        billing_preference=sa.bindparam("b_pref"),
        updated_at=sa.bindparam("b_now"),
    )
)
_SET_CONFLICTS = (
    sa.update(customers)
    .where(customers.c.id == sa.bindparam("b_id"))
    .values(alias_conflicts=sa.bindparam("b_conflicts"), updated_at=sa.bindparam("b_now"))
)


class Writer:
    """Applies CRM records of one connector to the store, inside the caller's transaction."""

    def __init__(
        self,
        conn: Connection,
        *,
        connector: str,
        default_tax_status: TaxStatus,
        order_for: OrderFor,
        now: datetime,
    ) -> None:
        self.conn = conn
        self.connector = connector
        self.default_tax_status = default_tax_status
        self.order_for = order_for
        self.now = now

    # -- companies -----------------------------------------------------------------

    def write_companies(self, records: Sequence[CompanyRecord]) -> WriteCounts:
        counts = WriteCounts()
        recs = _last_by_id(records)
        if not recs:
            return counts
        existing = {
            row.external_id: row
            for row in select_in(
                self.conn,
                [
                    external_refs.c.external_id,
                    external_refs.c.customer_id,
                    external_refs.c.content_hash,
                    external_refs.c.source_modified_at,
                    external_refs.c.deleted_at,
                    external_refs.c.merged_into,
                    customers.c.tax_status_source,
                    customers.c.tax_status,
                ],
                external_refs.c.external_id,
                (r.external_id for r in recs),
                external_refs.c.connector == self.connector,
                external_refs.c.object_type == ObjectType.COMPANY.value,
                external_refs.c.customer_id == customers.c.id,
            )
        }
        hashes = {r.external_id: content_hash(r) for r in recs}
        to_create: list[CompanyRecord] = []
        to_update: list[tuple[CompanyRecord, Any]] = []
        for r in recs:
            row = existing.get(r.external_id)
            if row is None:
                if r.deleted:  # deleted before we ever saw it: nothing to hold
                    counts.unchanged += 1
                else:
                    to_create.append(r)
            elif row.merged_into is not None:
                counts.unchanged += 1  # merged into another record, which governs now
            elif row.content_hash == hashes[r.external_id] or (
                r.modified_at is not None
                and row.source_modified_at is not None
                and r.modified_at < row.source_modified_at
            ):
                counts.unchanged += 1
            else:
                to_update.append((r, row))

        if to_create:
            lost = self._create_companies(to_create, hashes, counts)
            if lost:  # a concurrent writer claimed them first: update theirs instead
                again = self.write_companies(lost)
                counts.add(again)
        if to_update:
            self._update_companies(to_update, hashes, counts)
        self._fold_merged_companies([r for r in recs if r.merged_ids], counts)
        return counts

    def _fold_merged_companies(self, survivors: list[CompanyRecord], counts: WriteCounts) -> None:
        """Fold the customers of records the CRM merged into their survivor's customer."""
        if not survivors:
            return
        pairs = {m: r.external_id for r in survivors for m in r.merged_ids if m != r.external_id}
        refs = {
            row.external_id: row
            for row in select_in(
                self.conn,
                [
                    external_refs.c.external_id,
                    external_refs.c.customer_id,
                    external_refs.c.merged_into,
                ],
                external_refs.c.external_id,
                [*pairs, *pairs.values()],
                external_refs.c.connector == self.connector,
                external_refs.c.object_type == ObjectType.COMPANY.value,
            )
        }
        for merged, survivor in sorted(pairs.items()):
            loser, winner = refs.get(merged), refs.get(survivor)
            if loser is None or winner is None or loser.merged_into == survivor:
                continue
            if loser.customer_id != winner.customer_id:
                fold_customer(self.conn, loser.customer_id, winner.customer_id, self.now)
                counts.touched.discard(loser.customer_id)
            self.conn.execute(
                sa.update(external_refs)
                .where(
                    external_refs.c.connector == self.connector,
                    external_refs.c.object_type == ObjectType.COMPANY.value,
                    external_refs.c.external_id == merged,
                )
                .values(
                    merged_into=survivor,
                    customer_id=winner.customer_id,
                    deleted_at=None,
                    updated_at=self.now,
                )
            )
            counts.touched.add(winner.customer_id)

    def _company_values(
        self, r: CompanyRecord, tax_source: str | None, tax_status: str | None
    ) -> dict[str, Any]:
        address = normalize_address(
            AddressInput(r.line1, r.line2, r.city, r.state, r.postal_code, r.country)
        )
        if tax_source == FieldSource.MANUAL:
            tax, source = tax_status, FieldSource.MANUAL.value
        elif r.tax_status is not None:
            tax, source = r.tax_status.value, FieldSource.CRM.value
        else:
            tax, source = self.default_tax_status.value, FieldSource.DEFAULT.value
        return {
            "company_name": r.name or None,
            "line1": address.line1,
            "line2": address.line2,
            "city": address.city,
            "state": address.state,
            "postal_code": address.postal_code,
            "country": address.country,
            "tax_status": tax,
            "tax_status_source": source,
        }

    def _create_companies(
        self, recs: list[CompanyRecord], hashes: dict[str, str], counts: WriteCounts
    ) -> list[CompanyRecord]:
        now = self.now
        ids = {r.external_id: new_id("cus") for r in recs}
        claim = insert_for(self.conn, external_refs).on_conflict_do_nothing()
        claimed = {
            row.external_id
            for row in self.conn.execute(
                claim.returning(external_refs.c.external_id),
                [
                    {
                        "connector": self.connector,
                        "object_type": ObjectType.COMPANY.value,
                        "external_id": r.external_id,
                        "customer_id": ids[r.external_id],
                        "content_hash": hashes[r.external_id],
                        "source_modified_at": r.modified_at,
                        "deleted_at": None,
                        "merged_into": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for r in recs
                ],
            )
        }
        won = [r for r in recs if r.external_id in claimed]
        if won:
            self.conn.execute(
                sa.insert(customers),
                [
                    {
                        "id": ids[r.external_id],
                        **self._company_values(r, None, None),
                        "manual_primary_contact_id": None,
                        "manual_primary_set_at": None,
                        "alias_conflicts": [],
                        "ready": False,
                        "blocked_reasons": [],
                        "archived_at": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for r in won
                ],
            )
            self.conn.execute(
                sa.insert(aliases),
                [
                    {
                        "value": ids[r.external_id],
                        "folded": ids[r.external_id].casefold(),
                        "customer_id": ids[r.external_id],
                        "source": "id",
                        "connector": None,
                        "created_at": now,
                    }
                    for r in won
                ],
            )
            self._sync_aliases({ids[r.external_id]: r.aliases for r in won}, {})
            self._attach_pending({r.external_id: ids[r.external_id] for r in won}, counts)
            counts.created += len(won)
            counts.touched.update(ids[r.external_id] for r in won)
        return [r for r in recs if r.external_id not in claimed]

    def _update_companies(
        self, pairs: list[tuple[CompanyRecord, Any]], hashes: dict[str, str], counts: WriteCounts
    ) -> None:
        now = self.now
        self.conn.execute(
            _UPDATE_CUSTOMER,
            [
                {
                    "b_id": row.customer_id,
                    "b_now": now,
                    **{
                        f"b_{k}": v
                        for k, v in self._company_values(
                            r, row.tax_status_source, row.tax_status
                        ).items()
                    },
                }
                for r, row in pairs
            ],
        )
        self.conn.execute(
            _UPDATE_REF,
            [
                {
                    "b_connector": self.connector,
                    "b_type": ObjectType.COMPANY.value,
                    "b_external_id": r.external_id,
                    "b_hash": hashes[r.external_id],
                    "b_modified": r.modified_at,
                    "b_deleted_at": (row.deleted_at or now) if r.deleted else None,
                    "b_now": now,
                }
                for r, row in pairs
            ],
        )
        current = self._crm_aliases(row.customer_id for _, row in pairs)
        self._sync_aliases({row.customer_id: r.aliases for r, row in pairs}, current)
        counts.updated += len(pairs)
        counts.touched.update(row.customer_id for _, row in pairs)

    # -- aliases -------------------------------------------------------------------

    def _crm_aliases(self, customer_ids: Iterable[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = defaultdict(set)
        for row in select_in(
            self.conn,
            [aliases.c.value, aliases.c.customer_id],
            aliases.c.customer_id,
            customer_ids,
            aliases.c.source == "crm",
            aliases.c.connector == self.connector,
        ):
            found[row.customer_id].add(row.value)
        return found

    def _sync_aliases(self, wanted: dict[str, Sequence[str]], current: dict[str, set[str]]) -> None:
        """Make each customer's CRM aliases (from this connector) what the CRM says."""
        now = self.now
        desired = {cid: _clean_aliases(values) for cid, values in wanted.items()}
        remove = [
            value
            for cid, have in current.items()
            for value in have
            if value not in desired.get(cid, ())
        ]
        if remove:
            self.conn.execute(
                sa.delete(aliases).where(
                    aliases.c.value.in_(remove),
                    aliases.c.source == "crm",
                    aliases.c.connector == self.connector,
                )
            )
        candidates: dict[str, tuple[str, str]] = {}  # folded -> first claimant in page order
        for cid, values in desired.items():
            for value in values:
                if value not in current.get(cid, set()):
                    candidates.setdefault(value.casefold(), (cid, value))
        conflicts: dict[str, list[str]] = {cid: [] for cid in desired}
        wanted_rows: list[dict[str, Any]] = []
        taken = {
            row.folded: row
            for row in select_in(
                self.conn,
                [aliases.c.folded, aliases.c.value, aliases.c.customer_id],
                aliases.c.folded,
                candidates.keys(),
            )
        }
        for cid in desired:
            for value in desired[cid]:
                if value in current.get(cid, set()):
                    continue
                folded = value.casefold()
                holder = taken.get(folded)
                if holder is not None:
                    if not (holder.customer_id == cid and holder.value == value):
                        conflicts[cid].append(value)
                elif candidates.get(folded, (None, None))[0] != cid:
                    conflicts[cid].append(value)  # another record in this page wants it
                else:
                    wanted_rows.append(
                        {
                            "value": value,
                            "folded": folded,
                            "customer_id": cid,
                            "source": "crm",
                            "connector": self.connector,
                            "created_at": now,
                        }
                    )
        if wanted_rows:
            stmt = insert_for(self.conn, aliases).on_conflict_do_nothing()
            inserted = {
                row.value for row in self.conn.execute(stmt.returning(aliases.c.value), wanted_rows)
            }
            for row in wanted_rows:
                if row["value"] not in inserted:  # a concurrent writer took it
                    conflicts[row["customer_id"]].append(row["value"])
        self._store_conflicts(conflicts)

    def _store_conflicts(self, conflicts: dict[str, list[str]]) -> None:
        if not conflicts:
            return
        rows = select_in(
            self.conn,
            [customers.c.id, customers.c.alias_conflicts],
            customers.c.id,
            conflicts.keys(),
        )
        changes = [
            {"b_id": row.id, "b_conflicts": sorted(conflicts[row.id]), "b_now": self.now}
            for row in rows
            if sorted(row.alias_conflicts or []) != sorted(conflicts[row.id])
        ]
        if changes:
            self.conn.execute(_SET_CONFLICTS, changes)

    # -- contacts ------------------------------------------------------------------

    def write_contacts(self, records: Sequence[ContactRecord]) -> WriteCounts:
        counts = WriteCounts()
        recs = _last_by_id(records)
        if not recs:
            return counts
        self._fold_merged_contacts([r for r in recs if r.merged_ids], counts)
        company_ids = {link.company_id for r in recs for link in r.companies}
        customer_of = {
            row.external_id: row.customer_id
            for row in select_in(
                self.conn,
                [external_refs.c.external_id, external_refs.c.customer_id],
                external_refs.c.external_id,
                company_ids,
                external_refs.c.connector == self.connector,
                external_refs.c.object_type == ObjectType.COMPANY.value,
            )
        }
        members: dict[str, dict[str, Any]] = defaultdict(dict)
        for row in select_in(
            self.conn,
            [
                contacts.c.id,
                contacts.c.customer_id,
                contacts.c.external_id,
                contacts.c.content_hash,
                contacts.c.crm_designated,
                contacts.c.designated_at,
                contacts.c.removed_at,
                contacts.c.source_modified_at,
                contacts.c.billing_preference,
            ],
            contacts.c.external_id,
            (r.external_id for r in recs),
            contacts.c.connector == self.connector,
        ):
            members[row.external_id][row.customer_id] = row
        pending: dict[str, set[str]] = defaultdict(set)
        for row in select_in(
            self.conn,
            [pending_links.c.contact_external_id, pending_links.c.company_external_id],
            pending_links.c.contact_external_id,
            (r.external_id for r in recs),
            pending_links.c.connector == self.connector,
        ):
            pending[row.contact_external_id].add(row.company_external_id)

        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        add_pending: list[dict[str, Any]] = []
        drop_pending: list[tuple[str, str]] = []
        for r in recs:
            digest = content_hash(r)
            have = members.get(r.external_id, {})
            active = {cid: row for cid, row in have.items() if row.removed_at is None}
            desired: dict[str, bool] = {}
            waiting: dict[str, bool] = {}
            if not r.deleted:
                for link in r.companies:
                    cid = customer_of.get(link.company_id)
                    if cid is None:
                        waiting[link.company_id] = waiting.get(link.company_id, False) or (
                            link.billing_contact
                        )
                    else:
                        desired[cid] = desired.get(cid, False) or link.billing_contact
            newest = max(
                (
                    row.source_modified_at
                    for row in have.values()
                    if row.source_modified_at is not None
                ),
                default=None,
            )
            if r.modified_at is not None and newest is not None and r.modified_at < newest:
                counts.unchanged += 1  # older than what we hold: never overwrite
                continue
            if (
                set(active) == set(desired)
                and all(row.content_hash == digest for row in active.values())
                and pending.get(r.external_id, set()) == set(waiting)
            ):
                counts.unchanged += 1
                continue
            email = check_email(r.email)
            for cid, designated in desired.items():
                member = have.get(cid)
                if member is None:
                    inserts.append(
                        self._new_contact(r, cid, designated, digest, email.value, email.valid)
                    )
                    continue
                keep_since = member.crm_designated and member.removed_at is None
                updates.append(
                    {
                        "b_id": member.id,
                        "b_name": r.name or None,
                        "b_email": email.value,
                        "b_email_valid": email.valid,
                        "b_designated": designated,
                        "b_designated_at": (member.designated_at if keep_since else self.now)
                        if designated
                        else None,
                        "b_hash": digest,
                        "b_modified": r.modified_at,
                        "b_removed_at": None,
                        "b_pref": member.billing_preference
                        if member.removed_at is None
                        else BillingPreference.STANDARD.value,
                        "b_now": self.now,
                    }
                )
            for cid, row in active.items():
                if cid not in desired:
                    updates.append(
                        {
                            "b_id": row.id,
                            "b_name": r.name or None,
                            "b_email": email.value,
                            "b_email_valid": email.valid,
                            "b_designated": False,
                            "b_designated_at": None,
                            "b_hash": digest,
                            "b_modified": r.modified_at,
                            "b_removed_at": self.now,
                            "b_pref": BillingPreference.NONE.value,
                            "b_now": self.now,
                        }
                    )
            for company_id, designated in waiting.items():
                add_pending.append(
                    {
                        "connector": self.connector,
                        "contact_external_id": r.external_id,
                        "company_external_id": company_id,
                        "record": r.model_dump(mode="json") | {"billing_contact": designated},
                        "created_at": self.now,
                    }
                )
            drop_pending += [
                (r.external_id, c) for c in pending.get(r.external_id, set()) if c not in waiting
            ]
            counts.touched.update(desired)
            counts.touched.update(active)
            if have or pending.get(r.external_id):
                counts.updated += 1
            else:
                counts.created += 1

        if updates:
            self.conn.execute(_UPDATE_CONTACT, updates)
        if inserts:
            self.conn.execute(insert_for(self.conn, contacts).on_conflict_do_nothing(), inserts)
        self._save_pending(add_pending, drop_pending)
        return counts

    def _fold_merged_contacts(self, survivors: list[ContactRecord], counts: WriteCounts) -> None:
        """Give a merged contact's memberships (and hand picks) to its survivor."""
        if not survivors:
            return
        pairs = {m: r.external_id for r in survivors for m in r.merged_ids if m != r.external_id}
        rows = select_in(
            self.conn,
            [contacts.c.id, contacts.c.customer_id, contacts.c.external_id],
            contacts.c.external_id,
            [*pairs, *pairs.values()],
            contacts.c.connector == self.connector,
        )
        survivor_row = {
            (r.customer_id, r.external_id): r.id for r in rows if r.external_id in pairs.values()
        }
        for row in rows:
            survivor = pairs.get(row.external_id)
            if survivor is None:
                continue
            keep = survivor_row.get((row.customer_id, survivor))
            if keep is None:  # re-key: the row (and any hand pick of it) now is the survivor
                self.conn.execute(
                    sa.update(contacts)
                    .where(contacts.c.id == row.id)
                    .values(external_id=survivor, content_hash=None, updated_at=self.now)
                )
            else:
                self.conn.execute(
                    sa.update(customers)
                    .where(customers.c.manual_primary_contact_id == row.id)
                    .values(manual_primary_contact_id=keep, updated_at=self.now)
                )
                self.conn.execute(sa.delete(contacts).where(contacts.c.id == row.id))
            counts.touched.add(row.customer_id)
        self.conn.execute(
            sa.delete(pending_links).where(
                pending_links.c.connector == self.connector,
                pending_links.c.contact_external_id.in_(list(pairs)),
            )
        )

    def _new_contact(
        self,
        r: ContactRecord,
        customer_id: str,
        designated: bool,
        digest: str,
        email: str | None,
        email_valid: bool,
    ) -> dict[str, Any]:
        return {
            "id": new_id("con"),
            "customer_id": customer_id,
            "name": r.name or None,
            "email": email,
            "email_valid": email_valid,
            "billing_preference": BillingPreference.STANDARD.value,
            "origin": ContactOrigin.CRM.value,
            "connector": self.connector,
            "external_id": r.external_id,
            "crm_designated": designated,
            "designated_at": self.now if designated else None,
            "content_hash": digest,
            "source_modified_at": r.modified_at,
            "removed_at": None,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def _save_pending(self, add: list[dict[str, Any]], drop: list[tuple[str, str]]) -> None:
        if add:
            stmt = insert_for(self.conn, pending_links)
            stmt = stmt.on_conflict_do_update(
                index_elements=[
                    pending_links.c.connector,
                    pending_links.c.contact_external_id,
                    pending_links.c.company_external_id,
                ],
                set_={"record": stmt.excluded.record},
            )
            self.conn.execute(stmt, add)
        for contact_id, company_id in drop:
            self.conn.execute(
                sa.delete(pending_links).where(
                    pending_links.c.connector == self.connector,
                    pending_links.c.contact_external_id == contact_id,
                    pending_links.c.company_external_id == company_id,
                )
            )

    def _attach_pending(self, customer_of: dict[str, str], counts: WriteCounts) -> None:
        """Attach contacts that arrived before the companies they belong to."""
        rows = select_in(
            self.conn,
            [
                pending_links.c.contact_external_id,
                pending_links.c.company_external_id,
                pending_links.c.record,
            ],
            pending_links.c.company_external_id,
            customer_of.keys(),
            pending_links.c.connector == self.connector,
        )
        if not rows:
            return
        inserts = []
        for row in rows:
            data = dict(row.record)
            designated = bool(data.pop("billing_contact", False))
            record = ContactRecord.model_validate(data)
            email = check_email(record.email)
            inserts.append(
                self._new_contact(
                    record,
                    customer_of[row.company_external_id],
                    designated,
                    content_hash(record),
                    email.value,
                    email.valid,
                )
            )
        self.conn.execute(insert_for(self.conn, contacts).on_conflict_do_nothing(), inserts)
        for row in rows:
            self.conn.execute(
                sa.delete(pending_links).where(
                    pending_links.c.connector == self.connector,
                    pending_links.c.contact_external_id == row.contact_external_id,
                    pending_links.c.company_external_id == row.company_external_id,
                )
            )

    # -- readiness -----------------------------------------------------------------

    def refresh(self, customer_ids: Iterable[str]) -> int:
        """Recompute primary contacts and readiness of the given customers."""
        return refresh_customers(self.conn, customer_ids, order_for=self.order_for, now=self.now)


def fold_customer(conn: Connection, loser: str, winner: str, now: datetime) -> None:
    """Move everything of customer ``loser`` to ``winner`` and delete ``loser``.

    Contacts, aliases (the loser's id keeps resolving, to the winner), CRM links,
    billing schedules and invoices move; a hand-picked primary and a tax-status
    override move when the winner has none of its own.
    """
    rows = {
        r.id: r
        for r in conn.execute(sa.select(customers).where(customers.c.id.in_([loser, winner])))
    }
    lost, won = rows[loser], rows[winner]
    theirs = {
        (r.connector, r.external_id): r.id
        for r in conn.execute(
            sa.select(contacts.c.id, contacts.c.connector, contacts.c.external_id).where(
                contacts.c.customer_id == winner, contacts.c.connector.is_not(None)
            )
        )
    }
    pick = lost.manual_primary_contact_id
    for r in conn.execute(
        sa.select(contacts.c.id, contacts.c.connector, contacts.c.external_id).where(
            contacts.c.customer_id == loser, contacts.c.connector.is_not(None)
        )
    ).all():
        twin = theirs.get((r.connector, r.external_id))
        if twin is not None:  # the winner has this CRM contact already
            pick = twin if pick == r.id else pick
            conn.execute(sa.delete(contacts).where(contacts.c.id == r.id))
    conn.execute(
        sa.update(contacts)
        .where(contacts.c.customer_id == loser)
        .values(
            customer_id=winner, billing_preference=BillingPreference.STANDARD.value, updated_at=now
        )
    )
    for table in (aliases, external_refs, billing_schedules, invoices):
        conn.execute(
            sa.update(table).where(table.c.customer_id == loser).values(customer_id=winner)
        )
    changes: dict[str, Any] = {}
    if won.manual_primary_contact_id is None and pick is not None:
        changes.update(
            manual_primary_contact_id=pick, manual_primary_set_at=lost.manual_primary_set_at
        )
    if won.tax_status_source != FieldSource.MANUAL and lost.tax_status_source == FieldSource.MANUAL:
        changes.update(tax_status=lost.tax_status, tax_status_source=lost.tax_status_source)
    if changes:
        conn.execute(
            sa.update(customers).where(customers.c.id == winner).values(updated_at=now, **changes)
        )
    conn.execute(sa.delete(customers).where(customers.c.id == loser))


def dump_record(record: CompanyRecord | ContactRecord) -> str:
    """The record as JSON text (for the quarantine and debugging)."""
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False)
