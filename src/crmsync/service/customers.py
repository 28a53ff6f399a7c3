"""Reading customers, and the changes a person makes to them by hand.

Every change runs in one transaction and ends by re-applying the domain rules to
the customer (primary billing contact, readiness), so what a person sees right
after a change is what the gate will use. What is set here is owned by the
person: a sync never overwrites a hand-added contact or alias, a hand-picked
primary, or a tax-status override.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters import changelog
from crmsync.adapters.changelog import ChangeLog
from crmsync.adapters.readiness import OrderFor, refresh_customers
from crmsync.adapters.sql import chunks, insert_for, is_in, new_id
from crmsync.adapters.tables import (
    aliases,
    billing_links,
    billing_schedules,
    contacts,
    customers,
    external_refs,
    invoices,
)
from crmsync.adapters.writer import claim_released_aliases
from crmsync.domain import (
    BillingPreference,
    ContactOrigin,
    FieldSource,
    TaxStatus,
    archive_plan,
    check_email,
)
from crmsync.domain.changes import FieldChange, diff
from crmsync.domain.values import fold_alias
from crmsync.errors import AliasConflictError, InvalidContactError, NotFoundError, RuleViolation
from crmsync.sdk.connector import utc_now
from crmsync.sdk.records import ObjectType

__all__ = [
    "ArchiveResult",
    "CustomerService",
    "customer_json",
]

MAX_ALIAS_LENGTH = 255
#: Entries ``history`` returns unless told otherwise.
HISTORY_LIMIT = 50


def _command(name: str, now: datetime) -> ChangeLog:
    """The change log of a hand-made change: its cause names the command."""
    return ChangeLog(cause=f"command: {name}", at=now)


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    customer_id: str
    already_archived: bool
    schedules_archived: int
    invoices_voided: int
    invoices_kept: int


#: Customers a listing reads per page (and per query of each related table): 1,000
#: was no faster and held 5 MiB more.
LIST_PAGE = 500
#: The SQLite page cache (KiB) of a listing's connection: a listing reads each page of
#: the file once, so the writer's 64 MiB cache would only hold memory (it was two
#: thirds of a large listing's peak).
LIST_CACHE_KIB = 2_048

_CUSTOMER_COLUMNS = (
    customers.c.id,
    customers.c.company_name,
    customers.c.tax_status,
    customers.c.tax_status_source,
    customers.c.line1,
    customers.c.line2,
    customers.c.city,
    customers.c.state,
    customers.c.postal_code,
    customers.c.country,
    customers.c.ready,
    customers.c.blocked_reasons,
    customers.c.archived_at,
    customers.c.created_at,
    customers.c.updated_at,
    customers.c.version,
    customers.c.merged_into,
)
_CONTACT_COLUMNS = (
    contacts.c.customer_id,
    contacts.c.id,
    contacts.c.name,
    contacts.c.email,
    contacts.c.email_valid,
    contacts.c.billing_preference,
    contacts.c.origin,
    contacts.c.connector,
    contacts.c.external_id,
)
_ALIAS_COLUMNS = (aliases.c.customer_id, aliases.c.value, aliases.c.source, aliases.c.connector)
_REF_COLUMNS = (
    external_refs.c.customer_id,
    external_refs.c.connector,
    external_refs.c.object_type,
    external_refs.c.external_id,
    external_refs.c.deleted_at.is_not(None).label("deleted_in_source"),
)


@lru_cache(maxsize=4_096)
def _email_ok(email: str | None) -> bool:
    """Whether an address not checked yet is valid (a reader checks it when it shows it;
    the same address on several contacts is checked once)."""
    return check_email(email).valid


def _contact_json(row: Any) -> dict[str, Any]:
    known = row.email_valid
    return {
        "id": row.id,
        "name": row.name,
        "email": row.email,
        "email_valid": bool(known) if known is not None else _email_ok(row.email),
        "billing_preference": row.billing_preference,
        "origin": row.origin,
        "connector": row.connector,
        "external_id": row.external_id,
    }


def _billing_json(link: Any, version: int) -> dict[str, Any]:
    return {
        "billing_customer_id": link.billing_customer_id,
        "pushed_version": link.pushed_version,
        "up_to_date": link.pushed_version == version,
        "last_outcome": link.last_outcome,
        "last_error": link.last_error,
        "pushed_at": link.pushed_at.isoformat(),
    }


def _same_email(stored: str | None, given: str) -> bool:
    """Whether two addresses are the same one, ignoring case (CRMs keep them as typed)."""
    return stored is not None and stored.strip().casefold() == given.strip().casefold()


def customer_json(
    row: Any, contact_rows: Sequence[Any], alias_rows: Sequence[Any], ref_rows: Sequence[Any]
) -> dict[str, Any]:
    """The stable ``--json`` shape of a customer (documented in the README)."""
    contact_list = [_contact_json(c) for c in contact_rows]
    primary = next(
        (c for c in contact_list if c["billing_preference"] == BillingPreference.PRIMARY), None
    )
    return {
        "id": row.id,
        "company_name": row.company_name,
        "tax_status": row.tax_status,
        "tax_status_source": row.tax_status_source,
        "billing_address": {
            "line1": row.line1,
            "line2": row.line2,
            "city": row.city,
            "state": row.state,
            "postal_code": row.postal_code,
            "country": row.country,
        },
        "primary_billing_contact": primary,
        "contacts": contact_list,
        "aliases": [
            {"value": a.value, "source": a.source, "connector": a.connector} for a in alias_rows
        ],
        "external_refs": [
            {
                "connector": r.connector,
                "object_type": r.object_type,
                "external_id": r.external_id,
                "deleted_in_source": bool(r.deleted_in_source),
            }
            for r in ref_rows
        ],
        "ready": row.ready,
        "blocked_reasons": list(row.blocked_reasons or []),
        "archived_at": row.archived_at.isoformat() if row.archived_at else None,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "version": row.version,
        "merged_into": row.merged_into,
    }


@contextmanager
def _small_page_cache(conn: Connection) -> Iterator[None]:
    """On SQLite, a small page cache while a listing reads a page (pages beyond it are
    freed), and the connection's own size back before the page is handed on: the pool
    gives the connection to writers too."""
    if conn.dialect.name != "sqlite":
        yield
        return
    size = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size=-{LIST_CACHE_KIB}")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(size or 0)}")


class CustomerService:
    """Queries and hand-made changes; each public method takes the connection to use."""

    def __init__(self, *, order_for: OrderFor) -> None:
        self.order_for = order_for

    # -- reading ---------------------------------------------------------------------

    def resolve(self, conn: Connection, id_or_alias: str) -> str:
        """The customer a name stands for, tried in this order: an id or alias exactly as
        stored; an alias in another case or Unicode form; a CRM company id (``C-1031``, or
        ``connector:C-1031`` where two connectors share an id, or the billing alias a
        push gives it, ``connector:company:C-1031``)."""
        exact = conn.execute(
            sa.select(aliases.c.customer_id).where(aliases.c.value == id_or_alias)
        ).scalar_one_or_none()
        if exact is not None:
            return str(exact)
        folded = conn.execute(
            sa.select(aliases.c.customer_id).where(aliases.c.folded == fold_alias(id_or_alias))
        ).scalar_one_or_none()
        if folded is not None:
            return str(folded)
        found = self._by_crm_id(conn, id_or_alias)
        if found is None:
            raise NotFoundError(f"no customer has the id, alias or CRM record id {id_or_alias!r}")
        return found

    @staticmethod
    def _by_crm_id(conn: Connection, name: str) -> str | None:
        stmt = sa.select(external_refs.c.connector, external_refs.c.customer_id).where(
            external_refs.c.object_type == ObjectType.COMPANY.value
        )
        matches = conn.execute(stmt.where(external_refs.c.external_id == name)).all()
        connector, sep, external_id = name.partition(":")
        # the billing alias a push gives a customer: ``connector:company:C-1031``
        external_id = external_id.removeprefix(f"{ObjectType.COMPANY.value}:")
        if not matches and sep:
            matches = conn.execute(
                stmt.where(
                    external_refs.c.connector == connector,
                    external_refs.c.external_id == external_id,
                )
            ).all()
        customers_found = {row.customer_id for row in matches}
        if len(customers_found) > 1:
            names = ", ".join(sorted(f"{row.connector}:{name}" for row in matches))
            raise RuleViolation(
                f"{len(customers_found)} customers come from a CRM record {name!r};"
                f" name one as {names}"
            )
        return str(customers_found.pop()) if customers_found else None

    @staticmethod
    def _details(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
        """The ``--json`` shapes of ``rows`` (``customers`` rows, at least the columns of
        :data:`_CUSTOMER_COLUMNS`): one query per related table for all of them."""
        ids = [r.id for r in rows]
        by_contact: dict[str, list[Any]] = defaultdict(list)
        by_alias: dict[str, list[Any]] = defaultdict(list)
        by_ref: dict[str, list[Any]] = defaultdict(list)
        for c in conn.execute(
            sa.select(*_CONTACT_COLUMNS)
            .where(is_in(conn, contacts.c.customer_id, ids), contacts.c.removed_at.is_(None))
            .order_by(contacts.c.created_at, contacts.c.id)
        ).all():
            by_contact[c.customer_id].append(c)
        for a in conn.execute(
            sa.select(*_ALIAS_COLUMNS)
            .where(is_in(conn, aliases.c.customer_id, ids))
            .order_by(aliases.c.value)
        ).all():
            by_alias[a.customer_id].append(a)
        for ref in conn.execute(
            sa.select(*_REF_COLUMNS)
            .where(is_in(conn, external_refs.c.customer_id, ids))
            .order_by(external_refs.c.created_at)
        ).all():
            by_ref[ref.customer_id].append(ref)
        return [customer_json(r, by_contact[r.id], by_alias[r.id], by_ref[r.id]) for r in rows]

    def waiting_for_refresh(self, conn: Connection, id_or_alias: str) -> str | None:
        """The customer's id when its readiness waits for a refresh (a sync marked it
        and has not refreshed it yet), else None."""
        customer_id = self.resolve(conn, id_or_alias)
        pending = conn.execute(
            sa.select(customers.c.refresh_pending).where(customers.c.id == customer_id)
        ).scalar_one()
        return customer_id if pending else None

    def refresh(self, conn: Connection, customer_id: str, *, now: datetime | None = None) -> None:
        """Recompute one customer's primary contact and readiness now."""
        refresh_customers(conn, [customer_id], order_for=self.order_for, now=now or utc_now())

    def show(self, conn: Connection, id_or_alias: str) -> dict[str, Any]:
        """One customer in full, with its link to the billing platform (``billing``:
        None until a push has tried to send it)."""
        customer_id = self.resolve(conn, id_or_alias)
        row = conn.execute(sa.select(*_CUSTOMER_COLUMNS).where(customers.c.id == customer_id)).one()
        data = self._details(conn, [row])[0]
        link = conn.execute(
            sa.select(billing_links).where(billing_links.c.customer_id == customer_id)
        ).first()
        data["billing"] = None if link is None else _billing_json(link, data["version"])
        return data

    def iter_customers(
        self,
        conn: Connection,
        *,
        blocked_only: bool = False,
        ready_only: bool = False,
        include_archived: bool = True,
        after: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every customer in id order (creation order), from just after ``after`` when
        given, only those held (``blocked_only``) or ready (``ready_only``) when asked.

        Read a page of :data:`LIST_PAGE` customers at a time (keyset on the id), with one
        query per related table per page, so memory stays flat however many there are.
        """
        stmt = sa.select(*_CUSTOMER_COLUMNS).where(customers.c.merged_into.is_(None))
        if blocked_only:
            stmt = stmt.where(customers.c.ready.is_(False))
        if ready_only:
            stmt = stmt.where(customers.c.ready.is_(True))
        if not include_archived:
            stmt = stmt.where(customers.c.archived_at.is_(None))
        stmt = stmt.order_by(customers.c.id).limit(LIST_PAGE)
        last = after or ""
        while True:
            with _small_page_cache(conn):
                rows = conn.execute(stmt.where(customers.c.id > last)).all()
                page = self._details(conn, rows) if rows else []
            if not page:
                return
            yield from page
            last = rows[-1].id

    def summary(self, conn: Connection) -> dict[str, Any]:
        """Customers ready and blocked (by reason), for the end-of-sync report."""
        ready = blocked = archived = 0
        by_reason: dict[str, int] = defaultdict(int)
        result = conn.execute(
            sa.select(
                customers.c.ready, customers.c.blocked_reasons, customers.c.archived_at
            ).where(customers.c.merged_into.is_(None))
        )
        for row in result:
            if row.archived_at is not None:
                archived += 1
            if row.ready:
                ready += 1
                continue
            blocked += 1
            for reason in row.blocked_reasons or []:
                by_reason[reason["code"]] += 1
        return {
            "customers": ready + blocked,
            "ready": ready,
            "blocked": blocked,
            "archived": archived,
            "blocked_by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        }

    def history(
        self,
        conn: Connection,
        id_or_alias: str,
        *,
        limit: int = HISTORY_LIMIT,
        after_version: int | None = None,
    ) -> list[dict[str, Any]]:
        """The customer's change log, newest first: ``version``, ``at`` (ISO 8601),
        ``cause`` and ``changes`` (``field``, ``old``, ``new``), at most ``limit``
        entries, only those after ``after_version`` when given."""
        customer_id = self.resolve(conn, id_or_alias)
        return changelog.entries(conn, customer_id, limit=limit, after_version=after_version)

    # -- changes ---------------------------------------------------------------------

    def _customer_row(self, conn: Connection, id_or_alias: str) -> Any:
        customer_id = self.resolve(conn, id_or_alias)
        return conn.execute(
            sa.select(customers).where(customers.c.id == customer_id).with_for_update()
        ).one()

    def _refresh(self, conn: Connection, customer_id: str, now: datetime, log: ChangeLog) -> None:
        """Re-apply the rules, then log what the change did (one entry per customer)."""
        refresh_customers(conn, [customer_id], order_for=self.order_for, now=now, log=log)
        log.flush(conn)

    def add_contact(
        self,
        conn: Connection,
        customer: str,
        *,
        name: str,
        email: str,
        primary: bool,
        now: datetime,
    ) -> dict[str, Any]:
        """Add a contact by hand; it becomes primary when asked or when there is none."""
        if not name.strip():
            raise InvalidContactError("a contact needs a name (--name)")
        checked = check_email(email)
        if not checked.valid:
            raise InvalidContactError(f"the email address is not valid: {checked.problem}")
        row = self._customer_row(conn, customer)
        existing = next(
            (c for c in self._active_contacts(conn, row.id) if _same_email(c.email, email)), None
        )
        if existing is not None:
            raise RuleViolation(
                f"customer {row.id} already has a contact with that email ({existing.id})"
            )
        has_primary = conn.execute(
            sa.select(contacts.c.id).where(
                contacts.c.customer_id == row.id,
                contacts.c.billing_preference == BillingPreference.PRIMARY.value,
            )
        ).first()
        contact_id = new_id("con")
        conn.execute(
            sa.insert(contacts),
            {
                "id": contact_id,
                "customer_id": row.id,
                "name": name.strip() or None,
                "email": checked.value,
                "email_valid": True,
                "billing_preference": BillingPreference.STANDARD.value,
                "origin": ContactOrigin.MANUAL.value,
                "connector": None,
                "external_id": None,
                "crm_designated": False,
                "designated_at": None,
                "content_hash": None,
                "source_modified_at": None,
                "removed_at": None,
                "created_at": now,
                "updated_at": now,
            },
        )
        log = _command("contacts add", now)
        log.note(row.id, [FieldChange("contacts", None, contact_id)])
        if primary or has_primary is None:
            self._pick(conn, row, contact_id, now, log)
        self._refresh(conn, row.id, now, log)
        return self.show(conn, row.id)

    def _active_contacts(self, conn: Connection, customer_id: str) -> list[Any]:
        return list(
            conn.execute(
                sa.select(
                    contacts.c.id, contacts.c.email, contacts.c.connector, contacts.c.external_id
                ).where(contacts.c.customer_id == customer_id, contacts.c.removed_at.is_(None))
            ).all()
        )

    def _pick(
        self, conn: Connection, row: Any, contact_id: str, now: datetime, log: ChangeLog
    ) -> None:
        log.note(row.id, diff(row._mapping, {"manual_primary_contact_id": contact_id}))
        conn.execute(
            sa.update(customers)
            .where(customers.c.id == row.id)
            .values(manual_primary_contact_id=contact_id, manual_primary_set_at=now, updated_at=now)
        )

    def set_primary(
        self, conn: Connection, customer: str, contact: str, *, now: datetime
    ) -> dict[str, Any]:
        """Make a contact (by id, email or CRM record id) the primary billing contact, by
        hand. Refused, changing nothing, when the contact has no valid email: a primary
        billing contact without one would hold the customer."""
        row = self._customer_row(conn, customer)
        match = [
            c
            for c in self._active_contacts(conn, row.id)
            if contact in (c.id, c.external_id, f"{c.connector}:{c.external_id}")
            or _same_email(c.email, contact)
        ]
        if not match:
            raise NotFoundError(f"customer {row.id} has no contact {contact!r}")
        if len(match) > 1:
            raise RuleViolation(
                f"{len(match)} contacts of customer {row.id} match; name the contact by id"
            )
        if match[0].email is None:
            raise InvalidContactError(
                f"contact {match[0].id} has no email address; a primary billing contact needs"
                " one (fix it in the CRM, or add a contact with --primary)"
            )
        checked = check_email(match[0].email)
        if not checked.valid:
            raise InvalidContactError(
                f"contact {match[0].id} cannot be the primary billing contact: its email"
                f" address is not valid: {checked.problem}"
            )
        log = _command("contacts set-primary", now)
        self._pick(conn, row, match[0].id, now, log)
        self._refresh(conn, row.id, now, log)
        return self.show(conn, row.id)

    def set_tax_status(
        self, conn: Connection, customer: str, status: TaxStatus, *, now: datetime
    ) -> dict[str, Any]:
        """Override the tax status by hand; syncs no longer change it."""
        row = self._customer_row(conn, customer)
        values = {"tax_status": status.value, "tax_status_source": FieldSource.MANUAL.value}
        log = _command("customers set-tax-status", now)
        log.note(row.id, diff(row._mapping, values))
        conn.execute(
            sa.update(customers).where(customers.c.id == row.id).values(updated_at=now, **values)
        )
        self._refresh(conn, row.id, now, log)
        return self.show(conn, row.id)

    def add_alias(self, conn: Connection, customer: str, alias: str, *, now: datetime) -> str:
        """Give the customer an alias; refused if it (or a case variant) is taken."""
        row = self._customer_row(conn, customer)
        if not alias or alias != alias.strip():
            raise RuleViolation("an alias cannot be empty or start or end with white space")
        if len(alias) > MAX_ALIAS_LENGTH:
            raise RuleViolation(f"an alias is at most {MAX_ALIAS_LENGTH} characters")
        stmt = insert_for(conn, aliases).on_conflict_do_nothing().returning(aliases.c.value)
        inserted = conn.execute(
            stmt,
            {
                "value": alias,
                "folded": fold_alias(alias),
                "customer_id": row.id,
                "source": "manual",
                "connector": None,
                "created_at": now,
            },
        ).first()
        if inserted is None:
            holder = conn.execute(
                sa.select(aliases.c.value, aliases.c.customer_id).where(
                    sa.or_(aliases.c.folded == fold_alias(alias), aliases.c.value == alias)
                )
            ).first()
            if holder is not None and holder.customer_id == row.id and holder.value == alias:
                return str(row.id)  # already there: nothing to do
            raise AliasConflictError(
                alias, holder.customer_id if holder else "?", holder.value if holder else alias
            )
        log = _command("aliases add", now)
        log.note(row.id, [FieldChange("aliases", None, alias)])
        conflicts = [a for a in (row.alias_conflicts or []) if a != alias]
        if conflicts != list(row.alias_conflicts or []):
            log.note(row.id, diff(row._mapping, {"alias_conflicts": conflicts}))
            conn.execute(
                sa.update(customers)
                .where(customers.c.id == row.id)
                .values(alias_conflicts=conflicts, updated_at=now)
            )
        self._refresh(conn, row.id, now, log)
        return str(row.id)

    def remove_alias(self, conn: Connection, alias: str, *, now: datetime | None = None) -> str:
        """Remove an alias added by hand; the customer id and CRM aliases stay. A customer
        held for wanting that alias from its CRM gets it now."""
        row = conn.execute(sa.select(aliases).where(aliases.c.value == alias)).first()
        if row is None:
            raise NotFoundError(f"no customer has the alias {alias!r}")
        if row.source == "id":
            raise RuleViolation("a customer's own id is always one of its aliases")
        if row.source == "crm":
            raise RuleViolation(
                f"alias {alias!r} comes from the CRM ({row.connector}); change it there"
            )
        conn.execute(sa.delete(aliases).where(aliases.c.value == alias))
        when = now or utc_now()
        log = _command("aliases remove", when)
        log.note(row.customer_id, [FieldChange("aliases", alias, None)])
        claimants = claim_released_aliases(conn, {fold_alias(alias)}, when, log)
        refresh_customers(
            conn, {row.customer_id, *claimants}, order_for=self.order_for, now=when, log=log
        )
        log.flush(conn)
        return str(row.customer_id)

    def archive(self, conn: Connection, customer: str, *, now: datetime) -> ArchiveResult:
        """Archive the customer: its schedules are archived, its draft invoices voided."""
        row = self._customer_row(conn, customer)
        schedules = conn.execute(
            sa.select(billing_schedules.c.id, billing_schedules.c.archived_at).where(
                billing_schedules.c.customer_id == row.id
            )
        ).all()
        invoice_rows = conn.execute(
            sa.select(invoices.c.id, invoices.c.status).where(invoices.c.customer_id == row.id)
        ).all()
        to_archive, to_void = archive_plan(
            [(s.id, s.archived_at) for s in schedules], [(i.id, i.status) for i in invoice_rows]
        )
        for batch in chunks(to_archive):
            conn.execute(
                sa.update(billing_schedules)
                .where(billing_schedules.c.id.in_(batch))
                .values(archived_at=now, updated_at=now)
            )
        for batch in chunks(to_void):
            conn.execute(
                sa.update(invoices)
                .where(invoices.c.id.in_(batch))
                .values(status="VOIDED", updated_at=now)
            )
        already = row.archived_at is not None
        log = _command("customers archive", now)
        if not already:
            log.note(row.id, diff(row._mapping, {"archived_at": now}))
            conn.execute(
                sa.update(customers)
                .where(customers.c.id == row.id)
                .values(archived_at=now, updated_at=now)
            )
        self._refresh(conn, row.id, now, log)
        kept = sum(1 for i in invoice_rows if i.status in {"FINAL", "SENT"})
        return ArchiveResult(row.id, already, len(to_archive), len(to_void), kept)
