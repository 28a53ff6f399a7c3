"""The file connector's passes: paging, cursors, resume, incremental reads, fetch, errors."""

from __future__ import annotations

import json
import logging
import os
import tracemalloc
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pydantic.main
import pytest

from crmsync.domain.values import TaxStatus
from crmsync.errors import FatalConnectorError
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import (
    BadRecord,
    CompanyLink,
    CompanyRecord,
    ContactRecord,
    Cursor,
    ObjectType,
    Page,
)
from crmsync.sdk.testing import read_pass
from crmsync_file import FileConnector
from crmsync_file.tests.support import (
    COMPANY_HEADER,
    STARTED_AT,
    Build,
    bad,
    company_rows,
    csv_text,
    ids,
    records,
)

COMPANY = ObjectType.COMPANY
CONTACT = ObjectType.CONTACT


def _read(
    connector: FileConnector,
    *,
    cursor: Cursor | None = None,
    full: bool = False,
    stream: ObjectType = COMPANY,
    started_at: datetime = STARTED_AT,
) -> list[Page]:
    return read_pass(connector, stream, cursor=cursor, full=full, started_at=started_at)


def _at(day: int, hour: int = 10) -> str:
    return f"2026-03-{day:02d}T{hour:02d}:00:00Z"


def _utc(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def _dated(*days: int) -> str:
    """A companies file with one row per day: co-<n> modified on March <day>."""
    rows = [
        row
        for n, day in enumerate(days, start=1)
        for row in company_rows(1, start=n, updated_at=_at(day))
    ]
    return csv_text(COMPANY_HEADER, *rows)


def _contents(page: Page) -> tuple[ObjectType, Cursor, list[object], list[BadRecord]]:
    """What a page delivers (not when it was read)."""
    return page.stream, page.cursor, list(page.records), list(page.bad)


def _bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


# --- errors -------------------------------------------------------------------------------


def test_a_missing_file_is_a_fatal_connector_error_naming_the_path(
    build: Build, tmp_path: Path
) -> None:
    connector = build()
    with pytest.raises(
        FatalConnectorError, match=f"export file not found: {tmp_path}/companies.csv"
    ):
        _read(connector)
    with pytest.raises(FatalConnectorError, match="not found"):
        connector.fetch(COMPANY, ["co-1"])


def test_a_directory_in_place_of_the_file_is_a_fatal_connector_error(
    build: Build, tmp_path: Path
) -> None:
    (tmp_path / "companies.csv").mkdir()
    with pytest.raises(FatalConnectorError, match="cannot open"):
        _read(build())


def test_a_column_named_in_the_config_but_missing_from_the_header_is_fatal(build: Build) -> None:
    connector = build(
        csv_text("id,name", "1,Acme"),
        company_source={"columns": {"tax_status": "VAT status", "name": "name"}},
    )
    with pytest.raises(FatalConnectorError, match="has no column 'VAT status'"):
        _read(connector)


def test_a_header_without_the_id_column_is_fatal(build: Build) -> None:
    with pytest.raises(FatalConnectorError, match="has no column 'id'"):
        _read(build(csv_text("Record ID,name", "1,Acme")))


def test_default_columns_missing_from_the_header_are_simply_absent(build: Build) -> None:
    pages = _read(build(csv_text("id,name", "1,Acme")))
    assert records(pages) == [CompanyRecord(external_id="1", name="Acme")]


def test_reading_contacts_without_a_contacts_file_is_fatal(build: Build) -> None:
    connector = build(csv_text(COMPANY_HEADER))
    assert list(connector.streams()) == [COMPANY]
    with pytest.raises(FatalConnectorError, match="no contact file is configured"):
        connector.read(ReadRequest(CONTACT, None, False, STARTED_AT))
    page = connector.fetch(CONTACT, ["pe-1"])
    assert (page.stream, page.records, page.bad) == (CONTACT, [], [])


def test_streams_are_companies_then_contacts(build: Build) -> None:
    connector = build(csv_text(COMPANY_HEADER), csv_text("id,name"))
    assert list(connector.streams()) == [COMPANY, CONTACT]


# --- paging and cursors -------------------------------------------------------------------


def test_pages_hold_page_size_rows_and_the_last_page_ends_the_pass(build: Build) -> None:
    pages = _read(build(csv_text(COMPANY_HEADER, *company_rows(7)), page_size=3))
    assert [ids(page.records) for page in pages] == [
        ["co-1", "co-2", "co-3"],
        ["co-4", "co-5", "co-6"],
        ["co-7"],
    ]
    assert [page.cursor.position for page in pages] == ["3", "6", None]
    assert [page.cursor.full for page in pages] == [True, True, False]
    assert [page.cursor.until for page in pages] == [STARTED_AT, STARTED_AT, None]


def test_a_file_that_fills_whole_pages_ends_without_an_empty_page(build: Build) -> None:
    pages = _read(build(csv_text(COMPANY_HEADER, *company_rows(6)), page_size=3))
    assert [len(page.records) for page in pages] == [3, 3]
    assert pages[-1].cursor.position is None


def test_an_empty_file_gives_one_page_that_ends_the_pass(build: Build) -> None:
    (page,) = _read(build(""))
    assert page.records == []
    assert page.cursor.position is None


def test_positions_count_rows_read_including_bad_and_filtered_ones(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        *company_rows(2, updated_at=_at(1)),  # filtered out by since
        ",no id,,,,,,,",  # bad
        *company_rows(4, start=3, updated_at=_at(5)),
    )
    pages = _read(build(content, page_size=2), cursor=Cursor(since=_utc(2)))
    assert [(ids(p.records), len(p.bad), p.cursor.position) for p in pages] == [
        (["co-3"], 1, "4"),
        (["co-4", "co-5"], 0, "6"),
        (["co-6"], 0, None),
    ]


def test_the_last_page_sets_since_to_the_newest_modification_delivered(build: Build) -> None:
    pages = _read(build(_dated(3, 9, 5)))
    assert pages[-1].cursor.since == _utc(9)
    assert pages[-1].cursor.extra["fingerprint"]


def test_since_is_capped_at_the_run_start(build: Build) -> None:
    pages = _read(build(_dated(3, 9, 5)), started_at=_utc(6))
    assert ids(records(pages)) == ["co-1", "co-2", "co-3"]
    assert pages[-1].cursor.since == _utc(6)


def test_since_never_decreases(build: Build) -> None:
    start = Cursor(since=_utc(20))
    pages = _read(build(_dated(3, 9)), cursor=start, full=True)
    assert ids(records(pages)) == ["co-1", "co-2"]
    assert all(page.cursor.since == _utc(20) for page in pages)


def test_an_incremental_pass_delivers_rows_modified_at_or_after_since(build: Build) -> None:
    pages = _read(build(_dated(3, 9, 5, 4, 12)), cursor=Cursor(since=_utc(5)))
    assert ids(records(pages)) == ["co-2", "co-3", "co-5"]
    assert pages[-1].cursor.since == _utc(12)


def test_a_full_request_ignores_since(build: Build) -> None:
    pages = _read(build(_dated(3, 9)), cursor=Cursor(since=_utc(5)), full=True)
    assert ids(records(pages)) == ["co-1", "co-2"]


def test_rows_without_a_modification_time_come_in_every_incremental_pass(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        *company_rows(1, updated_at=""),
        *company_rows(1, start=2, updated_at=_at(1)),
    )
    pages = _read(build(content), cursor=Cursor(since=_utc(5)))
    assert ids(records(pages)) == ["co-1"]
    assert pages[-1].cursor.since == _utc(5)


# --- resume -------------------------------------------------------------------------------


def test_resuming_on_an_unchanged_file_continues_after_the_position(build: Build) -> None:
    connector = build(csv_text(COMPANY_HEADER, *company_rows(7)), page_size=3)
    first = _read(connector)[0]
    rest = _read(connector, cursor=first.cursor)
    assert ids(records(rest)) == ["co-4", "co-5", "co-6", "co-7"]


def test_resuming_keeps_the_newest_time_seen_before_the_interruption(build: Build) -> None:
    connector = build(_dated(20, 3, 4, 5), page_size=2)
    first = _read(connector)[0]
    assert first.cursor.extra["max_seen"] == _utc(20).isoformat()
    rest = _read(connector, cursor=first.cursor)
    assert rest[-1].cursor.since == _utc(20)


def test_resuming_on_a_changed_file_restarts_the_pass(build: Build, tmp_path: Path) -> None:
    connector = build(csv_text(COMPANY_HEADER, *company_rows(7)), page_size=3)
    first = _read(connector)[0]
    (tmp_path / "companies.csv").write_text(
        csv_text(COMPANY_HEADER, *company_rows(1, start=0), *company_rows(7))
    )
    rest = _read(connector, cursor=first.cursor)
    assert ids(records(rest)) == [f"co-{i}" for i in range(8)]


def test_a_restarted_incremental_pass_stays_incremental(build: Build, tmp_path: Path) -> None:
    connector = build(_dated(3, 9, 10, 11), page_size=1)
    first = _read(connector, cursor=Cursor(since=_utc(9)))[0]
    assert first.cursor.full is False
    (tmp_path / "companies.csv").write_text(_dated(3, 9, 10, 11, 12))
    rest = _read(connector, cursor=first.cursor, full=True)
    assert ids(records(rest)) == ["co-2", "co-3", "co-4", "co-5"]


def test_resuming_an_interrupted_full_pass_ignores_since(build: Build) -> None:
    connector = build(_dated(3, 9, 4, 5), page_size=2)
    first = _read(connector, cursor=Cursor(since=_utc(8)), full=True)[0]
    assert first.cursor.full is True
    rest = _read(connector, cursor=first.cursor)
    assert ids(records(rest)) == ["co-3", "co-4"]


def test_a_resume_position_that_is_not_a_row_number_restarts_the_pass(build: Build) -> None:
    connector = build(csv_text(COMPANY_HEADER, *company_rows(4)), page_size=2)
    fingerprint = _read(connector)[0].cursor.extra["fingerprint"]
    cursor = Cursor(position="after:xyz", full=True, extra={"fingerprint": fingerprint})
    assert ids(records(_read(connector, cursor=cursor))) == ["co-1", "co-2", "co-3", "co-4"]


# --- files without a modification column --------------------------------------------------

NO_DATES = {"columns": {"modified_at": None}}


def test_without_modification_times_an_unchanged_file_gives_one_empty_page(build: Build) -> None:
    connector = build(csv_text(COMPANY_HEADER, *company_rows(4)), company_source=NO_DATES)
    end = _read(connector)[-1].cursor
    assert end.since is not None
    (page,) = _read(connector, cursor=end)
    assert _contents(page) == (COMPANY, end, [], [])


def test_without_modification_times_a_changed_file_is_read_again(
    build: Build, tmp_path: Path
) -> None:
    connector = build(csv_text(COMPANY_HEADER, *company_rows(4)), company_source=NO_DATES)
    end = _read(connector)[-1].cursor
    _bump_mtime(tmp_path / "companies.csv")
    pages = _read(connector, cursor=end)
    assert ids(records(pages)) == ["co-1", "co-2", "co-3", "co-4"]
    assert pages[-1].cursor.extra["fingerprint"] != end.extra["fingerprint"]


def test_a_csv_without_the_modification_column_counts_as_having_no_times(
    build: Build, tmp_path: Path
) -> None:
    connector = build(csv_text("id,name", "1,a"))
    end = _read(connector)[-1].cursor
    mtime = datetime.fromtimestamp((tmp_path / "companies.csv").stat().st_mtime_ns / 1e9, UTC)
    assert end.since == min(mtime, STARTED_AT)
    assert [_contents(page) for page in _read(connector, cursor=end)] == [(COMPANY, end, [], [])]


# --- bad rows and duplicates ----------------------------------------------------------------


def test_bad_rows_are_yielded_with_reasons_while_the_pass_goes_on(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        *company_rows(1),
        ",Nameless,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01",
        "co-2,Late,1 Main St,Hamburg,20095,DE,TAXED,,next tuesday",
        "co-3,Too,many,fields,here,DE,TAXED,,2026-03-01,surplus",
        "co-4,Free,1 Main St,Hamburg,20095,DE,VAT-free,,2026-03-01",
        *company_rows(1, start=5),
    )
    pages = _read(build(content, page_size=10))
    assert ids(records(pages)) == ["co-1", "co-5"]
    found = bad(pages)
    assert [(b.object_type, b.external_id) for b in found] == [
        (COMPANY, None),
        (COMPANY, "co-2"),
        (COMPANY, "co-3"),  # read from the id column's position
        (COMPANY, "co-4"),
    ]
    assert found[0].reason == "line 3: no id (column 'id' is empty)"
    assert found[1].reason.startswith("line 4: updated_at: 'next tuesday' is neither")
    assert found[2].reason == "line 5: 10 fields where the header has 9"
    assert found[2].raw == "co-3,Too,many,fields,here,DE,TAXED,,2026-03-01,surplus"
    assert found[3].reason.startswith("line 6: tax_status: tax status 'VAT-free' is not one of")


def test_an_incremental_pass_skips_old_bad_rows_but_reports_undatable_ones(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        "co-1,Old,1 Main St,Hamburg,20095,DE,VAT-free,,2026-03-01",
        "co-2,Undatable,1 Main St,Hamburg,20095,DE,TAXED,,next tuesday",
    )
    pages = _read(build(content), cursor=Cursor(since=_utc(5)))
    assert ids(bad(pages)) == ["co-2"]


def test_duplicate_ids_are_all_delivered_in_file_order_and_logged(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    content = csv_text(
        COMPANY_HEADER,
        "co-1,First,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01",
        "co-1,Second,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-02",
    )
    with caplog.at_level(logging.WARNING):
        pages = _read(build(content))
    assert [(r.external_id, r.name) for r in records(pages)] == [
        ("co-1", "First"),
        ("co-1", "Second"),
    ]
    assert "co-1 appears twice in one page" in caplog.text


# --- fetch ----------------------------------------------------------------------------------


def test_fetch_returns_the_last_row_of_each_named_id_and_skips_unknown_ones(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        *company_rows(3),
        "co-2,Renamed,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-02",
        "broken,row",
    )
    page = build(content).fetch(COMPANY, ["co-3", "co-2", "nope"])
    assert page.stream is COMPANY
    assert page.cursor == Cursor()
    assert [(r.external_id, r.name) for r in page.records] == [
        ("co-3", "Company 3"),
        ("co-2", "Renamed"),
    ]
    assert page.bad == []


def test_fetch_reports_a_named_row_that_is_bad(build: Build) -> None:
    content = csv_text(COMPANY_HEADER, "co-1,X,1 Main St,Hamburg,20095,DE,VAT-free,,2026-03-01")
    page = build(content).fetch(COMPANY, ["co-1"])
    assert page.records == []
    assert ids(page.bad) == ["co-1"]


# --- formats and options --------------------------------------------------------------------


def test_json_lines_exports_carry_lists_booleans_and_epoch_milliseconds(build: Build) -> None:
    ms = int(_utc(4).timestamp() * 1000)
    companies = "\n".join(
        json.dumps(row)
        for row in (
            {"id": 1, "name": "Acme", "aliases": ["A-1", "A-2"], "deleted": True, "updated_at": ms},
            {"id": "2", "tax_status": "exempt", "updated_at": "2026-03-05T10:00:00+01:00"},
        )
    )
    contacts = json.dumps(
        {
            "id": "p1",
            "first_name": "Ada",
            "last_name": "Example",
            "company_id": [1, "2"],
            "billing_contact": ["2"],
        }
    )
    connector = build(
        companies,
        contacts,
        company_source={"path": "companies.jsonl", "tax_status_values": {"Exempt": "TAX_EXEMPT"}},
        contact_source={"path": "contacts.ndjson"},
    )
    assert records(_read(connector)) == [
        CompanyRecord(
            external_id="1", name="Acme", aliases=("A-1", "A-2"), deleted=True, modified_at=_utc(4)
        ),
        CompanyRecord(external_id="2", tax_status=TaxStatus.TAX_EXEMPT, modified_at=_utc(5, 9)),
    ]
    assert records(_read(connector, stream=CONTACT)) == [
        ContactRecord(
            external_id="p1",
            name="Ada Example",
            companies=(
                CompanyLink(company_id="1"),
                CompanyLink(company_id="2", billing_contact=True),
            ),
        )
    ]


def test_a_semicolon_csv_with_its_own_column_names_and_list_separator(build: Build) -> None:
    content = "Record ID;Company;Accounts;Last Modified\n7;Łódź Tekstylia;A|B;2026-03-01 10:00:00\n"
    source = {
        "delimiter": ";",
        "list_separator": "|",
        "columns": {
            "external_id": "Record ID",
            "name": "Company",
            "aliases": "Accounts",
            "modified_at": "Last Modified",
        },
    }
    pages = _read(
        build(
            content.encode("cp1252", errors="strict") if False else content, company_source=source
        )
    )
    assert records(pages) == [
        CompanyRecord(
            external_id="7", name="Łódź Tekstylia", aliases=("A", "B"), modified_at=_utc(1)
        )
    ]


# --- resources ------------------------------------------------------------------------------


class _Watched:
    """An opener that remembers the handles it gave out."""

    def __init__(self) -> None:
        self.handles: list[BinaryIO] = []

    def __call__(self, path: Path) -> BinaryIO:
        handle = path.open("rb")
        self.handles.append(handle)
        return handle


def test_a_read_streams_the_file_instead_of_loading_it(build: Build, tmp_path: Path) -> None:
    opener = _Watched()
    connector = build(
        csv_text(COMPANY_HEADER, *company_rows(20_000)), page_size=10, open_binary=opener
    )
    pages = connector.read(ReadRequest(COMPANY, None, False, STARTED_AT))
    assert isinstance(pages, Generator)
    next(pages)
    (handle,) = opener.handles
    size = (tmp_path / "companies.csv").stat().st_size
    assert handle.tell() < size / 20
    pages.close()
    assert handle.closed


def _held_at_the_last_page(connector: FileConnector) -> int:
    """Bytes allocated during the read and still held when the last page arrives.

    pydantic-core keeps a bounded cache of validated strings (allocated under
    pydantic/main.py); it is left out so that what remains is the connector's own.
    """
    tracemalloc.start()
    try:
        for page in connector.read(ReadRequest(COMPANY, None, False, STARTED_AT)):
            if not page.cursor.in_pass:
                snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    own = snapshot.filter_traces([tracemalloc.Filter(False, pydantic.main.__file__)])
    return sum(stat.size for stat in own.statistics("filename"))


def test_memory_stays_flat_as_the_file_grows(build: Build) -> None:
    def export(rows: int) -> FileConnector:
        return build(csv_text(COMPANY_HEADER, *company_rows(rows)), page_size=50)

    small = _held_at_the_last_page(export(1_000))
    large = _held_at_the_last_page(export(10_000))
    assert large < small + 16 * 1024, (small, large)


def test_close_closes_files_left_open_by_an_abandoned_read(build: Build) -> None:
    opener = _Watched()
    connector = build(csv_text(COMPANY_HEADER, *company_rows(10)), open_binary=opener)
    pages = connector.read(ReadRequest(COMPANY, None, False, STARTED_AT))
    assert isinstance(pages, Generator)
    next(pages)
    connector.close()
    assert opener.handles[0].closed
    pages.close()


def test_unused_since_bound_is_not_needed_for_a_first_read(build: Build) -> None:
    pages = _read(build(_dated(3)), started_at=_utc(3) - timedelta(days=1))
    assert pages[-1].cursor.since == _utc(2)


def test_bad_records_are_bad_record_objects(build: Build) -> None:
    pages = _read(build(csv_text(COMPANY_HEADER, ",,,,,,,,x")))
    assert all(isinstance(item, BadRecord) for item in bad(pages))


def test_a_file_that_gains_modification_times_is_read_in_full_once(
    build: Build, tmp_path: Path
) -> None:
    connector = build("")  # an empty export: no header, no times; since becomes its mtime
    end = _read(connector)[-1].cursor
    assert end.since is not None
    assert end.extra["row_times"] is False
    (tmp_path / "companies.csv").write_text(_dated(1, 2))  # rows older than that mtime
    pages = _read(connector, cursor=end)
    assert ids(records(pages)) == ["co-1", "co-2"]
    assert pages[-1].cursor.extra["row_times"] is True


def test_a_full_pass_tells_how_many_rows_the_export_holds_for_a_progress_bar(
    build: Build,
) -> None:
    pages = _read(build(_dated(3, 9, 5, 7, 8)), full=True)

    assert {page.total for page in pages} == {5}


def test_an_incremental_pass_does_not_guess_a_total(build: Build) -> None:
    first = _read(build(_dated(3, 9, 5)))

    pages = _read(build(_dated(3, 9, 5)), cursor=first[-1].cursor)

    assert {page.total for page in pages} == {None}
