"""The contract test kit: the checks every connector's tests run, whatever the CRM.

A connector's tests implement one small :class:`ConnectorHarness`: given a
:class:`Dataset` (a neutral description of companies, contacts and broken records)
and a page size, it renders the data in the CRM's own format (mocked HTTP responses,
export files, ...) and returns a connector reading it. The kit then checks paging,
cursors, resume, incremental passes, bad records, rate limits and ``fetch``::

    import pytest
    from crmsync.sdk.testing import ConnectorContract, ConnectorHarness, Dataset

    class MyHarness(ConnectorHarness):
        supports_rate_limits = True  # build(..., rate_limited=True) injects 429s

        def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False):
            return MyConnector(...)  # over a respx mock serving ``dataset``

    class TestMyConnectorContract(ConnectorContract):
        @pytest.fixture
        def harness(self) -> ConnectorHarness:
            return MyHarness()

Each check is also a plain function (``check_...``) raising ``AssertionError`` with
a sentence saying what broke, so the kit's own tests can prove it catches broken
connectors. The kit builds one connector per simulated process: ``build`` may be
called several times with the same dataset and must then serve the same,
unchanged data (a restart after a crash sees the CRM as it was).

:class:`InMemoryConnector` is a reference implementation of the contract over a
:class:`Dataset`, for the kit's own tests and for engine tests that need a connector.

This module imports pytest; only tests import it.
"""

from __future__ import annotations

import json
import math
import random
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import pytest

from crmsync.domain.values import TaxStatus
from crmsync.errors import ConnectorError
from crmsync.sdk.connector import Connector, ReadRequest
from crmsync.sdk.records import (
    BadRecord,
    CompanyLink,
    CompanyRecord,
    ContactRecord,
    Cursor,
    ObjectType,
    Page,
    Record,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "SHARED_AT",
    "STARTED_AT",
    "BadKind",
    "BadSample",
    "ConnectorContract",
    "ConnectorHarness",
    "Dataset",
    "FakeTime",
    "InMemoryConnector",
    "InMemoryHarness",
    "assert_well_formed_pass",
    "bad_dataset",
    "check_a_deletion_carrying_only_its_id_is_delivered_as_one",
    "check_bad_records_are_reported_and_good_ones_still_arrive",
    "check_cursor_never_moves_back_and_the_last_page_ends_the_pass",
    "check_delivered_records_carry_the_dataset_fields",
    "check_empty_stream_ends_its_pass",
    "check_fetch_returns_exactly_the_named_records",
    "check_full_pass_over_a_since_cursor_delivers_every_record",
    "check_full_read_delivers_every_record_exactly_once",
    "check_incremental_pass_delivers_every_record_sharing_the_since_timestamp",
    "check_incremental_pass_returns_every_record_modified_at_or_after_since",
    "check_rate_limited_read_delivers_every_record",
    "check_resume_from_every_checkpoint_loses_and_duplicates_nothing",
    "check_since_never_passes_the_run_start",
    "read_pass",
    "standard_dataset",
    "tombstone_dataset",
]

DEFAULT_PAGE_SIZE = 4


class FakeTime:
    """A monotonic clock that only moves when someone sleeps; records every sleep.

    Pass ``clock=fake.clock, sleep=fake.sleep`` to an HTTP client or pacer so that
    retry and rate-limit tests take no real time. Thread-safe.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)


STARTED_AT = datetime(2026, 6, 1, tzinfo=UTC)
"""The run start the kit passes in ``ReadRequest``: after every timestamp of its datasets."""

SHARED_AT = datetime(2026, 3, 2, 9, 0, 0, 125_000, tzinfo=UTC)
"""The timestamp more than two and a half pages of each stream share (a bulk update)."""

MAX_PAGES = 1_000


# --- the data a harness renders --------------------------------------------------------


class BadKind(StrEnum):
    """Kinds of broken source record a harness renders in its CRM's format."""

    MISSING_ID = "missing_id"
    """A record without its id (an empty id cell, a JSON object without ``id``)."""
    BAD_TIMESTAMP = "bad_timestamp"
    """A record whose modification time cannot be parsed (``"yesterday"``)."""
    MALFORMED = "malformed"
    """The format itself is broken: a truncated JSON object, a CSV row with too many fields."""


