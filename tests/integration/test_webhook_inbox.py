"""The webhook inbox on SQLite and PostgreSQL: deliveries stored once, claims that never
overlap, imports through the engine, retries with backoff, events set aside and replayed,
and nothing acknowledged ever lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import Boom, MemoryConnector
from tests.support.snapshot import snapshot

from crmsync.adapters import inbox
from crmsync.adapters.store import Store
from crmsync.adapters.tables import webhook_inbox
from crmsync.config import WebhooksConfig
from crmsync.domain.inbox import EventStatus
from crmsync.sdk import ObjectType, Page
from crmsync.sdk.capabilities import (
    EventAction,
    ParsedWebhook,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
)
from crmsync.sdk.connector import Connector
from crmsync.service.inbox import DeliveryRefused, Inbox, InboxWorker

T = datetime.now(UTC).replace(microsecond=0)  # pages are stamped with the real time


@dataclass
class Clock:
    now: datetime = T

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Receiver:
    """A connector's webhook side: the body is a JSON list of [key, type, id] events."""

    def __init__(self, *, refuse: int | None = None, crash: bool = False) -> None:
        self.refuse = refuse
        self.crash = crash

    def verify(self, request: WebhookRequest) -> None:
        if self.refuse is not None:
            raise WebhookRejected(self.refuse, "bad signature")

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        if self.crash:
            raise ValueError("the connector tripped over the body")
        try:
            items = json.loads(request.body)
        except ValueError:
            raise WebhookRejected(400, "not JSON") from None
        return ParsedWebhook(
            events=[
                WebhookEvent(key, EventAction(action), ObjectType(kind), rid)
                for key, action, kind, rid in items
            ]
        )

    def acknowledge(self, parsed: ParsedWebhook) -> WebhookResponse:
        return WebhookResponse(204)


def delivery(*events: tuple[str, str, str, str], clock: Clock) -> WebhookRequest:
    body = json.dumps([list(e) for e in events]).encode()
    return WebhookRequest("POST", "http://x/webhooks/crm", {}, body, clock())


def rows(store: Store) -> list[inbox.StoredEvent]:
    with store.begin() as conn:
        return sorted(inbox.list_events(conn, limit=1_000), key=lambda e: e.id)


@dataclass
class Crm(MemoryConnector):
    """The CRM the worker fetches from: ``failing`` makes every fetch raise, ``refused``
    ids make the fetches that name them raise, ``stop`` is set by every fetch."""

    failing: bool = False
    refused: set[str] = field(default_factory=set)
    fetched: list[tuple[ObjectType, tuple[str, ...]]] = field(default_factory=list)
    stop: threading.Event | None = None

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        self.fetched.append((object_type, tuple(external_ids)))
        if self.stop is not None:
            self.stop.set()
        if self.failing:
            raise Boom("the CRM is down")
        if self.refused & set(external_ids):
            raise Boom("refused")
        return super().fetch(object_type, external_ids)

    @contextmanager
    def session(self, name: str) -> Iterator[Connector]:
        yield self


def crm_with_records(**options: object) -> Crm:
    return Crm(
        companies=[company(i, modified_at=later(i)) for i in range(3)],
        contacts=[contact(i, f"c{i}", billing=(f"c{i}",)) for i in range(3)],
        **options,  # type: ignore[arg-type]
    )


CONFIG = WebhooksConfig(max_attempts=3, retry_seconds=30, batch_size=50, claim_seconds=60)


def worker(store: Store, crm: Crm, clock: Clock, config: WebhooksConfig = CONFIG) -> InboxWorker:
    return InboxWorker(store, make_engine(store, clock=clock), crm.session, config, clock=clock)


# -- accepting -------------------------------------------------------------------------


def test_a_delivery_is_stored_once_however_often_it_comes(store: Store) -> None:
    clock = Clock()
    events = (("k1", "upsert", "company", "c1"), ("k2", "delete", "contact", "p2"))

    first = Inbox(store, clock=clock).accept("crm", Receiver(), delivery(*events, clock=clock))
    again = Inbox(store, clock=clock).accept("crm", Receiver(), delivery(*events, clock=clock))

    assert (first.stored, again.stored) == (2, 0)
    assert first.response.status == again.response.status == 204
    stored = rows(store)
    assert [(e.event_key, e.action, e.object_type, e.external_id) for e in stored] == [
        ("k1", "upsert", "company", "c1"),
        ("k2", "delete", "contact", "p2"),
    ]
    assert all(e.status == "pending" and e.attempts == 0 for e in stored)


def test_the_same_key_from_another_connector_is_another_event(store: Store) -> None:
    clock = Clock()
    event = ("k1", "upsert", "company", "c1")

    Inbox(store, clock=clock).accept("crm", Receiver(), delivery(event, clock=clock))
    Inbox(store, clock=clock).accept("other", Receiver(), delivery(event, clock=clock))

    assert sorted(e.connector for e in rows(store)) == ["crm", "other"]


