"""Webhook deliveries: accepted into the inbox, then applied by the worker.

**Accepting** (:meth:`Inbox.accept`): the connector verifies the request and parses it;
the events are stored durably, in one transaction, before the connector's
acknowledgement is answered, so an acknowledged event is never lost. Events crm-sync
does not act on (``IGNORE``, objects it does not sync) are acknowledged and not stored.
A refused delivery stores nothing.

**Applying** (:class:`InboxWorker`): the worker claims the due events of a connector,
coalesces them per record (:func:`crmsync.domain.inbox.plan_imports`) and applies each
import through :meth:`SyncEngine.import_records` (``mode="webhook"``): the records are
fetched from the CRM (a payload is only a hint), companies then contacts, and the ones
the CRM no longer has are marked deleted. ``import_records`` commits its own
transaction, and the events are marked done in the next: a worker killed in between
leaves them pending, and they are applied again once the claim ends, which the writer's
version rules make harmless. A failed import is retried with exponential backoff and,
after ``max_attempts``, its events are set aside (``failed``) with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from crmsync.adapters import inbox as store_inbox
from crmsync.adapters.store import Store
from crmsync.config import WebhooksConfig
from crmsync.domain.inbox import (
    EventStatus,
    PlannedImport,
    QueuedEvent,
    after_failure,
    plan_imports,
)
from crmsync.sdk.capabilities import (
    EventAction,
    WebhookEvent,
    WebhookReceiver,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
)
from crmsync.sdk.connector import Clock, Connector, utc_now
from crmsync.sdk.records import ObjectType
from crmsync.service.sync import RunResult, SyncEngine
from crmsync.service.sync import _is_conflict as is_conflict

__all__ = [
    "Accepted",
    "DeliveryRefused",
    "DrainReport",
    "Inbox",
    "InboxWorker",
    "ReadDelivery",
    "event_rows",
]

log = logging.getLogger(__name__)

MAX_KEY = 300
MAX_ID = 255
MAX_RELATED = 100
MAX_ERROR = 2_000


class DeliveryRefused(Exception):
    """A delivery is refused with ``status`` (4xx) and a reason safe to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted delivery: the answer for the CRM, and what was stored."""

    response: WebhookResponse
    events: int
    """Events the delivery carried that crm-sync acts on."""
    stored: int
    """Of those, the ones the inbox did not hold yet."""
    invalid: int


def _key(key: str) -> str:
    """An event key as stored: a longer one than the column holds is hashed."""
    if len(key) <= MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def _text(value: object) -> str:
    """CRM text as the store can hold it: PostgreSQL text cannot hold NUL."""
    return str(value).replace("\x00", "").strip()


def _ids(values: Sequence[str]) -> list[str]:
    found = [_text(v) for v in list(values)[:MAX_RELATED]]
    return [v for v in found if 0 < len(v) <= MAX_ID]


def event_rows(
    connector: str, events: Sequence[WebhookEvent], received_at: datetime
) -> tuple[list[dict[str, Any]], int]:
    """The inbox rows for a delivery's events that crm-sync acts on, and how many events
    were dropped as unusable (an id no CRM record can have)."""
    rows: dict[str, dict[str, Any]] = {}
    unusable = 0
    for event in events:
        if event.action is EventAction.IGNORE or event.object_type is None:
            continue
        external_id = _text(event.external_id)
        if not external_id or len(external_id) > MAX_ID:
            unusable += 1
            continue
        key = _key(_text(event.key))
        rows.setdefault(
            key,
            {
                "connector": connector,
                "event_key": key,
                "action": event.action.value,
                "object_type": ObjectType(event.object_type).value,
                "external_id": external_id,
                "merged_ids": _ids(event.merged_ids),
                "related_ids": _ids(event.related_ids),
                "occurred_at": event.occurred_at,
                "received_at": received_at,
                "attempts": 0,
                "next_attempt_at": received_at,
                "status": EventStatus.PENDING.value,
            },
        )
    return list(rows.values()), unusable


def _retrying(attempts: int = 5) -> Retrying:
    return Retrying(
        retry=retry_if_exception(is_conflict),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.02, max=0.5),
        reraise=True,
    )


class Inbox:
    """Takes deliveries into the store."""

    def __init__(self, store: Store, *, clock: Clock = utc_now) -> None:
        self.store = store
        self.clock = clock

    def accept(
        self, connector: str, receiver: WebhookReceiver, request: WebhookRequest
    ) -> Accepted:
        """Verify, parse and store a delivery; the connector's answer for it.

        Raises :class:`DeliveryRefused`: 401 (or the connector's status) when the
        connector refuses the request, 400 when it cannot read the body. Nothing is
        stored then. A connector failing on hostile input is a refusal, never a crash.
        """
        delivery = self.read(connector, receiver, request)
        (stored,) = self.store_deliveries([delivery.rows])
        return delivery.accepted(stored)

    def read(
        self, connector: str, receiver: WebhookReceiver, request: WebhookRequest
    ) -> ReadDelivery:
        """Verify and parse a delivery (no I/O): the rows to store and the answer to give
        once they are stored. Raises :class:`DeliveryRefused` as :meth:`accept`."""
        try:
            receiver.verify(request)
        except WebhookRejected as exc:
            raise DeliveryRefused(exc.status, exc.reason) from None
        except Exception as exc:
            log.warning("webhook %s: verification failed: %s", connector, type(exc).__name__)
            raise DeliveryRefused(401, "the request could not be verified") from None
        try:
            parsed = receiver.parse(request)
            answer = receiver.acknowledge(parsed)
            rows, unusable = event_rows(connector, parsed.events, request.received_at)
        except WebhookRejected as exc:
            raise DeliveryRefused(exc.status, exc.reason) from None
        except Exception as exc:
            log.warning("webhook %s: unreadable delivery: %s", connector, type(exc).__name__)
            raise DeliveryRefused(400, "the body could not be read") from None
        invalid = len(parsed.invalid) + unusable
        if invalid:
            log.warning("webhook %s: %d unreadable events acknowledged", connector, invalid)
        return ReadDelivery(rows, answer, invalid)

    def store_deliveries(self, deliveries: Sequence[Sequence[dict[str, Any]]]) -> list[int]:
        """Store the rows of several deliveries in one transaction (one commit for all:
        what lets a busy server answer many deliveries per second); for each delivery, how
        many of its events were new."""
        rows = [row for delivery in deliveries for row in delivery]
        if not rows:
            return [0 for _ in deliveries]
        new: set[tuple[str, str]] = set()
        for attempt in _retrying():
            with attempt, self.store.begin() as conn:
                new = store_inbox.add_events(conn, rows)
        return [
            sum((row["connector"], row["event_key"]) in new for row in delivery)
            for delivery in deliveries
        ]


@dataclass(frozen=True, slots=True)
class ReadDelivery:
    """A verified, parsed delivery: its inbox rows and the answer once they are stored."""

    rows: list[dict[str, Any]]
    answer: WebhookResponse
    invalid: int

    def accepted(self, stored: int) -> Accepted:
        return Accepted(self.answer, len(self.rows), stored, self.invalid)


@dataclass(slots=True)
class DrainReport:
    """What one drain of a connector's inbox did."""

    applied: int = 0
    """Events marked done."""
    retried: int = 0
    set_aside: int = 0
    handed_back: int = 0
    runs: list[RunResult] = field(default_factory=list)


ConnectorSession = Callable[[str], AbstractContextManager[Connector]]
"""Opens the named connector for a drain and closes it after."""


class InboxWorker:
    """Applies the due events of a connector, batch after batch."""

    def __init__(
        self,
        store: Store,
        engine: SyncEngine,
        connectors: ConnectorSession,
        config: WebhooksConfig,
        *,
        clock: Clock = utc_now,
        redact: Callable[[str], str] = str,
        on_applied: Callable[[Sequence[store_inbox.StoredEvent], datetime], None] | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.connectors = connectors
        self.config = config
        self.clock = clock
        self.redact = redact
        self.on_applied = on_applied

    def drain(self, name: str, *, stop: threading.Event | None = None) -> DrainReport:
        """Apply the connector's due events, batch after batch, until a batch is not full
        (or ``stop`` is set: the events claimed and not yet applied are handed back)."""
        report = DrainReport()
        with self.connectors(name) as connector:
            for batch in self._batches(name):
                self._apply_batch(name, connector, batch, report, stop)
                if stop is not None and stop.is_set():
                    break
        return report

    def _batches(self, name: str) -> Iterator[list[store_inbox.StoredEvent]]:
        hold = timedelta(seconds=self.config.claim_seconds)
        while True:
            claimed: list[store_inbox.StoredEvent] = []
            for attempt in _retrying():
                with attempt, self.store.begin() as conn:
                    claimed = store_inbox.claim_due(
                        conn, name, self.clock(), limit=self.config.batch_size, hold=hold
                    )
            if not claimed:
                return
            yield claimed
            if len(claimed) < self.config.batch_size:
                return  # caught up: what arrives now waits for the next import

    def _apply_batch(
        self,
        name: str,
        connector: Connector,
        batch: Sequence[store_inbox.StoredEvent],
        report: DrainReport,
        stop: threading.Event | None,
    ) -> None:
        by_id = {event.id: event for event in batch}
        queued = [
            QueuedEvent(e.id, e.action, e.object_type, e.external_id, e.related_ids, e.attempts)
            for e in batch
        ]
        plans = plan_imports(queued)
        for index, plan in enumerate(plans):
            if stop is not None and stop.is_set():
                rest = [i for p in plans[index:] for i in p.event_ids]
                self._settle(partial(_release, ids=rest, now=self.clock()))
                report.handed_back += len(rest)
                return
            self._apply(name, connector, plan, [by_id[i] for i in plan.event_ids], report)

    def _apply(
        self,
        name: str,
        connector: Connector,
        plan: PlannedImport,
        events: Sequence[store_inbox.StoredEvent],
        report: DrainReport,
    ) -> None:
        wanted = {ObjectType(kind): ids for kind, ids in plan.wanted.items()}
        error: str | None
        try:
            result = self.engine.import_records(
                name, connector, wanted, mode="webhook", missing_deleted=True
            )
            report.runs.append(result)
            error = None if result.ok else f"{result.status}: {result.error or 'no reason given'}"
        except Exception as exc:
            log.exception("webhook import of %s failed", name)
            error = self.redact(f"{type(exc).__name__}: {exc}")
        now = self.clock()
        ids = list(plan.event_ids)
        if error is None:
            self._settle(partial(store_inbox.mark_done, ids=ids, now=now))
            report.applied += len(ids)
            if self.on_applied is not None:
                self.on_applied(events, now)
            return
        self._fail(events, error[:MAX_ERROR], now, report)

    def _fail(
        self,
        events: Sequence[store_inbox.StoredEvent],
        error: str,
        now: datetime,
        report: DrainReport,
    ) -> None:
        first = timedelta(seconds=self.config.retry_seconds)
        cap = timedelta(seconds=self.config.max_retry_seconds)
        by_outcome: dict[tuple[EventStatus, datetime], list[int]] = {}
        for event in events:
            outcome = after_failure(
                event.attempts, now, max_attempts=self.config.max_attempts, first=first, cap=cap
            )
            by_outcome.setdefault((outcome.status, outcome.next_attempt_at), []).append(event.id)
        for (status, at), ids in by_outcome.items():
            self._settle(
                partial(
                    store_inbox.mark_failed,
                    ids=ids,
                    status=status,
                    next_attempt_at=at,
                    error=error,
                    now=now,
                )
            )
            if status is EventStatus.FAILED:
                report.set_aside += len(ids)
                log.error("webhook events %s set aside: %s", ids[:10], error)
            else:
                report.retried += len(ids)
                log.warning("webhook events %s retried at %s: %s", ids[:10], at, error)

    def _settle(self, work: Callable[[Connection], int]) -> None:
        for attempt in _retrying():
            with attempt, self.store.begin() as conn:
                work(conn)


def _release(conn: Connection, *, ids: Sequence[int], now: datetime) -> int:
    return store_inbox.release(conn, ids, now)