@dataclass(frozen=True, slots=True)
class BadSample:
    """One broken record; ``external_id`` is the id to render in it (``None`` for MISSING_ID)."""

    object_type: ObjectType
    kind: BadKind
    external_id: str | None = None


@dataclass(frozen=True, slots=True)
class Dataset:
    """What the CRM holds, in a neutral form: the records a connector should deliver.

    The harness renders every record with every field (except its
    ``unsupported_fields``) in the order given, and the ``bad`` samples anywhere among
    them. Records should carry ``modified_at``; the kit's datasets all do.
    """

    companies: tuple[CompanyRecord, ...] = ()
    contacts: tuple[ContactRecord, ...] = ()
    bad: tuple[BadSample, ...] = ()

    def records(self, stream: ObjectType) -> tuple[Record, ...]:
        """The stream's good records."""
        return self.companies if stream is ObjectType.COMPANY else self.contacts

    def bad_samples(self, stream: ObjectType) -> tuple[BadSample, ...]:
        """The stream's broken records."""
        return tuple(sample for sample in self.bad if sample.object_type is stream)


class ConnectorHarness(ABC):
    """What a connector's tests implement so the contract suite can run against it."""

    supports_rate_limits: bool = False
    """Whether ``build(..., rate_limited=True)`` injects rate-limit responses (429s)."""
    unsupported_fields: frozenset[str] = frozenset()
    """Record fields the CRM cannot carry; they are left out of field comparisons."""

    @abstractmethod
    def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False) -> Connector:
        """A connector reading ``dataset`` as the CRM would serve it, with this page size.

        With ``rate_limited`` the CRM answers some requests with a rate-limit response
        first. Called again with the same dataset, it must serve the same data.
        """


_COMPANY_NAMES = (
    "Nordlicht Logistik GmbH",
    None,  # a company without a name
    "Zürich Präzisionsuhren AG",
    "São Paulo Cafés Ltda",
    "Łódź Tekstylia sp. z o.o.",
    "東京テック株式会社",
    "Acme Widgets Inc.",
    "Maple Leaf Outfitters Ltd.",
)
_PLACES = (
    ("Austin", "TX", "78701", "US"),
    ("Hamburg", None, "20095", "DE"),
    ("Toronto", "ON", "M5V 2T6", "CA"),
    ("Zürich", None, "8001", "CH"),
    ("Łódź", None, "90-001", "PL"),
    ("東京", None, "100-0005", "JP"),
    ("Springfield", None, None, "US"),  # incomplete on purpose
)
_TAX = (TaxStatus.TAXED, TaxStatus.TAX_EXEMPT, TaxStatus.REVERSE_CHARGED, None)
_PEOPLE = ("Ada Example", "Zoë Ørsted", "José Muñoz", "Wiktoria Żak", "山田 花子", "Sam Doe")


def _times(count: int, start: datetime, step: timedelta, ties: int = 0) -> list[datetime]:
    """``count`` timestamps from ``start``; the last ``ties`` repeat the one before them."""
    times = [start + step * i for i in range(count - ties)]
    return times + [times[-1]] * ties if times else []


def _stream_times(page_size: int, early: int, later: int) -> list[datetime]:
    shared = math.ceil(2.5 * page_size) + 1
    return (
        _times(early, SHARED_AT - timedelta(days=early), timedelta(days=1))
        + [SHARED_AT] * shared
        + _times(later, SHARED_AT + timedelta(minutes=1, milliseconds=7), timedelta(minutes=1), 2)
    )


def _company(index: int, modified_at: datetime) -> CompanyRecord:
    city, state, postal_code, country = _PLACES[index % len(_PLACES)]
    return CompanyRecord(
        external_id=f"co-{index:03d}",
        name=_COMPANY_NAMES[index % len(_COMPANY_NAMES)],
        line1=f"{index + 1} Example Street",
        line2="Suite 4" if index % 3 == 0 else None,
        city=city,
        state=state,
        postal_code=postal_code,
        country=country,
        tax_status=_TAX[index % len(_TAX)],
        aliases=(f"acct-{index}", f"ACCT-{index}-b")[: index % 3],
        modified_at=modified_at,
        deleted=index == 5,
    )


