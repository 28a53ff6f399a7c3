"""The contract kit passes a correct connector and catches broken ones.

Each broken connector is the reference :class:`InMemoryConnector` with one bug from
the list of pitfalls (strict ``>`` on the cursor, loops, lossy resumes, ...); the
kit's checks run as plain functions and must fail with an ``AssertionError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from itertools import count

import pytest

from crmsync.errors import TransientError
from crmsync.sdk.connector import Connector, ReadRequest
from crmsync.sdk.records import BadRecord, CompanyRecord, Cursor, ObjectType, Page, Record
from crmsync.sdk.testing import (
    ConnectorContract,
    ConnectorHarness,
    Dataset,
    InMemoryConnector,
    InMemoryHarness,
    check_bad_records_are_reported_and_good_ones_still_arrive,
    check_cursor_never_moves_back_and_the_last_page_ends_the_pass,
    check_delivered_records_carry_the_dataset_fields,
    check_empty_stream_ends_its_pass,
    check_fetch_returns_exactly_the_named_records,
    check_full_pass_over_a_since_cursor_delivers_every_record,
    check_full_read_delivers_every_record_exactly_once,
    check_incremental_pass_delivers_every_record_sharing_the_since_timestamp,
    check_incremental_pass_returns_every_record_modified_at_or_after_since,
    check_rate_limited_read_delivers_every_record,
    check_resume_from_every_checkpoint_loses_and_duplicates_nothing,
    check_since_never_passes_the_run_start,
    standard_dataset,
)


class _Harness(ConnectorHarness):
    """Builds a given (possibly broken) in-memory connector class."""

    def __init__(self, connector: type[InMemoryConnector], *, rate_limits: bool = False) -> None:
        self._connector = connector
        self.supports_rate_limits = rate_limits

    def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False) -> Connector:
        connector = self._connector(dataset, page_size)
        return _RateLimited(connector) if rate_limited else connector


class _RateLimited:
    """Wraps a connector whose pages each hit one 429 that its client retries."""

    def __init__(self, inner: InMemoryConnector) -> None:
        self.inner = inner
        self.retried = 0

    def streams(self) -> Sequence[ObjectType]:
        return self.inner.streams()

    def read(self, request: ReadRequest) -> Iterator[Page]:
        for page in self.inner.read(request):
            self.retried += 1  # a 429 answered, waited out, and the request repeated
            yield page

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        return self.inner.fetch(object_type, external_ids)

    def close(self) -> None:
        self.inner.close()


# --- broken connectors -------------------------------------------------------------------


class _StrictSince(InMemoryConnector):
    def _select(self, records: Sequence[Record], since: datetime | None) -> list[Record]:
        if since is None:
            return list(records)
        return [r for r in records if r.modified_at is not None and r.modified_at > since]


class _RepeatsTheFirstPage(InMemoryConnector):
    def _read(self, request: ReadRequest) -> Iterator[Page]:
        first = next(super()._read(request))
        while True:
            yield first


class _NeverEnds(InMemoryConnector):
    def _read(self, request: ReadRequest) -> Iterator[Page]:
        records = self.dataset.records(request.stream)
        for number in count(1):
            start = number * self.page_size % len(records)
            chunk = records[start : start + self.page_size]
            yield Page(request.stream, Cursor(position=f"p{number}", full=True), chunk)


class _OversizedPages(InMemoryConnector):
    def __init__(self, dataset: Dataset, page_size: int) -> None:
        super().__init__(dataset, page_size + 1)


class _ResumeSkipsARecord(InMemoryConnector):
    def _resume_offset(self, position: str) -> int:
        return int(position) + 1


class _ResumeRestartsThePass(InMemoryConnector):
    def _resume_offset(self, position: str) -> int:
        return 0


class _ResumeRestartsWithFreshTokens(InMemoryConnector):
    """Restarts the pass, but its resume tokens differ on every run (so no token repeats)."""

    runs = count()

    def _read(self, request: ReadRequest) -> Iterator[Page]:
        run = next(self.runs)
        for page in super()._read(request):
            if page.cursor.position is None:
                yield page
            else:
                cursor = page.cursor.model_copy(
                    update={"position": f"{run}:{page.cursor.position}"}
                )
                yield Page(page.stream, cursor, page.records, page.bad)

    def _resume_offset(self, position: str) -> int:
        return 0


class _SinceJumpsPastTheRunStart(InMemoryConnector):
    def _final_since(
        self, since: datetime | None, newest: datetime | None, until: datetime
    ) -> datetime | None:
        return until + timedelta(hours=1)


class _SinceForgotten(InMemoryConnector):
    def _final_since(
        self, since: datetime | None, newest: datetime | None, until: datetime
    ) -> datetime | None:
        return None


class _DropsBadRecords(InMemoryConnector):
    def _bad(self, stream: ObjectType) -> list[BadRecord]:
        return []


class _FetchReturnsEverything(InMemoryConnector):
    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        return Page(object_type, Cursor(), self.dataset.records(object_type))


class _DropsAliases(InMemoryConnector):
    def _read(self, request: ReadRequest) -> Iterator[Page]:
        for page in super()._read(request):
            records = [
                r.model_copy(update={"aliases": ()}) if isinstance(r, CompanyRecord) else r
                for r in page.records
            ]
            yield Page(page.stream, page.cursor, records, page.bad)


class _UnstorableCursor(InMemoryConnector):
    def _read(self, request: ReadRequest) -> Iterator[Page]:
        for page in super()._read(request):
            extra = {**page.cursor.extra, "seen": {1, 2}} if page.cursor.in_pass else {}
            cursor = page.cursor.model_copy(update={"extra": extra})
            yield Page(page.stream, cursor, page.records, page.bad)


class _LastPageStaysInFullMode(InMemoryConnector):
    def _read(self, request: ReadRequest) -> Iterator[Page]:
        for page in super()._read(request):
            if page.cursor.in_pass:
                yield page
            else:
                yield Page(page.stream, page.cursor.model_copy(update={"full": True}), page.records)


class _PageAfterTheEnd(InMemoryConnector):
    def _read(self, request: ReadRequest) -> Iterator[Page]:
        yield from super()._read(request)
        yield Page(request.stream, Cursor())


class _ContactsFirst(InMemoryConnector):
    def streams(self) -> Sequence[ObjectType]:
        return (ObjectType.CONTACT, ObjectType.COMPANY)


class _RateLimitedLosesAPage:
    """On a 429 the broken client gives up on that page and goes on with the next."""

    def __init__(self, inner: InMemoryConnector) -> None:
        self.inner = inner

    def streams(self) -> Sequence[ObjectType]:
        return self.inner.streams()

    def read(self, request: ReadRequest) -> Iterator[Page]:
        for number, page in enumerate(self.inner.read(request)):
            yield page if number != 1 else Page(page.stream, page.cursor)

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        return self.inner.fetch(object_type, external_ids)

    def close(self) -> None:
        self.inner.close()


class _RateLimitedRaises(_RateLimitedLosesAPage):
    def read(self, request: ReadRequest) -> Iterator[Page]:
        yield next(self.inner.read(request))
        raise TransientError("429 Too Many Requests, retries used up")


class _LossyRateLimitHarness(_Harness):
    def __init__(self, wrapper: type[_RateLimitedLosesAPage]) -> None:
        super().__init__(InMemoryConnector, rate_limits=True)
        self._wrapper = wrapper

    def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False) -> Connector:
        connector = InMemoryConnector(dataset, page_size)
        return self._wrapper(connector) if rate_limited else connector


# --- the kit passes a correct connector ---------------------------------------------------


class TestInMemoryConnectorContract(ConnectorContract):
    """The reference connector passes the whole suite (it is how a connector uses the kit)."""

    @pytest.fixture
    def harness(self) -> ConnectorHarness:
        return InMemoryHarness()


def test_a_connector_that_waits_out_rate_limits_passes_the_rate_limit_check() -> None:
    check_rate_limited_read_delivers_every_record(_Harness(InMemoryConnector, rate_limits=True))


def test_the_rate_limit_check_is_skipped_for_a_harness_without_rate_limits() -> None:
    with pytest.raises(pytest.skip.Exception):
        check_rate_limited_read_delivers_every_record(InMemoryHarness())


def test_the_standard_dataset_has_over_two_and_a_half_pages_sharing_one_timestamp() -> None:
    dataset = standard_dataset(page_size=4)
    for stream in (ObjectType.COMPANY, ObjectType.CONTACT):
        times = [record.modified_at for record in dataset.records(stream)]
        assert max(times.count(moment) for moment in set(times)) > 10


def test_the_standard_dataset_is_the_same_every_time() -> None:
    assert standard_dataset(4) == standard_dataset(4)


# --- the kit catches broken connectors ------------------------------------------------------


def test_strict_greater_than_on_since_is_caught_at_the_shared_timestamp() -> None:
    with pytest.raises(AssertionError, match="lost"):
        check_incremental_pass_delivers_every_record_sharing_the_since_timestamp(
            _Harness(_StrictSince)
        )


def test_strict_greater_than_on_since_is_caught_by_the_since_probes() -> None:
    with pytest.raises(AssertionError, match="lost"):
        check_incremental_pass_returns_every_record_modified_at_or_after_since(
            _Harness(_StrictSince)
        )


def test_a_connector_repeating_its_first_page_forever_is_caught_as_a_loop() -> None:
    with pytest.raises(AssertionError, match="loop"):
        check_full_read_delivers_every_record_exactly_once(_Harness(_RepeatsTheFirstPage))


def test_a_pass_that_never_ends_is_caught() -> None:
    with pytest.raises(AssertionError, match="did not end"):
        check_full_read_delivers_every_record_exactly_once(_Harness(_NeverEnds))


def test_pages_larger_than_the_page_size_are_caught() -> None:
    with pytest.raises(AssertionError, match="page size"):
        check_full_read_delivers_every_record_exactly_once(_Harness(_OversizedPages))


def test_a_resume_that_skips_a_record_is_caught() -> None:
    with pytest.raises(AssertionError, match="lost"):
        check_resume_from_every_checkpoint_loses_and_duplicates_nothing(
            _Harness(_ResumeSkipsARecord)
        )


def test_a_resume_that_restarts_the_pass_is_caught_as_a_loop() -> None:
    with pytest.raises(AssertionError, match="seen before"):
        check_resume_from_every_checkpoint_loses_and_duplicates_nothing(
            _Harness(_ResumeRestartsThePass)
        )


def test_a_resume_that_restarts_the_pass_with_fresh_tokens_is_caught_as_duplication() -> None:
    with pytest.raises(AssertionError, match="came again"):
        check_resume_from_every_checkpoint_loses_and_duplicates_nothing(
            _Harness(_ResumeRestartsWithFreshTokens)
        )


def test_a_since_past_the_run_start_is_caught() -> None:
    with pytest.raises(AssertionError, match="past the run start"):
        check_since_never_passes_the_run_start(_Harness(_SinceJumpsPastTheRunStart))


def test_a_pass_that_forgets_since_is_caught() -> None:
    with pytest.raises(AssertionError, match="since"):
        check_cursor_never_moves_back_and_the_last_page_ends_the_pass(_Harness(_SinceForgotten))


def test_a_since_that_moves_back_is_caught() -> None:
    with pytest.raises(AssertionError, match="moved back"):
        check_incremental_pass_returns_every_record_modified_at_or_after_since(
            _Harness(_SinceForgotten)
        )


def test_dropping_bad_records_is_caught() -> None:
    with pytest.raises(AssertionError, match="bad records"):
        check_bad_records_are_reported_and_good_ones_still_arrive(_Harness(_DropsBadRecords))


def test_a_fetch_returning_unnamed_records_is_caught() -> None:
    with pytest.raises(AssertionError, match="fetch"):
        check_fetch_returns_exactly_the_named_records(_Harness(_FetchReturnsEverything))


def test_a_field_lost_in_mapping_is_caught() -> None:
    with pytest.raises(AssertionError, match="expected"):
        check_delivered_records_carry_the_dataset_fields(_Harness(_DropsAliases))


def test_a_field_the_harness_declares_unsupported_is_not_compared() -> None:
    harness = _Harness(_DropsAliases)
    harness.unsupported_fields = frozenset({"aliases"})
    check_delivered_records_carry_the_dataset_fields(harness)


def test_a_cursor_that_does_not_survive_json_storage_is_caught() -> None:
    with pytest.raises(AssertionError, match="JSON"):
        check_full_read_delivers_every_record_exactly_once(_Harness(_UnstorableCursor))


def test_a_last_page_that_still_says_full_is_caught() -> None:
    with pytest.raises(AssertionError, match="full"):
        check_cursor_never_moves_back_and_the_last_page_ends_the_pass(
            _Harness(_LastPageStaysInFullMode)
        )


def test_a_page_after_the_end_of_the_pass_is_caught() -> None:
    with pytest.raises(AssertionError, match="after the page that ended"):
        check_empty_stream_ends_its_pass(_Harness(_PageAfterTheEnd))


def test_reading_contacts_before_companies_is_caught() -> None:
    with pytest.raises(AssertionError, match="companies must be read first"):
        check_full_pass_over_a_since_cursor_delivers_every_record(_Harness(_ContactsFirst))


def test_a_page_lost_to_a_rate_limit_is_caught() -> None:
    with pytest.raises(AssertionError, match="lost"):
        check_rate_limited_read_delivers_every_record(
            _LossyRateLimitHarness(_RateLimitedLosesAPage)
        )


def test_a_read_failing_on_a_rate_limit_is_caught() -> None:
    with pytest.raises(AssertionError, match="rate-limited read failed"):
        check_rate_limited_read_delivers_every_record(_LossyRateLimitHarness(_RateLimitedRaises))
