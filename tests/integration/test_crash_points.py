"""A crash between any two statements of a page's transaction, resumed, ends exactly as
a clean run: the page, its quarantine and its cursor commit together or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.data import company, contact, later, make_engine
from tests.support.memory import MemoryConnector
from tests.support.snapshot import snapshot
from tests.support.stores import empty

from crmsync.adapters.store import Store, create_store
from crmsync.sdk import BadRecord, ObjectType


class InjectedCrash(Exception):
    """The process dies here: nothing after this statement runs."""


def crm() -> MemoryConnector:
    companies = [company(i, modified_at=later(i), aliases=(f"A-{i}",)) for i in range(12)]
    contacts = [
        contact(i, f"c{i % 12}", f"c{(i + 1) % 12}", billing=(f"c{i % 12}",) if i % 3 else (),
                modified_at=later(i))
        for i in range(30)
    ]  # fmt: skip
    bad = {
        ObjectType.CONTACT: [
            BadRecord(object_type=ObjectType.CONTACT, external_id="pX", raw="{}", reason="bad")
        ]
    }
    return MemoryConnector(companies=companies, contacts=contacts, bad=bad, page_size=5)


@dataclass
class Recorder:
    """Counts transactions and their statements; raises at one chosen statement."""

    crash_at: tuple[int, int] | None = None
    transactions: list[list[str]] = field(default_factory=list)

    def begin(self, _conn: Any) -> None:
        self.transactions.append([])

    def statement(self, _conn: Any, _cursor: Any, text: str, *_args: Any) -> None:
        if not self.transactions or text.startswith("BEGIN"):
            return
        self.transactions[-1].append(text)
        where = (len(self.transactions) - 1, len(self.transactions[-1]) - 1)
        if where == self.crash_at:
            self.crash_at = None  # once: the resumed run must get through
            raise InjectedCrash(f"crash before statement {where}")


@contextmanager
def recording(store: Store, recorder: Recorder) -> Iterator[Recorder]:
    sa.event.listen(store.engine, "begin", recorder.begin)
    sa.event.listen(store.engine, "before_cursor_execute", recorder.statement)
    try:
        yield recorder
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", recorder.statement)
        sa.event.remove(store.engine, "begin", recorder.begin)


def _page_statements(store: Store) -> tuple[list[tuple[int, int]], Any]:
    """Every statement position inside two page transactions (a company page and a
    contact page) of a clean run on ``store``, and the clean run's store content."""
    with recording(store, Recorder()) as recorder:
        assert make_engine(store).run("crm", crm(), full=True).ok
    expected = snapshot(store)
    writes = ("INSERT INTO contacts", "INSERT INTO external_refs", "COPY contacts",
              "COPY external_refs")  # fmt: skip
    pages = [n for n, statements in enumerate(recorder.transactions)
             if any(s.startswith(writes) for s in statements)]  # fmt: skip
    chosen = [pages[1], pages[-2]]  # the second company page, a late contact page
    return [(n, k) for n in chosen for k in range(len(recorder.transactions[n]))], expected


def _crash_and_resume(store: Store, point: tuple[int, int], expected: Any) -> None:
    empty(store)
    with recording(store, Recorder(crash_at=point)) as recorder:
        crashed = make_engine(store).run("crm", crm(), full=True)
    assert recorder.crash_at is None, f"never reached statement {point}"
    assert crashed.status == "failed"
    resumed = make_engine(store).run("crm", crm(), full=True)
    assert resumed.ok, resumed.error
    assert snapshot(store) == expected, f"the store differs after a crash at {point}"


def test_a_crash_between_any_two_statements_of_a_page_resumes_to_the_clean_store(
    tmp_path: Any,
) -> None:
    store = create_store(f"sqlite:///{tmp_path}/store.db")
    store.ensure_schema()
    points, expected = _page_statements(store)
    assert len(points) > 10
    for point in points:
        _crash_and_resume(store, point, expected)
    store.dispose()


@pytest.mark.postgres
def test_a_crash_inside_a_page_transaction_on_postgresql_resumes_to_the_clean_store(
    pg_url: str,
) -> None:
    # A fresh Store for every run: each keeps its own planner-statistics bookkeeping,
    # and the statements of a page must be the same from run to run.
    store = create_store(pg_url)
    empty(store)
    points, expected = _page_statements(store)
    store.dispose()
    try:
        for point in points:
            store = create_store(pg_url)
            _crash_and_resume(store, point, expected)
            store.dispose()
    finally:
        store = create_store(pg_url)
        empty(store)
        store.dispose()
