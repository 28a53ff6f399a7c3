"""Writing one page of CRM records into the store: batched, idempotent, safe to race.

For each page the writer reads the content hashes the store holds for the page's
ids in one query, skips records whose hash is unchanged (so a second sync over the
same data writes nothing, not even timestamps), reads the stored rows of the others
and writes them with batched statements (:mod:`crmsync.adapters.batch`). A customer
created from a new company is inserted with its readiness already computed; the
contact rows a page decides on are handed to the readiness refresh
(:class:`~crmsync.adapters.readiness.ContactChanges`), which writes them in their
final state, primary or not, under the customers' locks. Concurrent writers are safe:

- a new CRM company is *claimed* by inserting its ``external_refs`` row with
  ``ON CONFLICT DO NOTHING``; only the claimant creates the customer (the foreign
  key is deferred), a loser updates the winner's customer instead;
- aliases are inserted with ``ON CONFLICT DO NOTHING`` against their unique keys,
  and an alias a concurrent writer took is reported as a conflict; a contact
  membership a concurrent writer added first is kept, not duplicated;
- a record older than what is stored (``modified_at``) never overwrites it.

Nothing here commits: the engine wraps a page and its cursor in one transaction.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.batch import copy_rows, insert_rows, update_rows
from crmsync.adapters.changelog import ChangeLog
from crmsync.adapters.readiness import (
    MEMBERSHIP_KEY,
    ContactChanges,
    OrderFor,
    mark_pending,
    new_customer_readiness,
    primary_value,
    refresh_customers,
    write_deferred,
)
from crmsync.adapters.sql import find, insert_for, new_id, select_in
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
    PrimarySource,
    TaxStatus,
    normalize_address,
)
from crmsync.domain.changes import FieldChange, blocked_codes, diff, set_changes
from crmsync.domain.values import fold_alias
from crmsync.domain.versions import Version, newest, supersedes
from crmsync.sdk.records import CompanyRecord, ContactRecord, ObjectType

__all__ = ["WriteCounts", "Writer", "claim_released_aliases", "content_hash"]

_HASH_EXCLUDE = {"modified_at"}

#: The ``customers`` columns a CRM company record sets (see ``Writer._company_values``).
COMPANY_FIELDS = (
    "company_name",
    "line1",
    "line2",
    "city",
    "state",
    "postal_code",
    "country",
    "tax_status",
    "tax_status_source",
)
#: What a new customer's first change log entry records of its row.
_CREATED_FIELDS = (
    *COMPANY_FIELDS,
    "manual_primary_contact_id",
    "alias_conflicts",
    "ready",
    "archived_at",
)

# The columns of the lookups every page makes (see sql.find: compiled once each).
_COMPANY_HASHES = (
    external_refs.c.external_id,
    external_refs.c.content_hash,
    external_refs.c.merged_into,
)
_COMPANY_CUSTOMERS = (external_refs.c.external_id, external_refs.c.customer_id)
_PENDING = (pending_links.c.contact_external_id, pending_links.c.company_external_id)
_CONTACT_HASHES = (
    contacts.c.external_id,
    contacts.c.customer_id,
    contacts.c.content_hash,
    contacts.c.removed_at.is_(None).label("active"),
)


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
    stale: int = 0
    """Records skipped because the store holds a newer version (never applied)."""
    skipped: int = 0
    """Records with nothing to store: deleted in the CRM before crm-sync ever saw them."""
    touched: set[str] = field(default_factory=set)
    """Customers whose readiness must be recomputed."""

    def add(self, other: WriteCounts) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.stale += other.stale
        self.skipped += other.skipped
        self.touched |= other.touched


def _last_by_id(records: Iterable[Any]) -> list[Any]:
    """Keep the last record for each external id, in first-seen order."""
    latest: dict[str, Any] = {}
    for record in records:
        latest.pop(record.external_id, None)
        latest[record.external_id] = record
    return list(latest.values())


def _memberships(
    record: ContactRecord, customer_of: Mapping[str, str]
) -> tuple[dict[str, bool], dict[str, bool]]:
    """Where a contact belongs: (customer id -> designated) for companies the store
    knows, (company external id -> designated) for companies still to come."""
    desired: dict[str, bool] = {}
    waiting: dict[str, bool] = {}
    if not record.deleted:
        for link in record.companies:
            cid = customer_of.get(link.company_id)
            if cid is None:
                waiting[link.company_id] = waiting.get(link.company_id, False) or (
                    link.billing_contact
                )
            else:
                desired[cid] = desired.get(cid, False) or link.billing_contact
    return desired, waiting


def _email_text(raw: str | None) -> str | None:
    """A CRM email address as stored: trimmed, as the CRM holds it.

    Its syntax is checked when it matters, not here: the readiness refresh checks the
    primary billing contact's address (and keeps the outcome in ``email_valid``),
    readers check the others when they show them. Checking every address of a bulk
    import up front cost more than all of the import's database work.
    """
    if raw is None:
        return None
    return raw.strip() or None


def _contact_gone(row: Any) -> list[FieldChange]:
    """A contact row deleted from its customer (a merged duplicate), for the log."""
    if row.removed_at is not None:
        return []
    gone = [FieldChange("contacts", row.id, None)]
    if row.billing_preference == BillingPreference.PRIMARY:
        gone.append(FieldChange("primary_contact", primary_value(row._mapping), None))
    return gone


def _clean_aliases(values: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for value in values:
        text = value.strip()
        if text and fold_alias(text) not in seen:
            seen[fold_alias(text)] = text
    return list(seen.values())


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
        read_at: datetime | None = None,
        cause: str = "sync",
    ) -> None:
        self.conn = conn
        self.log = ChangeLog(cause=cause, at=now)
        """The customers' changes, logged by :meth:`refresh` (``cause``: why they changed,
        e.g. ``sync run 12``)."""
        self.read_at = read_at or now
        """When the records written were read from the CRM (their version's tie-break)."""
        self.connector = connector
        self.default_tax_status = default_tax_status
        self.order_for = order_for
        self.now = now
        self.changes = ContactChanges()
        """Contact rows decided on and not yet written: :meth:`refresh` writes them."""
        self._pending_seen: bool | None = None

    # -- companies -----------------------------------------------------------------

    def write_companies(self, records: Sequence[CompanyRecord]) -> WriteCounts:
        counts = WriteCounts()
        recs = _last_by_id(records)
        if not recs:
            return counts
        ours = (
            external_refs.c.connector == self.connector,
            external_refs.c.object_type == ObjectType.COMPANY.value,
        )
        # First tell unchanged records apart by their hashes; only the others need
        # their stored rows in full.
        stored: dict[str, tuple[str, str | None]] = {
            external_id: (digest, merged_into)
            for external_id, digest, merged_into in find(
                self.conn,
                _COMPANY_HASHES,
                external_refs.c.external_id,
                (r.external_id for r in recs),
                connector=self.connector,
                object_type=ObjectType.COMPANY.value,
            )
        }
        hashes = {r.external_id: content_hash(r) for r in recs}
        to_create: list[CompanyRecord] = []
        changed: list[CompanyRecord] = []
        for r in recs:
            seen = stored.get(r.external_id)
            if seen is None:
                if r.deleted:  # deleted before we ever saw it: nothing to hold
                    counts.skipped += 1
                else:
                    to_create.append(r)
            elif seen[1] is not None:
                counts.unchanged += 1  # merged into another record, which governs now
            elif seen[0] == hashes[r.external_id]:
                counts.unchanged += 1
            else:
                changed.append(r)
        existing = {
            row.external_id: row
            for row in select_in(
                self.conn,
                [
                    external_refs.c.external_id,
                    external_refs.c.customer_id,
                    external_refs.c.source_modified_at,
                    external_refs.c.source_read_at,
                    external_refs.c.deleted_at,
                    *(customers.c[name] for name in COMPANY_FIELDS),
                ],
                external_refs.c.external_id,
                (r.external_id for r in changed),
                *ours,
                external_refs.c.customer_id == customers.c.id,
                lock=True,  # the version decision below holds until this page commits
            )
        }
        to_update: list[tuple[CompanyRecord, Any]] = []
        for r in changed:
            row = existing[r.external_id]
            held = Version(row.source_modified_at, row.source_read_at)
            if supersedes(Version(r.modified_at, self.read_at), held):
                to_update.append((r, row))
            else:
                counts.stale += 1  # the store holds a newer version: never overwrite

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
                fold_customer(self.conn, loser.customer_id, winner.customer_id, self.now, self.log)
                counts.touched.add(loser.customer_id)  # kept, and held as merged
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

    def _new_customer(
        self, customer_id: str, r: CompanyRecord, order: Sequence[PrimarySource]
    ) -> dict[str, Any]:
        """The ``customers`` row for a new CRM company, with its readiness."""
        values = {
            "id": customer_id,
            **self._company_values(r, None, None),
            "manual_primary_contact_id": None,
            "manual_primary_set_at": None,
            "alias_conflicts": [],
            "archived_at": None,
            "created_at": self.now,
            "updated_at": self.now,
            "version": 1,
            "merged_into": None,
        }
        values["ready"], values["blocked_reasons"] = new_customer_readiness(values, order=order)
        created = diff(None, values, _CREATED_FIELDS)
        if values["blocked_reasons"]:
            created.append(FieldChange("blocked", None, blocked_codes(values["blocked_reasons"])))
        self.log.note(customer_id, [*created, FieldChange("aliases", None, customer_id)])
        return values

    def _create_companies(
        self, recs: list[CompanyRecord], hashes: dict[str, str], counts: WriteCounts
    ) -> list[CompanyRecord]:
        now = self.now
        ids = {r.external_id: new_id("cus") for r in recs}
        inserted = insert_rows(
            self.conn,
            external_refs,
            [
                {
                    "connector": self.connector,
                    "object_type": ObjectType.COMPANY.value,
                    "external_id": r.external_id,
                    "customer_id": ids[r.external_id],
                    "content_hash": hashes[r.external_id],
                    "source_modified_at": r.modified_at,
                    "source_read_at": self.read_at,
                    "deleted_at": None,
                    "merged_into": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for r in recs
            ],
            skip_conflicts=True,
        )
        if inserted == len(recs):
            claimed = set(ids)
        else:  # some were claimed by a concurrent writer: ours carry the ids made here
            claimed = {
                row.external_id
                for row in select_in(
                    self.conn,
                    [external_refs.c.external_id, external_refs.c.customer_id],
                    external_refs.c.external_id,
                    ids,
                    external_refs.c.connector == self.connector,
                    external_refs.c.object_type == ObjectType.COMPANY.value,
                )
                if row.customer_id == ids[row.external_id]
            }
        won = [r for r in recs if r.external_id in claimed]
        if won:
            order = self.order_for(self.connector)
            copy_rows(
                self.conn,
                customers,
                [self._new_customer(ids[r.external_id], r, order) for r in won],
            )
            self.log.created(ids[r.external_id] for r in won)
            copy_rows(
                self.conn,
                aliases,
                [
                    {
                        "value": ids[r.external_id],
                        "folded": fold_alias(ids[r.external_id]),
                        "customer_id": ids[r.external_id],
                        "source": "id",
                        "connector": None,
                        "created_at": now,
                    }
                    for r in won
                ],
            )
            # The customers were inserted ready or blocked as they are now; only those
            # whose aliases conflict or that waiting contacts join need a refresh.
            counts.touched |= self._sync_aliases(
                {ids[r.external_id]: r.aliases for r in won}, {}, new=True
            )
            counts.touched |= self._attach_pending({r.external_id: ids[r.external_id] for r in won})
            counts.created += len(won)
        return [r for r in recs if r.external_id not in claimed]

    def _update_companies(
        self, pairs: list[tuple[CompanyRecord, Any]], hashes: dict[str, str], counts: WriteCounts
    ) -> None:
        """Apply changed company records. A deletion is a tombstone: it marks the link
        deleted and changes nothing else (a CRM may send only the id of a deleted record;
        the customer keeps its fields and aliases, and is held as ``source_deleted``)."""
        now = self.now
        live = [(r, row) for r, row in pairs if not r.deleted]
        customer_rows = []
        for r, row in live:
            values = self._company_values(r, row.tax_status_source, row.tax_status)
            changes = diff(row._mapping, values, COMPANY_FIELDS)
            if changes:  # a customer the record leaves as it was is not written
                self.log.note(row.customer_id, changes)
                customer_rows.append({"id": row.customer_id, **values, "updated_at": now})
        update_rows(self.conn, customers, ["id"], customer_rows)
        update_rows(
            self.conn,
            external_refs,
            ["connector", "object_type", "external_id"],
            [
                {
                    "connector": self.connector,
                    "object_type": ObjectType.COMPANY.value,
                    "external_id": r.external_id,
                    "content_hash": hashes[r.external_id],
                    # a record without a modification time never forgets a known one
                    "source_modified_at": r.modified_at or row.source_modified_at,
                    "source_read_at": self.read_at,
                    "deleted_at": (row.deleted_at or now) if r.deleted else None,
                    "updated_at": now,
                }
                for r, row in pairs
            ],
        )
        if live:
            current = self._crm_aliases(row.customer_id for _, row in live)
            counts.touched |= self._sync_aliases(
                {row.customer_id: r.aliases for r, row in live}, current
            )
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

    def _sync_aliases(
        self, wanted: dict[str, Sequence[str]], current: dict[str, set[str]], *, new: bool = False
    ) -> set[str]:
        """Make each customer's CRM aliases (from this connector) what the CRM says.

        Returns the customers whose stored alias conflicts changed. ``new``: the
        customers were created in this transaction with no conflicts stored, so only
        those that have some need writing.
        """
        now = self.now
        desired = {cid: _clean_aliases(values) for cid, values in wanted.items()}
        remove = self._removed_aliases(desired, current)
        released: set[str] = set()
        if remove:
            self.conn.execute(
                sa.delete(aliases).where(
                    aliases.c.value.in_(remove),
                    aliases.c.source == "crm",
                    aliases.c.connector == self.connector,
                )
            )
            released = {fold_alias(value) for value in remove}
        candidates: dict[str, tuple[str, str]] = {}  # folded -> first claimant in page order
        for cid, values in desired.items():
            for value in values:
                if value not in current.get(cid, set()):
                    candidates.setdefault(fold_alias(value), (cid, value))
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
                folded = fold_alias(value)
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
        if wanted_rows and insert_rows(self.conn, aliases, wanted_rows, skip_conflicts=True) < len(
            wanted_rows
        ):  # a concurrent writer took some first: which?
            held = {
                (value, holder)
                for value, holder in select_in(
                    self.conn,
                    [aliases.c.value, aliases.c.customer_id],
                    aliases.c.folded,
                    (row["folded"] for row in wanted_rows),
                )
            }
            for row in wanted_rows:
                if (row["value"], row["customer_id"]) not in held:
                    conflicts[row["customer_id"]].append(row["value"])
            wanted_rows = [r for r in wanted_rows if (r["value"], r["customer_id"]) in held]
        self._note_aliases_added(wanted_rows)
        if new:
            conflicts = {cid: values for cid, values in conflicts.items() if values}
        changed = self._store_conflicts(conflicts)
        return changed | claim_released_aliases(self.conn, released, self.now, self.log)

    def _removed_aliases(
        self, desired: Mapping[str, Sequence[str]], current: Mapping[str, set[str]]
    ) -> list[str]:
        """The CRM aliases the customers no longer have (noted in the change log)."""
        removed = []
        for cid, have in current.items():
            gone = sorted(value for value in have if value not in desired.get(cid, ()))
            self.log.note(cid, [FieldChange("aliases", value, None) for value in gone])
            removed += gone
        return removed

    def _note_aliases_added(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.log.note(row["customer_id"], [FieldChange("aliases", None, row["value"])])

    def _store_conflicts(self, conflicts: dict[str, list[str]]) -> set[str]:
        if not conflicts:
            return set()
        rows = select_in(
            self.conn,
            [customers.c.id, customers.c.alias_conflicts],
            customers.c.id,
            conflicts.keys(),
        )
        changes = [
            {"id": row.id, "alias_conflicts": sorted(conflicts[row.id]), "updated_at": self.now}
            for row in rows
            if sorted(row.alias_conflicts or []) != sorted(conflicts[row.id])
        ]
        for row in rows:
            old = {"alias_conflicts": sorted(row.alias_conflicts or [])}
            self.log.note(row.id, diff(old, {"alias_conflicts": sorted(conflicts[row.id])}))
        update_rows(self.conn, customers, ["id"], changes)
        return {change["id"] for change in changes}

    # -- contacts ------------------------------------------------------------------

    def write_contacts(self, records: Sequence[ContactRecord]) -> WriteCounts:
        counts = WriteCounts()
        recs = _last_by_id(records)
        if not recs:
            return counts
        self._fold_merged_contacts([r for r in recs if r.merged_ids], counts)
        company_ids = {link.company_id for r in recs for link in r.companies}
        customer_of = self._customers_of(company_ids)
        unknown = company_ids - customer_of.keys()
        if unknown and lock_company_buckets(self.conn, self.connector, unknown):
            # Once the buckets are ours, a company created by a transaction that held
            # them first is committed and visible: attach to it instead of waiting.
            customer_of |= self._customers_of(unknown)
        pending: dict[str, set[str]] = defaultdict(set)
        for contact_id, company_id in find(
            self.conn,
            _PENDING,
            pending_links.c.contact_external_id,
            (r.external_id for r in recs) if self._any_pending() else (),
            connector=self.connector,
        ):
            pending[contact_id].add(company_id)

        changed, stored = self._changed_contacts(recs, customer_of, pending, counts)

        members: dict[str, dict[str, Any]] = defaultdict(dict)
        for row in select_in(
            self.conn,
            [
                contacts.c.id,
                contacts.c.customer_id,
                contacts.c.external_id,
                contacts.c.crm_designated,
                contacts.c.designated_at,
                contacts.c.removed_at,
                contacts.c.source_modified_at,
                contacts.c.source_read_at,
                contacts.c.billing_preference,
                contacts.c.name,
                contacts.c.email,
            ],
            contacts.c.external_id,
            (r.external_id for r, *_ in changed if r.external_id in stored),
            contacts.c.connector == self.connector,
            lock=True,  # the version decision below holds until this page commits
        ):
            members[row.external_id][row.customer_id] = row
            self.changes.before[row.id] = row._mapping

        changes = self.changes
        add_pending: list[dict[str, Any]] = []
        drop_pending: list[tuple[str, str]] = []
        for r, digest, desired, waiting in changed:
            have = members.get(r.external_id, {})
            active = {cid: row for cid, row in have.items() if row.removed_at is None}
            held = newest(Version(m.source_modified_at, m.source_read_at) for m in have.values())
            if held is not None and not supersedes(Version(r.modified_at, self.read_at), held):
                counts.stale += 1  # the store holds a newer version: never overwrite
                continue
            modified_at = r.modified_at or (held.modified_at if held else None)
            email = _email_text(r.email)
            for cid, designated in desired.items():
                member = have.get(cid)
                if member is None:
                    changes.inserts.append(self._new_contact(r, cid, designated, digest))
                    continue
                keep_since = member.crm_designated and member.removed_at is None
                changes.updates.append(
                    (
                        cid,
                        {
                            "id": member.id,
                            "name": r.name or None,
                            "email": email,
                            "email_valid": None,
                            "crm_designated": designated,
                            "designated_at": (member.designated_at if keep_since else self.now)
                            if designated
                            else None,
                            "content_hash": digest,
                            "source_modified_at": modified_at,
                            "source_read_at": self.read_at,
                            "removed_at": None,
                            "billing_preference": member.billing_preference
                            if member.removed_at is None
                            else BillingPreference.STANDARD.value,
                            "updated_at": self.now,
                        },
                    )
                )
            for cid, row in active.items():
                if cid not in desired:
                    changes.updates.append(
                        (
                            cid,
                            {
                                "id": row.id,
                                "name": r.name or None,
                                "email": email,
                                "email_valid": None,
                                "crm_designated": False,
                                "designated_at": None,
                                "content_hash": digest,
                                "source_modified_at": modified_at,
                                "source_read_at": self.read_at,
                                "removed_at": self.now,
                                "billing_preference": BillingPreference.NONE.value,
                                "updated_at": self.now,
                            },
                        )
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

        # The contact rows themselves are written by the refresh, in their final state.
        self._save_pending(add_pending, drop_pending)
        return counts

    def _changed_contacts(
        self,
        recs: Sequence[ContactRecord],
        customer_of: Mapping[str, str],
        pending: Mapping[str, set[str]],
        counts: WriteCounts,
    ) -> tuple[list[tuple[ContactRecord, str, dict[str, bool], dict[str, bool]]], set[str]]:
        """The records that change something, with their hash and memberships (known
        customers, companies still to come), and the ids the store holds a row of; the
        others are counted unchanged or skipped."""
        # First tell unchanged records apart with the few columns that takes (their
        # memberships' hashes); only the others need their stored rows in full.
        active_hashes: dict[str, dict[str, str | None]] = {}
        stored: set[str] = set()
        for external_id, customer_id, stored_hash, active in find(
            self.conn,
            _CONTACT_HASHES,
            contacts.c.external_id,
            (r.external_id for r in recs),
            connector=self.connector,
        ):
            stored.add(external_id)
            if active:
                active_hashes.setdefault(external_id, {})[customer_id] = stored_hash
        changed: list[tuple[ContactRecord, str, dict[str, bool], dict[str, bool]]] = []
        nothing: dict[str, str | None] = {}
        for r in recs:
            digest = content_hash(r)
            desired, waiting = _memberships(r, customer_of)
            active_now = active_hashes.get(r.external_id, nothing)
            if r.deleted and r.external_id not in stored and r.external_id not in pending:
                counts.skipped += 1  # deleted before we ever saw it: nothing to hold
            elif (
                active_now.keys() == desired.keys()
                and all(value == digest for value in active_now.values())
                and pending.get(r.external_id, set()) == waiting.keys()
            ):
                counts.unchanged += 1
            else:
                changed.append((r, digest, desired, waiting))
        return changed, stored

    def _fold_merged_contacts(self, survivors: list[ContactRecord], counts: WriteCounts) -> None:
        """Give a merged contact's memberships (and hand picks) to its survivor."""
        if not survivors:
            return
        pairs = {m: r.external_id for r in survivors for m in r.merged_ids if m != r.external_id}
        rows = select_in(
            self.conn,
            [
                contacts.c.id,
                contacts.c.customer_id,
                contacts.c.external_id,
                contacts.c.name,
                contacts.c.email,
                contacts.c.billing_preference,
                contacts.c.removed_at,
            ],
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
                picked = self.conn.execute(
                    sa.update(customers)
                    .where(customers.c.manual_primary_contact_id == row.id)
                    .values(manual_primary_contact_id=keep, updated_at=self.now)
                    .returning(customers.c.id)
                ).scalars()
                for cid in picked:
                    self.log.note(cid, [FieldChange("manual_primary_contact_id", row.id, keep)])
                self.conn.execute(sa.delete(contacts).where(contacts.c.id == row.id))
                self.log.note(row.customer_id, _contact_gone(row))
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
    ) -> dict[str, Any]:
        return {
            "id": new_id("con"),
            "customer_id": customer_id,
            "name": r.name or None,
            "email": _email_text(r.email),
            "email_valid": None,
            "billing_preference": BillingPreference.STANDARD.value,
            "origin": ContactOrigin.CRM.value,
            "connector": self.connector,
            "external_id": r.external_id,
            "crm_designated": designated,
            "designated_at": self.now if designated else None,
            "content_hash": digest,
            "source_modified_at": r.modified_at,
            "source_read_at": self.read_at,
            "removed_at": None,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def _any_pending(self) -> bool:
        """Whether any contact of this connector waits for its company (one indexed probe:
        usually none do, and then the page's lookups by id are skipped)."""
        if self._pending_seen is None:
            found = self.conn.execute(
                sa.select(pending_links.c.connector)
                .where(pending_links.c.connector == self.connector)
                .limit(1)
            ).first()
            self._pending_seen = found is not None
        return self._pending_seen

    def _save_pending(self, add: list[dict[str, Any]], drop: list[tuple[str, str]]) -> None:
        if add:
            self._pending_seen = True
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

    def _customers_of(self, company_ids: Iterable[str]) -> dict[str, str]:
        return dict(
            find(
                self.conn,
                _COMPANY_CUSTOMERS,
                external_refs.c.external_id,
                company_ids,
                connector=self.connector,
                object_type=ObjectType.COMPANY.value,
            )
        )

    def _attach_pending(self, customer_of: dict[str, str]) -> set[str]:
        """Attach contacts that arrived before the companies they belong to.

        Returns the customers that got contacts. The companies' buckets are locked first
        (see :func:`lock_company_buckets`), so a contact a concurrent transaction left
        waiting for one of them is committed, and seen, by the time we look.
        """
        if lock_company_buckets(self.conn, self.connector, customer_of.keys()):
            self._pending_seen = None  # probe again: a waiting contact may be committed now
        if not self._any_pending():
            return set()
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
            return set()
        inserts = []
        for row in rows:
            data = dict(row.record)
            designated = bool(data.pop("billing_contact", False))
            record = ContactRecord.model_validate(data)
            inserts.append(
                self._new_contact(
                    record, customer_of[row.company_external_id], designated, content_hash(record)
                )
            )
        # the customers are new in this transaction: no other writer can add to them
        insert_rows(self.conn, contacts, inserts, conflict_on=MEMBERSHIP_KEY)
        for row in inserts:
            self.log.note(row["customer_id"], [FieldChange("contacts", None, row["id"])])
        for row in rows:
            self.conn.execute(
                sa.delete(pending_links).where(
                    pending_links.c.connector == self.connector,
                    pending_links.c.contact_external_id == row.contact_external_id,
                    pending_links.c.company_external_id == row.company_external_id,
                )
            )
        return {customer_of[row.company_external_id] for row in rows}

    # -- readiness -----------------------------------------------------------------

    def defer(self, customer_ids: Iterable[str]) -> None:
        """Write the contact rows :meth:`write_contacts` decided on, mark the given
        customers (and those the rows belong to) for a later readiness refresh, and log
        what changed about every customer this writer changed."""
        changes, self.changes = self.changes, ContactChanges()
        touched = set(customer_ids) | write_deferred(self.conn, changes, self.log)
        # a customer whose version the log bumps gets its mark in the same row update
        bumped = self.log.flush(self.conn, also={"refresh_pending": True})
        mark_pending(self.conn, touched - bumped)

    def refresh(self, customer_ids: Iterable[str]) -> int:
        """Recompute primary contacts and readiness of the given customers, writing the
        contact rows :meth:`write_contacts` decided on; then log what changed about every
        customer this writer changed (one entry each, its version bumped)."""
        changes, self.changes = self.changes, ContactChanges()
        changed = refresh_customers(
            self.conn,
            customer_ids,
            order_for=self.order_for,
            now=self.now,
            changes=changes,
            log=self.log,
        )
        self.log.flush(self.conn)
        return changed


_BUCKETS = 128
_PENDING_LOCK_CLASS = 0x63726D  # the advisory-lock namespace of pending links ("crm")


def lock_company_buckets(conn: Connection, connector: str, company_ids: Iterable[str]) -> bool:
    """Serialise the creation of companies with the parking of contacts that wait for them.

    A contact is parked in ``pending_links`` when its company is unknown, and a new
    company takes the contacts parked for it. Under READ COMMITTED neither transaction
    sees the other's uncommitted rows, so both take these transaction-scoped advisory
    locks (one per bucket of company ids, in bucket order) before they look: whichever
    comes second sees what the first committed. SQLite serialises writers already.
    Returns whether locks were taken.
    """
    if conn.dialect.name != "postgresql":
        return False
    buckets = sorted(
        {zlib.crc32(f"{connector}\x1f{cid}".encode()) % _BUCKETS for cid in company_ids}
    )
    if not buckets:
        return False
    conn.execute(
        sa.text(
            "SELECT count(pg_advisory_xact_lock(:namespace, b))"
            " FROM (SELECT unnest(CAST(:buckets AS integer[])) AS b ORDER BY 1) AS ordered"
        ),
        {"namespace": _PENDING_LOCK_CLASS, "buckets": buckets},
    )
    return True


def claim_released_aliases(
    conn: Connection, released: set[str], now: datetime, log: ChangeLog
) -> set[str]:
    """Give aliases that were just released to the customers held for wanting them.

    A customer whose CRM record asked for an alias another customer held keeps it as an
    alias conflict; once the holder lets it go (its CRM record dropped it, or a person
    removed it), the first waiting customer (in id order) claims it through the unique
    key, so two writers releasing and claiming at once still leave one holder. Returns
    the customers whose conflicts changed (their readiness must be recomputed); their
    changes are noted in ``log``.
    """
    if not released:
        return set()
    waiting = conn.execute(
        sa.select(customers.c.id, customers.c.alias_conflicts)
        .where(
            sa.cast(customers.c.alias_conflicts, sa.Text) != "[]",
            customers.c.merged_into.is_(None),
        )
        .order_by(customers.c.id)
    ).all()
    changed: set[str] = set()
    for row in waiting:
        wanted = [v for v in row.alias_conflicts or [] if fold_alias(v) in released]
        if not wanted:
            continue
        connector = conn.execute(
            sa.select(external_refs.c.connector)
            .where(
                external_refs.c.customer_id == row.id,
                external_refs.c.object_type == ObjectType.COMPANY.value,
            )
            .order_by(external_refs.c.created_at)
            .limit(1)
        ).scalar_one_or_none()
        won = {
            value
            for value in wanted
            if insert_rows(
                conn,
                aliases,
                [
                    {
                        "value": value,
                        "folded": fold_alias(value),
                        "customer_id": row.id,
                        "source": "crm",
                        "connector": connector,
                        "created_at": now,
                    }
                ],
                skip_conflicts=True,
            )
        }
        if won:
            left = [v for v in row.alias_conflicts if v not in won]
            log.note(
                row.id,
                [
                    *set_changes("aliases", (), won),
                    FieldChange("alias_conflicts", list(row.alias_conflicts), left),
                ],
            )
            conn.execute(
                sa.update(customers)
                .where(customers.c.id == row.id)
                .values(alias_conflicts=left, updated_at=now)
            )
            changed.add(row.id)
    return changed


def fold_customer(conn: Connection, loser: str, winner: str, now: datetime, log: ChangeLog) -> None:
    """Fold customer ``loser`` into ``winner``: the loser is kept, marked merged.

    Contacts, aliases (the loser's id now resolves to the winner), CRM links, billing
    schedules and invoices move; a hand-picked primary and a tax-status override move
    when the winner has none of its own. The loser stays (a billing platform may know
    it) with ``merged_into`` set: never listed, never ready. Both customers' changes
    are noted in ``log``.
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
    moving = conn.execute(
        sa.select(
            contacts.c.id,
            contacts.c.name,
            contacts.c.email,
            contacts.c.connector,
            contacts.c.external_id,
            contacts.c.billing_preference,
            contacts.c.removed_at,
        ).where(contacts.c.customer_id == loser)
    ).all()
    pick = lost.manual_primary_contact_id
    twins: set[str] = set()
    for r in moving:
        twin = theirs.get((r.connector, r.external_id)) if r.connector is not None else None
        if twin is not None:  # the winner has this CRM contact already
            pick = twin if pick == r.id else pick
            twins.add(r.id)
            conn.execute(sa.delete(contacts).where(contacts.c.id == r.id))
    conn.execute(
        sa.update(contacts)
        .where(contacts.c.customer_id == loser)
        .values(
            customer_id=winner, billing_preference=BillingPreference.STANDARD.value, updated_at=now
        )
    )
    moved_aliases = list(
        conn.execute(sa.select(aliases.c.value).where(aliases.c.customer_id == loser)).scalars()
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
    kept: dict[str, Any] = {
        "merged_into": winner,
        "manual_primary_contact_id": None,
        "alias_conflicts": [],
    }
    conn.execute(
        sa.update(customers)
        .where(customers.c.id == loser)
        .values(manual_primary_set_at=None, updated_at=now, **kept)
    )
    active = [r for r in moving if r.removed_at is None]
    primary = next((r for r in active if r.billing_preference == BillingPreference.PRIMARY), None)
    log.note(
        loser,
        [
            *diff(lost._mapping, kept),
            *set_changes("contacts", (r.id for r in active), ()),
            *set_changes("aliases", moved_aliases, ()),
            *diff(
                {"primary_contact": primary_value(primary._mapping if primary else None)},
                {"primary_contact": None},
            ),
        ],
    )
    log.note(
        winner,
        [
            *diff(won._mapping, changes),
            *set_changes("contacts", (), (r.id for r in active if r.id not in twins)),
            *set_changes("aliases", (), moved_aliases),
            FieldChange("merged_customers", None, loser),
        ],
    )