def _contact(index: int, modified_at: datetime, company_ids: Sequence[str]) -> ContactRecord:
    count = len(company_ids)
    first, second = company_ids[index % count], company_ids[(index + 1) % count]
    links = {
        0: (),
        1: (CompanyLink(company_id=first, billing_contact=True),),
        2: (CompanyLink(company_id=first),),
        3: (CompanyLink(company_id=first, billing_contact=True), CompanyLink(company_id=second)),
        4: (
            CompanyLink(company_id=first, billing_contact=True),
            CompanyLink(company_id=second, billing_contact=True),
        ),
    }[index % 5]
    if len(links) == 2 and first == second:
        links = links[:1]
    return ContactRecord(
        external_id=f"pe-{index:03d}",
        name=_PEOPLE[index % len(_PEOPLE)],
        email=None if index % 7 == 3 else f"person.{index}@example.com",
        companies=links,
        modified_at=modified_at,
        deleted=index == 6,
    )


def standard_dataset(page_size: int = DEFAULT_PAGE_SIZE) -> Dataset:
    """Several pages of companies and contacts, in no particular order of modification.

    Each stream has a few records before :data:`SHARED_AT`, more than two and a half
    pages of records modified exactly at it, and some after it (two of which share a
    timestamp). Fields vary: missing names and address parts, non-ASCII text, every
    tax status, aliases, deleted records, contacts with 0, 1 or 2 companies and
    billing designations for all, some or none of them.
    """
    rng = random.Random(20260302)  # a fixed shuffle
    company_times = _stream_times(page_size, early=3, later=5)
    companies = [_company(i, at) for i, at in enumerate(company_times)]
    company_ids = [company.external_id for company in companies]
    contact_times = _stream_times(page_size, early=2, later=4)
    contacts = [_contact(i, at, company_ids) for i, at in enumerate(contact_times)]
    rng.shuffle(companies)
    rng.shuffle(contacts)
    return Dataset(companies=tuple(companies), contacts=tuple(contacts))


def bad_dataset(page_size: int = DEFAULT_PAGE_SIZE) -> Dataset:
    """The standard dataset plus one broken record of each kind in each stream."""
    base = standard_dataset(page_size)
    bad = tuple(
        BadSample(stream, kind, None if kind is BadKind.MISSING_ID else f"{prefix}-bad-{kind}")
        for stream, prefix in ((ObjectType.COMPANY, "co"), (ObjectType.CONTACT, "pe"))
        for kind in BadKind
    )
    return Dataset(companies=base.companies, contacts=base.contacts, bad=bad)


# --- reading helpers ---------------------------------------------------------------------


@contextmanager
def _connector(
    harness: ConnectorHarness, dataset: Dataset, page_size: int, *, rate_limited: bool = False
) -> Iterator[Connector]:
    connector = harness.build(dataset, page_size=page_size, rate_limited=rate_limited)
    assert isinstance(connector, Connector), f"{connector!r} is not a Connector"
    try:
        yield connector
    finally:
        connector.close()


def _streams(connector: Connector) -> list[ObjectType]:
    streams = list(connector.streams())
    assert streams, "the connector has no streams"
    assert streams[0] is ObjectType.COMPANY, "companies must be read first"
    assert len(set(streams)) == len(streams), f"a stream is listed twice: {streams}"
    return streams


def _stored(cursor: Cursor) -> Cursor:
    """The cursor as the engine stores and loads it (JSON)."""
    return Cursor.model_validate_json(cursor.model_dump_json())


def read_pass(
    connector: Connector,
    stream: ObjectType,
    *,
    cursor: Cursor | None = None,
    full: bool = False,
    started_at: datetime = STARTED_AT,
    max_pages: int = MAX_PAGES,
) -> list[Page]:
    """Read one pass, up to and including the page that ends it; fail on loops.

    Fails if the stream stops before a page with ``position=None``, yields pages after
    it, yields a page of another stream, or goes on for ``max_pages`` pages.
    """
    request = ReadRequest(stream=stream, cursor=cursor, full=full, started_at=started_at)
    pages: list[Page] = []
    iterator = iter(connector.read(request))
    try:
        for page in iterator:
            pages.append(page)
            assert page.stream is stream, f"a {page.stream} page in the {stream} stream"
            if not page.cursor.in_pass:
                after = next(iterator, None)
                assert after is None, f"{stream}: a page came after the page that ended the pass"
                return pages
            assert len(pages) < max_pages, (
                f"{stream}: the pass did not end after {max_pages} pages (is it looping?)"
            )
    finally:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
    raise AssertionError(f"{stream}: the stream stopped without a page ending the pass")


