"""One sync of a connector at a time: the lease belongs to a run, not to a process."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.support.data import company, make_engine
from tests.support.memory import MemoryConnector
from tests.support.stores import wait_until

from crmsync.adapters import leases
from crmsync.adapters.store import Store
from crmsync.adapters.tables import external_refs, sync_leases
from crmsync.sdk import ObjectType, Page, ReadRequest
from crmsync.service.sync import ConnectorBusy, RunResult

TTL = timedelta(seconds=0.6)


@dataclass
class HeldCrm(MemoryConnector):
    """Serves its first page, then holds the next answer until ``release`` is set."""

    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def read(self, request: ReadRequest) -> Iterator[Page]:
        for number, page in enumerate(super().read(request)):
            if number == 1 and request.stream is ObjectType.COMPANY:
                self.reached.set()
                assert self.release.wait(30), "the test never released the CRM"
            yield page


def _in_background(store: Store, crm: MemoryConnector) -> tuple[threading.Thread, list[RunResult]]:
    results: list[RunResult] = []
    thread = threading.Thread(
        target=lambda: results.append(make_engine(store, lease_ttl=TTL).run("crm", crm, full=True))
    )
    thread.start()
    return thread, results


def _lease_expiry(store: Store) -> object:
    with store.begin() as conn:
        return conn.execute(sa.select(sync_leases.c.expires_at)).scalar_one_or_none()


def test_a_second_run_in_the_same_process_is_refused(store: Store) -> None:
    crm = HeldCrm(companies=[company(n) for n in range(25)], page_size=10)
    thread, results = _in_background(store, crm)
    assert crm.reached.wait(20)

    with pytest.raises(ConnectorBusy, match=f":{os.getpid()}"):
        make_engine(store, lease_ttl=TTL).run("crm", MemoryConnector(companies=[company(1)]))

    crm.release.set()
    thread.join(30)
    assert results[0].status == "succeeded"


def test_a_crm_answer_slower_than_the_lease_does_not_lose_it(store: Store) -> None:
    crm = HeldCrm(companies=[company(n) for n in range(25)], page_size=10)
    thread, results = _in_background(store, crm)
    assert crm.reached.wait(20)
    first = _lease_expiry(store)
    wait_until(lambda: _lease_expiry(store) != first, "the heartbeat renews the lease")
    renewed = _lease_expiry(store)
    wait_until(lambda: _lease_expiry(store) != renewed, "it renews it again, past the first TTL")

    with pytest.raises(ConnectorBusy):
        make_engine(store, lease_ttl=TTL).run("crm", MemoryConnector(companies=[company(1)]))

    crm.release.set()
    thread.join(30)
    assert results[0].status == "succeeded"
    assert results[0].counts.created == 25


def test_a_run_that_lost_its_lease_stops_writing_and_says_so(store: Store) -> None:
    crm = HeldCrm(companies=[company(n) for n in range(25)], page_size=10)
    thread, results = _in_background(store, crm)
    assert crm.reached.wait(20)
    with store.begin() as conn:  # another worker took the lease over
        conn.execute(sa.update(sync_leases).values(token="someone-else"))

    crm.release.set()
    thread.join(30)

    assert results[0].status == "lost_lease"
    with store.begin() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(external_refs)).scalar()
    assert stored == 10  # the first page only: nothing after the lease was lost


def test_a_live_holder_on_this_machine_is_not_mistaken_for_a_dead_one(store: Store) -> None:
    alive = replace(leases.this_process(), label="here:alive")
    with store.begin() as conn:
        assert leases.acquire(conn, "crm", alive, timedelta(minutes=5)) is None

    with pytest.raises(ConnectorBusy, match="here:alive"):
        make_engine(store).run("crm", MemoryConnector(companies=[company(1)]))


def test_a_reused_pid_does_not_keep_a_dead_holders_lease(store: Store) -> None:
    me = leases.this_process()
    reused = replace(me, label="here:reused", started=me.started - 3600)
    with store.begin() as conn:
        assert leases.acquire(conn, "crm", reused, timedelta(minutes=5)) is None

    assert make_engine(store).run("crm", MemoryConnector(companies=[company(1)])).ok


def test_a_holder_on_another_machine_keeps_the_lease_until_it_expires(store: Store) -> None:
    remote = replace(leases.this_process(), label="far:1", machine="another-machine", pid=1)
    with store.begin() as conn:
        assert leases.acquire(conn, "crm", remote, timedelta(seconds=0.2)) is None

    with pytest.raises(ConnectorBusy):
        make_engine(store).run("crm", MemoryConnector(companies=[company(1)]))

    wait_until(lambda: _runs(store), "the remote lease expires by the database's clock")


def _runs(store: Store) -> bool:
    try:
        return make_engine(store).run("crm", MemoryConnector(companies=[company(1)])).ok
    except ConnectorBusy:
        return False