@pytest.mark.parametrize(
    ("receiver", "body", "status"),
    [
        (Receiver(refuse=401), b"[]", 401),
        (Receiver(), b"{not json", 400),
        (Receiver(crash=True), b"[]", 400),
    ],
)
def test_a_refused_delivery_stores_nothing(
    store: Store, receiver: Receiver, body: bytes, status: int
) -> None:
    clock = Clock()
    request = WebhookRequest("POST", "http://x/", {}, body, clock())

    with pytest.raises(DeliveryRefused) as refused:
        Inbox(store, clock=clock).accept("crm", receiver, request)

    assert refused.value.status == status
    assert rows(store) == []


def test_events_crm_sync_does_not_act_on_are_acknowledged_and_not_stored(store: Store) -> None:
    clock = Clock()

    class Ignoring(Receiver):
        def parse(self, request: WebhookRequest) -> ParsedWebhook:
            return ParsedWebhook(
                events=[WebhookEvent("k", EventAction.IGNORE, None, "1"),
                        WebhookEvent("l", EventAction.UPSERT, ObjectType.COMPANY, "x" * 300)]
            )  # fmt: skip

    accepted = Inbox(store, clock=clock).accept("crm", Ignoring(), delivery(clock=clock))

    assert (accepted.stored, accepted.invalid) == (0, 1)
    assert rows(store) == []


def test_nul_characters_from_a_crm_are_dropped_before_storing(store: Store) -> None:
    clock = Clock()

    accepted = Inbox(store, clock=clock).accept(
        "crm", Receiver(), delivery(("k\x001", "upsert", "company", "c\x001"), clock=clock)
    )

    assert accepted.stored == 1
    assert [(e.event_key, e.external_id) for e in rows(store)] == [("k1", "c1")]


# -- claiming --------------------------------------------------------------------------


def _store_events(store: Store, count: int, clock: Clock) -> None:
    events = [(f"k{i}", "upsert", "company", f"c{i}") for i in range(count)]
    Inbox(store, clock=clock).accept("crm", Receiver(), delivery(*events, clock=clock))


def test_a_claimed_event_is_not_claimed_again_until_its_claim_ends(store: Store) -> None:
    clock = Clock()
    _store_events(store, 3, clock)
    hold = timedelta(seconds=60)

    with store.begin() as conn:
        first = inbox.claim_due(conn, "crm", clock(), limit=2, hold=hold)
    with store.begin() as conn:
        second = inbox.claim_due(conn, "crm", clock(), limit=10, hold=hold)
    clock.advance(61)
    with store.begin() as conn:
        after_claim = inbox.claim_due(conn, "crm", clock(), limit=10, hold=hold)

    assert [e.event_key for e in first] == ["k0", "k1"]
    assert [e.event_key for e in second] == ["k2"]
    assert sorted(e.event_key for e in after_claim) == ["k0", "k1", "k2"]
    assert {e.attempts for e in after_claim} == {2}