def assert_well_formed_pass(
    pages: Sequence[Page],
    *,
    start: Cursor | None,
    page_size: int,
    started_at: datetime = STARTED_AT,
) -> None:
    """Page sizes, cursor monotonicity, no loops, a proper end of pass, storable cursors."""
    since = start.since if start else None
    positions = {start.position} if start and start.position is not None else set()
    for number, page in enumerate(pages, start=1):
        size = len(page.records) + len(page.bad)
        assert size <= page_size, (
            f"page {number} holds {size} records; the page size is {page_size}"
        )
        cursor = page.cursor
        assert _stored(cursor) == cursor, f"page {number}'s cursor does not survive JSON storage"
        if since is not None:
            moved_back = cursor.since is None or cursor.since < since
            assert not moved_back, f"page {number}: since moved back from {since} to {cursor.since}"
        since = cursor.since
        if cursor.position is not None:
            assert cursor.position not in positions, (
                f"page {number}: position {cursor.position!r} was seen before (a loop)"
            )
            positions.add(cursor.position)
    last = pages[-1].cursor
    assert last.position is None, "the last page does not end the pass"
    assert last.until is None, "the cursor ending the pass still has an until"
    assert not last.full, "the cursor ending the pass still says full"
    assert last.since is None or last.since <= started_at, (
        f"since {last.since} is past the run start {started_at}"
    )


def _records(pages: Iterable[Page]) -> list[Record]:
    return [record for page in pages for record in page.records]


def _bad(pages: Iterable[Page]) -> list[BadRecord]:
    return [bad for page in pages for bad in page.bad]


def _ids(records: Iterable[Record]) -> list[str]:
    return [record.external_id for record in records]


def _comparable(record: Record, harness: ConnectorHarness) -> dict[str, Any]:
    return record.model_dump(exclude=set(harness.unsupported_fields))


def _modified_since(dataset: Dataset, stream: ObjectType, since: datetime) -> set[str]:
    return {
        record.external_id
        for record in dataset.records(stream)
        if record.modified_at is None or record.modified_at >= since
    }


def _missing(expected: Iterable[str], delivered: Iterable[str]) -> list[str]:
    return sorted(set(expected) - set(delivered))


# --- the checks --------------------------------------------------------------------------


