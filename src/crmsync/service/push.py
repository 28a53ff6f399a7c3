"""Pushing ready customers to the billing platform (Sequence).

:func:`push` first recomputes the readiness still waiting for a refresh (so ``ready``
can be trusted), then reads the customers a page at a time and, for each:

- held (not ready): never sent; listed with its reasons;
- ready, its version equal to the version last pushed: skipped without a request;
- ready and linked to a billing customer: ``GET`` it, merge (what only the billing side
  has is kept: ``PUT`` replaces every contact) and ``PUT`` - two requests;
- ready and not linked: look its deterministic alias up first (``GET
  /customers/by-alias``), create it if nobody holds the alias - two requests - or, if a
  billing customer does (a create that timed out, or a push that died before it
  recorded the link), update that one. The client's create recovers by the same alias
  after a timeout, so no path makes a second billing customer.

Each customer's outcome is recorded in ``billing_links`` in its own transaction, right
after its requests (:mod:`crmsync.adapters.billing_links`). An alias held by another
billing customer is a conflict for a person: recorded with both sides, nothing is
overwritten. With ``dry_run`` nothing is sent and nothing recorded: the result lists the
requests that would go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from crmsync.adapters.billing_links import (
    AlreadyLinked,
    Candidate,
    MergedAway,
    candidates,
    linked_to,
    merged_away,
    record_failure,
    record_success,
    unchanged_count,
    waiting_count,
)
from crmsync.adapters.readiness import OrderFor, refresh_pending
from crmsync.adapters.store import Store
from crmsync.billing.client import SequenceClient
from crmsync.billing.errors import (
    AliasTaken,
    BillingApiError,
    BillingAuthError,
    BillingError,
    BillingRateLimited,
)
from crmsync.billing.models import CustomerRequest, IntegrationService
from crmsync.domain import DEFAULT_PRIMARY_ORDER, PrimarySource
from crmsync.domain.push import (
    Held,
    NotSendable,
    crm_record_of,
    customer_request,
    merge_for_update,
    push_alias,
)
from crmsync.errors import NotFoundError
from crmsync.sdk.connector import utc_now
from crmsync.service.customers import CustomerService

__all__ = [
    "AliasClash",
    "CustomerPush",
    "HeldCustomer",
    "MergedAway",
    "PlannedRequest",
    "PushResult",
    "push",
]

log = logging.getLogger(__name__)

PAGE_SIZE = 100
#: Aliases looked up to name the holder after the API refused a request.
_CLASH_LOOKUPS = 20
_REFUSALS = frozenset({400, 409, 422})


@dataclass(frozen=True, slots=True)
class AliasClash:
    """``alias`` is wanted for the customer but held by billing customer ``held_by``."""

    alias: str
    held_by: str


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """A request a dry run would send (``body``: the JSON, before any merge)."""

    method: str
    path: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CustomerPush:
    """What happened to one customer: ``created``, ``updated``, ``conflict``,
    ``failed`` or, in a dry run, ``planned``."""

    customer_id: str
    name: str | None
    alias: str
    outcome: str
    billing_customer_id: str | None = None
    error: str | None = None
    clashes: tuple[AliasClash, ...] = ()
    requests: tuple[PlannedRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class HeldCustomer:
    customer_id: str
    name: str | None
    reasons: tuple[Held, ...]


@dataclass
class PushResult:
    dry_run: bool
    refreshed: int = 0
    unchanged: int = 0
    pushed: list[CustomerPush] = field(default_factory=list)
    held: list[HeldCustomer] = field(default_factory=list)
    waiting: int = 0
    """Customers a sync marked for a readiness recompute during the push: not sent."""
    merged_away: list[MergedAway] = field(default_factory=list)
    """Pushed customers the CRM merged into another since: a person reconciles the two
    billing customers (crm-sync archives neither)."""
    requests_sent: int = 0
    stopped: str | None = None
    """Why the push stopped before the end (credentials refused, rate limit), if it did."""

    def count(self, outcome: str) -> int:
        return sum(1 for p in self.pushed if p.outcome == outcome)

    @property
    def ok(self) -> bool:
        """Nothing failed and the push went to the end (held or conflicts aside)."""
        return self.stopped is None and self.count("failed") == 0

    @property
    def needs_a_person(self) -> bool:
        """Some customers were held, are in an alias conflict, or were merged away
        after they were pushed."""
        return bool(self.held or self.merged_away) or self.count("conflict") > 0


def _default_order(_connector: str | None) -> Sequence[PrimarySource]:
    return DEFAULT_PRIMARY_ORDER


def _no_service(_connector: str) -> IntegrationService | None:
    return None


def _same(text: str) -> str:
    return text


def push(
    store: Store,
    client: SequenceClient | None,
    *,
    customers: Iterable[str] | None = None,
    dry_run: bool = False,
    order_for: OrderFor = _default_order,
    service_for: Callable[[str], IntegrationService | None] = _no_service,
    clock: Callable[[], datetime] = utc_now,
    redact: Callable[[str], str] = _same,
    page_size: int = PAGE_SIZE,
) -> PushResult:
    """Push the ready customers that changed since their last push (only those named in
    ``customers`` - ids, aliases or CRM record ids - when given); see the module."""
    if client is None and not dry_run:
        raise ValueError("a push that sends needs a client")
    result = PushResult(dry_run=dry_run)
    result.refreshed = _refresh(store, order_for, clock)
    ids = _resolve(store, customers, order_for) if customers is not None else None
    with store.read() as conn:
        result.unchanged = unchanged_count(conn, ids)
        result.merged_away = merged_away(conn, ids)
    sent_before = client.requests_sent if client is not None else 0
    run = _Pusher(store, client, clock, redact)
    after = ""
    try:
        while result.stopped is None:
            with store.read() as conn:
                page = candidates(
                    conn, after=after, limit=page_size, ids=ids, service_for=service_for
                )
            if not page:
                break
            after = page[-1].customer.id
            for candidate in page:
                if not candidate.customer.ready:
                    result.held.append(_held(candidate))
                elif dry_run:
                    result.pushed.append(_plan(candidate))
                else:
                    done, stop = run.one(candidate)
                    result.pushed.append(done)
                    if stop is not None:
                        result.stopped = stop
                        break
    finally:
        if client is not None:
            result.requests_sent = client.requests_sent - sent_before
    with store.read() as conn:
        result.waiting = waiting_count(conn, ids)
    return result


def _refresh(store: Store, order_for: OrderFor, clock: Callable[[], datetime]) -> int:
    total = 0
    while True:
        with store.begin() as conn:
            taken = refresh_pending(conn, order_for=order_for, now=clock(), cause="push")
        total += taken
        if not taken:
            return total


def _resolve(store: Store, names: Iterable[str], order_for: OrderFor) -> list[str]:
    """The customers named by id, alias, CRM record id or push alias."""
    service = CustomerService(order_for=order_for)

    def one(conn: Connection, name: str) -> str:
        try:
            return service.resolve(conn, name)
        except NotFoundError:
            record = crm_record_of(name)
            if record is None:
                raise
            try:
                return service.resolve(conn, record)
            except NotFoundError:
                raise NotFoundError(
                    f"no customer has the id, alias, CRM record id or push alias {name!r}"
                ) from None

    with store.read() as conn:
        return list(dict.fromkeys(one(conn, name) for name in names))


def _held(candidate: Candidate) -> HeldCustomer:
    customer = candidate.customer
    return HeldCustomer(customer.id, customer.legal_name, customer.held)


def _plan(candidate: Candidate) -> CustomerPush:
    customer, link = candidate.customer, candidate.link
    alias = push_alias(customer)
    try:
        body = customer_request(customer).to_json()
    except NotSendable as exc:
        return CustomerPush(customer.id, customer.legal_name, alias, "failed", error=str(exc))
    billing_id = link.billing_customer_id if link is not None else None
    if billing_id is not None:
        path = f"/customers/{billing_id}"
        requests = (PlannedRequest("GET", path), PlannedRequest("PUT", path, body))
    else:
        requests = (
            PlannedRequest("GET", f"/customers/by-alias/{alias}"),
            PlannedRequest("POST", "/customers", body),
        )
    return CustomerPush(
        customer.id,
        customer.legal_name,
        alias,
        "planned",
        billing_customer_id=billing_id,
        requests=requests,
    )


class _Conflict(Exception):
    def __init__(self, clashes: Sequence[AliasClash], message: str) -> None:
        super().__init__(message)
        self.clashes = tuple(clashes)


class _Pusher:
    """Sends one customer at a time and records how it went."""

    def __init__(
        self,
        store: Store,
        client: SequenceClient | None,
        clock: Callable[[], datetime],
        redact: Callable[[str], str],
    ) -> None:
        self.store = store
        self.client = client
        self.clock = clock
        self.redact = redact

    def one(self, candidate: Candidate) -> tuple[CustomerPush, str | None]:
        """The customer's outcome, and why the whole push must stop (or None)."""
        customer = candidate.customer
        alias = push_alias(customer)
        base = CustomerPush(customer.id, customer.legal_name, alias, "failed")
        try:
            wanted = customer_request(customer)
            outcome, billing_id = self._send(candidate, alias, wanted)
            self._record_success(customer.id, alias, billing_id, customer.version, outcome)
        except NotSendable as exc:
            return self._failed(base, str(exc)), None
        except _Conflict as conflict:
            return self._conflict(base, conflict), None
        except (BillingAuthError, BillingRateLimited) as exc:
            failed = self._failed(base, str(exc))
            return failed, failed.error
        except BillingError as exc:
            return self._failed(base, str(exc)), None
        return _replace(base, outcome=outcome, billing_customer_id=billing_id), None

    def _send(self, candidate: Candidate, alias: str, wanted: CustomerRequest) -> tuple[str, str]:
        assert self.client is not None
        customer, link = candidate.customer, candidate.link
        billing_id = link.billing_customer_id if link is not None else None
        try:
            if billing_id is None:
                found = self.client.find_customer_by_alias(alias)
                if found is None:
                    created = self._create(alias, wanted)
                    if isinstance(created, str):
                        billing_id = created
                    else:
                        return "created", created.id
                else:
                    billing_id = found.id
                self._check_not_linked(customer.id, billing_id, alias)
            current = self.client.get_customer(billing_id)
            self.client.update_customer(billing_id, merge_for_update(wanted, current))
        except AliasTaken as taken:
            clash = AliasClash(taken.alias, taken.owner_id)
            raise _Conflict([clash], _conflict_text(customer.id, billing_id, [clash])) from None
        except BillingApiError as refused:
            if refused.status not in _REFUSALS or isinstance(refused, BillingAuthError):
                raise
            clashes = self._clashes(wanted, billing_id)
            if not clashes:
                raise
            raise _Conflict(clashes, _conflict_text(customer.id, billing_id, clashes)) from None
        return "updated", billing_id

    def _create(self, alias: str, wanted: CustomerRequest) -> Any:
        """The created customer; or, when a billing customer took the push alias since
        it was looked up (another push of it), that customer's id, to update."""
        assert self.client is not None
        try:
            return self.client.create_customer(wanted)
        except AliasTaken as taken:
            if taken.alias != alias:
                raise
            return taken.owner_id

    def _check_not_linked(self, customer_id: str, billing_id: str, alias: str) -> None:
        """A billing customer found by the push alias but linked to another customer is a
        conflict: it is not overwritten."""
        with self.store.read() as conn:
            other = linked_to(conn, billing_id)
        if other is not None and other != customer_id:
            clash = AliasClash(alias, billing_id)
            raise _Conflict(
                [clash],
                f"alias {alias!r} of customer {customer_id} is held by billing customer"
                f" {billing_id}, which is linked to customer {other}",
            )

    def _clashes(self, wanted: CustomerRequest, billing_id: str | None) -> list[AliasClash]:
        """The aliases of ``wanted`` another billing customer holds (after a refusal)."""
        assert self.client is not None
        clashes = []
        for value in (wanted.customer_aliases or [])[:_CLASH_LOOKUPS]:
            owner = self.client.find_customer_by_alias(value)
            if owner is not None and owner.id != billing_id:
                clashes.append(AliasClash(value, owner.id))
        return clashes

    def _record_success(
        self, customer_id: str, alias: str, billing_id: str, version: int, outcome: str
    ) -> None:
        try:
            with self.store.begin() as conn:
                record_success(
                    conn,
                    customer_id,
                    billing_customer_id=billing_id,
                    version=version,
                    outcome=outcome,
                    now=self.clock(),
                )
        except AlreadyLinked:
            with self.store.read() as conn:
                other = linked_to(conn, billing_id)
            clash = AliasClash(alias, billing_id)
            raise _Conflict(
                [clash],
                f"billing customer {billing_id} is linked to customer {other} already;"
                f" customer {customer_id} was not linked to it",
            ) from None

    def _failed(self, base: CustomerPush, error: str) -> CustomerPush:
        text = self.redact(error)
        log.warning("push of customer %s failed: %s", base.customer_id, text)
        with self.store.begin() as conn:
            record_failure(conn, base.customer_id, outcome="failed", error=text, now=self.clock())
        return _replace(base, outcome="failed", error=text)

    def _conflict(self, base: CustomerPush, conflict: _Conflict) -> CustomerPush:
        text = self.redact(str(conflict))
        with self.store.begin() as conn:
            record_failure(conn, base.customer_id, outcome="conflict", error=text, now=self.clock())
        return _replace(base, outcome="conflict", error=text, clashes=conflict.clashes)


def _conflict_text(customer_id: str, billing_id: str | None, clashes: Sequence[AliasClash]) -> str:
    ours = f"its billing customer {billing_id}" if billing_id else "not yet in billing"
    held = "; ".join(f"alias {c.alias!r} is held by billing customer {c.held_by}" for c in clashes)
    return f"customer {customer_id} ({ours}): {held}"


def _replace(base: CustomerPush, **changes: Any) -> CustomerPush:
    return replace(base, **changes)