@pytest.mark.postgres
def test_two_workers_claiming_at_once_never_take_the_same_event(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: its claims cannot overlap")
    clock = Clock()
    _store_events(store, 10, clock)
    hold = timedelta(seconds=60)

    with store.engine.connect() as a, store.engine.connect() as b, a.begin():
        mine = inbox.claim_due(a, "crm", clock(), limit=6, hold=hold)
        # a's claim is not committed yet: b skips its locked rows instead of waiting
        with b.begin():
            theirs = inbox.claim_due(b, "crm", clock(), limit=6, hold=hold)

    assert len(mine) == 6
    assert len(theirs) == 4
    assert not {e.id for e in mine} & {e.id for e in theirs}


# -- applying --------------------------------------------------------------------------


def test_the_worker_applies_events_through_one_import_and_marks_them_done(store: Store) -> None:
    clock, crm = Clock(), crm_with_records()
    events = (
        ("k1", "upsert", "contact", "p1"),
        ("k2", "upsert", "company", "c1"),
        ("k3", "upsert", "company", "c1"),
    )
    Inbox(store, clock=clock).accept("crm", Receiver(), delivery(*events, clock=clock))

    report = worker(store, crm, clock).drain("crm")

    assert report.applied == 3
    assert [r.mode for r in report.runs] == ["webhook"]
    assert crm.fetched == [(ObjectType.COMPANY, ("c1",)), (ObjectType.CONTACT, ("p1",))]
    assert [c[0] for c in snapshot(store)["crm/c1"]["contacts"]] == ["p1"]
    assert {(e.status, e.attempts) for e in rows(store)} == {("done", 1)}


def test_an_event_for_a_record_the_crm_no_longer_has_marks_it_deleted(store: Store) -> None:
    clock, crm = Clock(), crm_with_records()
    make_engine(store, clock=clock).run("crm", crm, full=True)
    crm.companies = [c for c in crm.companies if c.external_id != "c2"]
    clock.now = datetime.now(UTC) + timedelta(seconds=1)  # after the sync read the record
    Inbox(store, clock=clock).accept(
        "crm", Receiver(), delivery(("k", "delete", "company", "c2"), clock=clock)
    )

    worker(store, crm, clock).drain("crm")

    assert "source_deleted" in snapshot(store)["crm/c2"]["reasons"]


def test_a_failed_import_is_retried_with_backoff_then_set_aside_and_replayed(
    store: Store,
) -> None:
    clock, crm = Clock(), crm_with_records(failing=True)
    Inbox(store, clock=clock).accept(
        "crm", Receiver(), delivery(("k", "upsert", "company", "c1"), clock=clock)
    )

    first = worker(store, crm, clock).drain("crm")
    (event,) = rows(store)
    assert first.retried == 1
    assert (event.status, event.attempts) == ("pending", 1)
    assert event.next_attempt_at == T + timedelta(seconds=30)
    assert "Boom: the CRM is down" in (event.last_error or "")
    assert worker(store, crm, clock).drain("crm").retried == 0  # not due yet

    clock.advance(30)
    worker(store, crm, clock).drain("crm")
    assert rows(store)[0].next_attempt_at == clock() + timedelta(seconds=60)
    clock.advance(60)
    last = worker(store, crm, clock).drain("crm")

    (event,) = rows(store)
    assert last.set_aside == 1
    assert (event.status, event.attempts) == ("failed", 3)
    assert "the CRM is down" in (event.last_error or "")

    crm.failing = False
    with store.begin() as conn:
        requeued = inbox.requeue(conn, clock(), failed=True)
    assert [e.id for e in requeued] == [event.id]
    assert worker(store, crm, clock).drain("crm").applied == 1
    assert rows(store)[0].status == "done"
    assert "crm/c1" in snapshot(store)


def test_a_record_that_keeps_failing_does_not_hold_up_the_others(store: Store) -> None:
    clock, crm = Clock(), crm_with_records()
    crm.refused = {"c2"}
    events = [("k1", "upsert", "company", "c1"), ("k2", "upsert", "company", "c2")]
    Inbox(store, clock=clock).accept("crm", Receiver(), delivery(*events, clock=clock))

    worker(store, crm, clock).drain("crm")  # together: both fail
    clock.advance(30)
    worker(store, crm, clock).drain("crm")  # apart: c1 lands

    assert {e.event_key: e.status for e in rows(store)} == {"k1": "done", "k2": "pending"}


def test_an_event_applied_but_not_marked_done_is_applied_again_harmlessly(store: Store) -> None:
    clock, crm = Clock(), crm_with_records()
    Inbox(store, clock=clock).accept(
        "crm", Receiver(), delivery(("k", "upsert", "company", "c1"), clock=clock)
    )
    with store.begin() as conn:  # a worker claimed it, imported it and died (kill -9)
        inbox.claim_due(conn, "crm", clock(), limit=10, hold=timedelta(seconds=60))
    make_engine(store, clock=clock).import_records(
        "crm", crm, {ObjectType.COMPANY: ["c1"]}, mode="webhook"
    )
    before = snapshot(store)

    assert worker(store, crm, clock).drain("crm").applied == 0  # still claimed
    clock.advance(60)
    report = worker(store, crm, clock).drain("crm")

    assert report.applied == 1
    assert report.runs[0].counts.unchanged == 1
    assert snapshot(store) == before
    (event,) = rows(store)
    with store.begin() as conn:  # marking done again changes nothing
        assert inbox.mark_done(conn, [event.id], clock()) == 0


def test_a_stopping_worker_hands_back_what_it_has_not_applied(store: Store) -> None:
    clock, crm = Clock(), crm_with_records()
    stop = threading.Event()
    events = [("k1", "upsert", "company", "c1"), ("k2", "upsert", "company", "c2")]
    Inbox(store, clock=clock).accept("crm", Receiver(), delivery(*events, clock=clock))
    with store.begin() as conn:  # k2 failed once: it is imported apart, after k1
        conn.execute(sa.update(webhook_inbox).where(webhook_inbox.c.event_key == "k2")
                     .values(attempts=1))  # fmt: skip
    crm.stop = stop

    report = worker(store, crm, clock).drain("crm", stop=stop)

    assert (report.applied, report.handed_back) == (1, 1)
    states = {e.event_key: (e.status, e.attempts, e.next_attempt_at) for e in rows(store)}
    assert states == {"k1": ("done", 1, T + timedelta(seconds=60)), "k2": ("pending", 1, T)}


def test_applied_events_past_the_retention_are_forgotten(store: Store) -> None:
    clock, crm = Clock(), crm_with_records()
    _store_events(store, 2, clock)
    worker(store, crm, clock).drain("crm")

    with store.begin() as conn:
        kept = inbox.prune_done(conn, clock() - timedelta(days=7))
        gone = inbox.prune_done(conn, clock() + timedelta(seconds=1))

    assert (kept, gone) == (0, 2)
    assert EventStatus.DONE.value == "done"