def check_full_read_delivers_every_record_exactly_once(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """A first read pages through every record exactly once, in several pages."""
    dataset = standard_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            pages = read_pass(connector, stream)
            assert_well_formed_pass(pages, start=None, page_size=page_size)
            delivered = Counter(_ids(_records(pages)))
            expected = _ids(dataset.records(stream))
            assert not (missing := _missing(expected, delivered)), f"{stream}: lost {missing}"
            twice = sorted(i for i, n in delivered.items() if n > 1)
            assert not twice, f"{stream}: delivered more than once: {twice}"
            extra = sorted(set(delivered) - set(expected))
            assert not extra, f"{stream}: delivered records not in the CRM: {extra}"
            assert not _bad(pages), f"{stream}: good records reported as bad: {_bad(pages)}"
            filled = sum(1 for page in pages if page.records)
            assert filled >= 2, f"{stream}: {len(expected)} records came in {filled} page(s)"


def tombstone_dataset(page_size: int = DEFAULT_PAGE_SIZE) -> Dataset:
    """The standard dataset plus a company and a contact deleted in the CRM that carry only
    their id, modification time and deletion mark (as Salesforce and Pipedrive report
    deletions): no name, no address, no aliases, no links."""
    base = standard_dataset(page_size)
    gone_at = SHARED_AT + timedelta(hours=1)
    return Dataset(
        companies=(*base.companies, CompanyRecord(external_id="co-gone", modified_at=gone_at,
                                                  deleted=True)),
        contacts=(*base.contacts, ContactRecord(external_id="pe-gone", modified_at=gone_at,
                                                deleted=True)),
    )  # fmt: skip


def check_a_deletion_carrying_only_its_id_is_delivered_as_one(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """A record deleted in the CRM reaches the engine as a deletion of that id, and the
    connector invents nothing for the fields the CRM did not send (the store keeps the
    customer's data: a deletion changes only its deletion mark)."""
    dataset = tombstone_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            gone = next(r for r in dataset.records(stream) if r.external_id.endswith("-gone"))
            delivered = [
                r
                for r in _records(read_pass(connector, stream))
                if r.external_id == gone.external_id
            ]
            assert len(delivered) == 1, f"{stream}: the deletion of {gone.external_id} was lost"
            assert delivered[0].deleted, f"{stream}: {gone.external_id} arrived as not deleted"
            assert _comparable(delivered[0], harness) == _comparable(gone, harness), (
                f"{stream}: the deletion of {gone.external_id} carries data the CRM did not send"
            )


def check_full_pass_over_a_since_cursor_delivers_every_record(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """A full pass requested over a cursor with a ``since`` ignores it and reads everything."""
    dataset = standard_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            newest = max(r.modified_at for r in dataset.records(stream) if r.modified_at)
            start = Cursor(since=newest)
            pages = read_pass(connector, stream, cursor=start, full=True)
            assert_well_formed_pass(pages, start=start, page_size=page_size)
            missing = _missing(_ids(dataset.records(stream)), _ids(_records(pages)))
            assert not missing, f"{stream}: a full pass over since={newest} lost {missing}"


def check_cursor_never_moves_back_and_the_last_page_ends_the_pass(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """Through a full pass and the incremental pass after it, since never decreases,
    positions never repeat, and each pass ends with a cursor that has a since."""
    dataset = standard_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            pages = read_pass(connector, stream)
            assert_well_formed_pass(pages, start=None, page_size=page_size)
            end = _stored(pages[-1].cursor)
            assert end.since is not None, f"{stream}: a full pass ended without a since"
            later = read_pass(connector, stream, cursor=end)
            assert_well_formed_pass(later, start=end, page_size=page_size)


def check_since_never_passes_the_run_start(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """A pass whose run started before the newest records ends with since <= the run start."""
    dataset = standard_dataset(page_size)
    started_at = SHARED_AT + timedelta(seconds=30)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            pages = read_pass(connector, stream, started_at=started_at)
            assert_well_formed_pass(pages, start=None, page_size=page_size, started_at=started_at)


def check_resume_from_every_checkpoint_loses_and_duplicates_nothing(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """Killed after any page of a full pass, a restarted read completes the record set;
    it may repeat at most one page's worth of records."""
    dataset = standard_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        streams = _streams(connector)
        passes = {stream: read_pass(connector, stream) for stream in streams}
    expected = {
        stream: {r.external_id: _comparable(r, harness) for r in dataset.records(stream)}
        for stream in streams
    }
    for stream, pages in passes.items():
        _check_resumes(harness, dataset, stream, pages, expected[stream], page_size)


def _check_resumes(
    harness: ConnectorHarness,
    dataset: Dataset,
    stream: ObjectType,
    pages: Sequence[Page],
    expected: dict[str, dict[str, Any]],
    page_size: int,
    *,
    expected_ids: set[str] | None = None,
) -> None:
    """Resume from each in-pass page's cursor in a fresh connector (a restarted process)."""
    for index, page in enumerate(pages[:-1]):
        checkpoint = _stored(page.cursor)
        before = _records(pages[: index + 1])
        with _connector(harness, dataset, page_size) as connector:
            rest = read_pass(connector, stream, cursor=checkpoint)
        assert_well_formed_pass(rest, start=checkpoint, page_size=page_size)
        after = _records(rest)
        where = f"{stream}, resumed after page {index + 1} (position {checkpoint.position!r})"
        final = {record.external_id: _comparable(record, harness) for record in before + after}
        if expected_ids is None:
            assert not (lost := _missing(expected, final)), f"{where}: lost {lost}"
            extra = sorted(set(final) - set(expected))
            assert not extra, f"{where}: delivered records not in the CRM: {extra}"
            changed = sorted(i for i in expected if final[i] != expected[i])
            assert not changed, f"{where}: records differ from the CRM's: {changed}"
        else:
            assert not (lost := _missing(expected_ids, final)), f"{where}: lost {lost}"
        repeated = set(_ids(before)) & set(_ids(after))
        assert len(repeated) <= page_size, (
            f"{where}: {len(repeated)} records came again; a resume may repeat one page at most"
        )


def check_incremental_pass_delivers_every_record_sharing_the_since_timestamp(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """More than two and a half pages of records modified at exactly ``since`` all arrive,
    in the pass and when it is resumed from any of its checkpoints."""
    dataset = standard_dataset(page_size)
    start = Cursor(since=SHARED_AT)
    with _connector(harness, dataset, page_size) as connector:
        streams = _streams(connector)
        passes = {stream: read_pass(connector, stream, cursor=start) for stream in streams}
    for stream, pages in passes.items():
        sharing = {r.external_id for r in dataset.records(stream) if r.modified_at == SHARED_AT}
        assert len(sharing) >= 2.5 * page_size, "the dataset has too few records at SHARED_AT"
        assert_well_formed_pass(pages, start=start, page_size=page_size)
        expected = _modified_since(dataset, stream, SHARED_AT)
        lost = _missing(expected, _ids(_records(pages)))
        assert not lost, f"{stream}: an incremental pass from {SHARED_AT} lost {lost}"
        _check_resumes(harness, dataset, stream, pages, {}, page_size, expected_ids=expected)


def check_incremental_pass_returns_every_record_modified_at_or_after_since(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """From each modification time in the data (and before and after all of them), an
    incremental pass returns every record modified at or after it."""
    dataset = standard_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            times = sorted({r.modified_at for r in dataset.records(stream) if r.modified_at})
            probes = [times[0] - timedelta(days=1), *times, times[-1] + timedelta(milliseconds=1)]
            for since in probes:
                start = Cursor(since=since)
                pages = read_pass(connector, stream, cursor=start)
                assert_well_formed_pass(pages, start=start, page_size=page_size)
                lost = _missing(_modified_since(dataset, stream, since), _ids(_records(pages)))
                assert not lost, f"{stream}: an incremental pass from {since} lost {lost}"


def check_bad_records_are_reported_and_good_ones_still_arrive(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """Each broken record comes as a BadRecord with a reason; every good record still arrives."""
    dataset = bad_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            pages = read_pass(connector, stream)
            assert_well_formed_pass(pages, start=None, page_size=page_size)
            good = _ids(dataset.records(stream))
            delivered = _ids(_records(pages))
            assert not (lost := _missing(good, delivered)), f"{stream}: lost good {lost}"
            assert not (extra := sorted(set(delivered) - set(good))), (
                f"{stream}: broken records delivered as good ones: {extra}"
            )
            samples = dataset.bad_samples(stream)
            bad = _bad(pages)
            assert len(bad) == len(samples), (
                f"{stream}: {len(bad)} bad records for {len(samples)} broken ones: {bad}"
            )
            for record in bad:
                assert record.object_type is stream, f"{stream}: {record} has another type"
                assert record.reason.strip(), f"{stream}: {record} has no reason"
                assert record.raw.strip(), f"{stream}: {record} has no raw text"
            known = {sample.external_id for sample in samples} - {None}
            reported = {record.external_id for record in bad} - {None}
            assert reported <= known, f"{stream}: bad records with unknown ids: {reported - known}"
            needed = {s.external_id for s in samples if s.kind is BadKind.BAD_TIMESTAMP}
            assert needed <= reported, f"{stream}: bad records lost their ids: {needed - reported}"


def check_rate_limited_read_delivers_every_record(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """With rate-limit responses injected, a full read still delivers every record."""
    if not harness.supports_rate_limits:
        pytest.skip("the harness does not inject rate limits")
    dataset = standard_dataset(page_size)
    with _connector(harness, dataset, page_size, rate_limited=True) as connector:
        for stream in _streams(connector):
            try:
                pages = read_pass(connector, stream)
            except ConnectorError as exc:
                raise AssertionError(f"{stream}: a rate-limited read failed: {exc!r}") from exc
            assert_well_formed_pass(pages, start=None, page_size=page_size)
            delivered = _ids(_records(pages))
            lost = _missing(_ids(dataset.records(stream)), delivered)
            assert not lost, f"{stream}: a rate-limited read lost {lost}"


def check_fetch_returns_exactly_the_named_records(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """``fetch`` returns the named records (deleted ones included) and nothing else."""
    dataset = standard_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            records = dataset.records(stream)
            chosen = [records[0], records[len(records) // 2], records[-1]]
            chosen += [r for r in records if r.deleted][:1]
            wanted = {record.external_id: _comparable(record, harness) for record in chosen}
            page = connector.fetch(stream, [*wanted, "no-such-id"])
            assert page.stream is stream, f"fetch({stream}) returned a {page.stream} page"
            got = _ids(page.records)
            assert sorted(got) == sorted(wanted), f"{stream}: fetch{sorted(wanted)} gave {got}"
            for record in page.records:
                assert _comparable(record, harness) == wanted[record.external_id], (
                    f"{stream}: fetch returned {record.external_id} with other fields"
                )
            assert not page.bad, f"{stream}: fetch reported good records as bad: {page.bad}"


def check_delivered_records_carry_the_dataset_fields(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """Every delivered record equals the CRM's record, field by field."""
    dataset = standard_dataset(page_size)
    with _connector(harness, dataset, page_size) as connector:
        for stream in _streams(connector):
            expected = {r.external_id: _comparable(r, harness) for r in dataset.records(stream)}
            for record in _records(read_pass(connector, stream)):
                got = _comparable(record, harness)
                want = expected.get(record.external_id)
                assert got == want, f"{stream} {record.external_id}: got {got}, expected {want}"


def check_empty_stream_ends_its_pass(
    harness: ConnectorHarness, *, page_size: int = DEFAULT_PAGE_SIZE
) -> None:
    """A CRM without records gives a pass that delivers nothing and ends."""
    with _connector(harness, Dataset(), page_size) as connector:
        for stream in _streams(connector):
            pages = read_pass(connector, stream)
            assert_well_formed_pass(pages, start=None, page_size=page_size)
            assert not _records(pages), f"{stream}: records from an empty CRM"


class ConnectorContract:
    """The suite as pytest tests: subclass it as ``Test...`` and provide a ``harness`` fixture.

    Override :attr:`page_size` if the connector cannot page that small.
    """

    page_size: int = DEFAULT_PAGE_SIZE

    def test_a_full_read_delivers_every_record_exactly_once_in_several_pages(
        self, harness: ConnectorHarness
    ) -> None:
        check_full_read_delivers_every_record_exactly_once(harness, page_size=self.page_size)

    def test_a_full_pass_over_a_since_cursor_delivers_every_record(
        self, harness: ConnectorHarness
    ) -> None:
        check_full_pass_over_a_since_cursor_delivers_every_record(harness, page_size=self.page_size)

    def test_the_cursor_never_moves_back_and_the_last_page_ends_the_pass(
        self, harness: ConnectorHarness
    ) -> None:
        check_cursor_never_moves_back_and_the_last_page_ends_the_pass(
            harness, page_size=self.page_size
        )

    def test_since_never_passes_the_run_start(self, harness: ConnectorHarness) -> None:
        check_since_never_passes_the_run_start(harness, page_size=self.page_size)

    def test_resuming_from_every_checkpoint_loses_and_duplicates_nothing(
        self, harness: ConnectorHarness
    ) -> None:
        check_resume_from_every_checkpoint_loses_and_duplicates_nothing(
            harness, page_size=self.page_size
        )

    def test_an_incremental_pass_delivers_every_record_sharing_the_since_timestamp(
        self, harness: ConnectorHarness
    ) -> None:
        check_incremental_pass_delivers_every_record_sharing_the_since_timestamp(
            harness, page_size=self.page_size
        )

    def test_an_incremental_pass_returns_every_record_modified_at_or_after_since(
        self, harness: ConnectorHarness
    ) -> None:
        check_incremental_pass_returns_every_record_modified_at_or_after_since(
            harness, page_size=self.page_size
        )

    def test_bad_records_are_reported_while_good_ones_still_arrive(
        self, harness: ConnectorHarness
    ) -> None:
        check_bad_records_are_reported_and_good_ones_still_arrive(harness, page_size=self.page_size)

    def test_a_rate_limited_read_still_delivers_every_record(
        self, harness: ConnectorHarness
    ) -> None:
        check_rate_limited_read_delivers_every_record(harness, page_size=self.page_size)

    def test_fetch_returns_exactly_the_named_records(self, harness: ConnectorHarness) -> None:
        check_fetch_returns_exactly_the_named_records(harness, page_size=self.page_size)

    def test_a_deletion_carrying_only_its_id_is_delivered_as_one(
        self, harness: ConnectorHarness
    ) -> None:
        check_a_deletion_carrying_only_its_id_is_delivered_as_one(harness, page_size=self.page_size)

    def test_delivered_records_carry_the_dataset_fields(self, harness: ConnectorHarness) -> None:
        check_delivered_records_carry_the_dataset_fields(harness, page_size=self.page_size)

    def test_an_empty_stream_ends_its_pass(self, harness: ConnectorHarness) -> None:
        check_empty_stream_ends_its_pass(harness, page_size=self.page_size)


# --- a reference implementation ------------------------------------------------------------


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


@dataclass(slots=True)
class InMemoryConnector:
    """A connector over a :class:`Dataset`, following the contract to the letter.

    A pass orders the stream's records by (modified_at, external_id), keeps those
    modified at or after ``since`` (every one in a full pass) and pages through them;
    ``position`` is the offset reached. Bad samples come first, as :class:`BadRecord`.
    Replace ``dataset`` between passes to simulate changes in the CRM (not during one).
    """

    dataset: Dataset
    page_size: int = DEFAULT_PAGE_SIZE
    closed: bool = field(default=False, init=False)

    def streams(self) -> Sequence[ObjectType]:
        return (ObjectType.COMPANY, ObjectType.CONTACT)

    def read(self, request: ReadRequest) -> Iterator[Page]:
        return self._read(request)

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        wanted = set(external_ids)
        records = [r for r in self.dataset.records(object_type) if r.external_id in wanted]
        return Page(stream=object_type, cursor=Cursor(), records=records)

    def close(self) -> None:
        self.closed = True

    def _read(self, request: ReadRequest) -> Iterator[Page]:
        cursor = request.cursor or Cursor()
        if cursor.position is not None:
            full, until = cursor.full, cursor.until or request.started_at
            offset = self._resume_offset(cursor.position)
            newest = _parse_time(cursor.extra.get("newest"))
        else:
            full, until, offset = request.full or cursor.since is None, request.started_at, 0
            newest = None
        items = self._items(request.stream, None if full else cursor.since)
        while True:
            chunk = items[offset : offset + self.page_size]
            offset += len(chunk)
            for item in chunk:
                if not isinstance(item, BadRecord):
                    newest = _later(newest, item.modified_at)
            records = [item for item in chunk if not isinstance(item, BadRecord)]
            bad = [item for item in chunk if isinstance(item, BadRecord)]
            if offset >= len(items):
                end = self._final_since(cursor.since, newest, until)
                yield Page(request.stream, Cursor(since=end), records, bad)
                return
            extra = {"newest": newest.isoformat()} if newest else {}
            position = str(offset)
            next_cursor = Cursor(
                since=cursor.since, until=until, position=position, full=full, extra=extra
            )
            yield Page(request.stream, next_cursor, records, bad)

    def _items(self, stream: ObjectType, since: datetime | None) -> list[Record | BadRecord]:
        floor = datetime.min.replace(tzinfo=UTC)
        records = sorted(
            self._select(self.dataset.records(stream), since),
            key=lambda r: (r.modified_at or floor, r.external_id),
        )
        return [*self._bad(stream), *records]

    def _select(self, records: Sequence[Record], since: datetime | None) -> list[Record]:
        if since is None:
            return list(records)
        return [r for r in records if r.modified_at is None or r.modified_at >= since]

    def _bad(self, stream: ObjectType) -> list[BadRecord]:
        return [
            BadRecord(
                object_type=stream,
                external_id=sample.external_id,
                raw=json.dumps({"id": sample.external_id, "kind": sample.kind.value}),
                reason=f"broken on purpose: {sample.kind.value}",
            )
            for sample in self.dataset.bad_samples(stream)
        ]

    def _resume_offset(self, position: str) -> int:
        return int(position)

    def _final_since(
        self, since: datetime | None, newest: datetime | None, until: datetime
    ) -> datetime | None:
        return _later(since, min(newest, until) if newest else None)


def _parse_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class InMemoryHarness(ConnectorHarness):
    """Builds :class:`InMemoryConnector` objects; the kit's own tests use it."""

    def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False) -> Connector:
        return InMemoryConnector(dataset, page_size)
