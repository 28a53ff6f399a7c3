"""Bad and hostile export files: each damaged row costs that row only, and nothing is unbounded."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from crmsync.errors import FatalConnectorError
from crmsync.sdk.connector import ReadRequest
from crmsync.sdk.records import BadRecord, Cursor, ObjectType, Page
from crmsync.sdk.testing import read_pass
from crmsync_file import FileConnector
from crmsync_file.rows import MAX_RECORD_CHARS
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
JSONL = {"path": "companies.jsonl"}


def _read(connector: FileConnector, cursor: Cursor | None = None) -> list[Page]:
    return read_pass(connector, COMPANY, cursor=cursor, started_at=STARTED_AT)


def _json_company(n: int, **overrides: object) -> str:
    values: dict[str, object] = {
        "id": f"co-{n}",
        "name": f"Company {n}",
        "address_line1": f"{n} Example St",
        "city": "Hamburg",
        "postal_code": "20095",
        "country": "DE",
        "tax_status": "TAXED",
        "updated_at": "2026-03-01T10:00:00Z",
    }
    values.update(overrides)
    return json.dumps(values)


def _only_bad(pages: list[Page]) -> BadRecord:
    (found,) = bad(pages)
    return found


# --- item 1: an unbalanced quote in a CSV row ------------------------------------------------


def test_an_unbalanced_quote_costs_its_own_row_and_every_later_row_lands(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        *company_rows(1),
        'X-2,"Unclosed quote Co,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01T10:00:00Z',
        *company_rows(14, start=3),
    )
    pages = _read(build(content, page_size=4))
    assert ids(records(pages)) == ["co-1", *(f"co-{n}" for n in range(3, 17))]
    found = _only_bad(pages)
    assert found.external_id == "X-2"
    assert found.reason.startswith("line 3: a quote opened on this line is not closed")
    assert "reading goes on at line 4" in found.reason
    assert found.raw.startswith('X-2,"Unclosed quote Co,')


def test_an_unbalanced_quote_before_rows_with_quoted_fields_costs_only_its_row(
    build: Build,
) -> None:
    content = csv_text(
        COMPANY_HEADER,
        'X-1,"Unclosed,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01',
        'co-2,"Beta, Inc",1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01',
        'co-3,"Gamma ""G"" AG",1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01',
    )
    pages = _read(build(content))
    assert [r.name for r in records(pages)] == ["Beta, Inc", 'Gamma "G" AG']
    assert ids(bad(pages)) == ["X-1"]


def test_a_quoted_field_that_really_spans_lines_still_lands_whole(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        'co-1,"Acme\nWest",1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01',
        *company_rows(1, start=2),
    )
    pages = _read(build(content))
    assert [r.name for r in records(pages)] == ["Acme\nWest", "Company 2"]
    assert bad(pages) == []


def test_a_quote_left_open_up_to_the_record_limit_costs_only_its_row(build: Build) -> None:
    many = company_rows(MAX_RECORD_CHARS // 50, start=2)
    content = csv_text(COMPANY_HEADER, 'X-1,"Open,1 Main St,Hamburg,20095,DE,TAXED,,', *many)
    pages = _read(build(content, page_size=500))
    assert len(records(pages)) == len(many)
    found = _only_bad(pages)
    assert "would pass the 131,072-character limit" in found.reason


def test_resuming_after_an_unbalanced_quote_reads_the_same_rows(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        *company_rows(2),
        'X-3,"Unclosed,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01',
        *company_rows(5, start=4),
    )
    connector = build(content, page_size=2)
    pages = _read(connector)
    for at, page in enumerate(pages[:-1]):
        resumed = _read(connector, cursor=page.cursor)
        assert records(resumed) == records(pages[at + 1 :])
        assert bad(resumed) == bad(pages[at + 1 :])


# --- item 9: NaN and Infinity in JSON Lines --------------------------------------------------


def test_nan_as_the_modification_time_quarantines_the_record_and_the_run_goes_on(
    build: Build,
) -> None:
    content = "\n".join(
        [
            _json_company(1),
            _json_company(2).replace('"2026-03-01T10:00:00Z"', "NaN"),
            _json_company(3),
        ]
    )
    pages = _read(build(content, company_source=JSONL))
    assert ids(records(pages)) == ["co-1", "co-3"]
    found = _only_bad(pages)
    assert (found.external_id, found.reason) == (
        "co-2",
        "line 2: updated_at: NaN is not a number crm-sync can store",
    )


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_numbers_anywhere_in_a_json_record_quarantine_it(
    build: Build, number: str
) -> None:
    line = _json_company(1, aliases=["a", "PLACEHOLDER"]).replace('"PLACEHOLDER"', number)
    pages = _read(build(line + "\n" + _json_company(2), company_source=JSONL))
    assert ids(records(pages)) == ["co-2"]
    found = _only_bad(pages)
    assert found.external_id == "co-1"
    assert found.reason == f"line 1: aliases: {number} is not a number crm-sync can store"


def test_a_lone_surrogate_escape_quarantines_the_record(build: Build) -> None:
    line = _json_company(1, name="PLACEHOLDER").replace("PLACEHOLDER", "\\ud800")
    pages = _read(build(line, company_source=JSONL))
    assert "name: a lone surrogate escape (\\ud800) is not text" in _only_bad(pages).reason


def test_an_integer_of_thousands_of_digits_quarantines_the_record(build: Build) -> None:
    line = _json_company(1).replace('"2026-03-01T10:00:00Z"', "9" * 5000)
    pages = _read(build(line + "\n" + _json_company(2), company_source=JSONL))
    assert ids(records(pages)) == ["co-2"]
    assert _only_bad(pages).external_id == "co-1"


# --- item 14: bounded reads -------------------------------------------------------------------


def test_a_device_in_place_of_the_export_is_refused(build: Build) -> None:
    connector = build(company_source={"path": "/dev/zero", "format": "csv"})
    with pytest.raises(FatalConnectorError, match="cannot open /dev/zero: not a regular file"):
        _read(connector)


def test_a_named_pipe_in_place_of_the_export_is_refused_without_waiting(
    build: Build, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "pipe.csv")
    connector = build(company_source={"path": "pipe.csv"})
    with pytest.raises(FatalConnectorError, match="not a regular file"):
        _read(connector)


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_an_over_long_line_is_quarantined_with_its_id_and_the_next_line_lands(
    build: Build, file_format: str
) -> None:
    huge = "x" * (MAX_RECORD_CHARS + 10)
    if file_format == "csv":
        content = csv_text(
            COMPANY_HEADER,
            f"co-1,{huge},1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01",
            *company_rows(1, start=2),
        )
        source = {"path": "companies.csv"}
    else:
        content = _json_company(1, name=huge) + "\n" + _json_company(2) + "\n"
        source = JSONL
    pages = _read(build(content, company_source=source))
    assert ids(records(pages)) == ["co-2"]
    found = _only_bad(pages)
    assert found.external_id == "co-1"
    assert found.reason.startswith(
        f"line {2 if file_format == 'csv' else 1}: longer than the 131,072-character limit"
    )
    assert len(found.raw) < 10_100


def test_a_field_just_under_the_limit_is_read_the_same_in_both_formats(build: Build) -> None:
    name = "n" * (MAX_RECORD_CHARS - 200)
    csv_content = csv_text(COMPANY_HEADER, f"co-1,{name},1 Main St,Hamburg,20095,DE,TAXED,,")
    (from_csv,) = records(_read(build(csv_content)))
    jsonl = build(_json_company(1, name=name), company_source=JSONL)
    (from_jsonl,) = records(_read(jsonl))
    assert from_csv.name == from_jsonl.name == name


def test_a_file_without_line_endings_is_read_in_bounded_memory(
    build: Build, tmp_path: Path
) -> None:
    connector = build(b"\x00" * (20 * 1024 * 1024), company_source=JSONL)
    tracemalloc.start()
    try:
        pages = list(connector.read(ReadRequest(COMPANY, None, False, STARTED_AT)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, peak
    assert bad(pages)[0].reason.startswith("line 1: longer than the 131,072-character limit")


# --- item 19: bytes that are not UTF-8 --------------------------------------------------------


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_an_invalid_byte_quarantines_its_line_only_and_names_it(
    build: Build, file_format: str
) -> None:
    if file_format == "csv":
        rows = company_rows(3)
        lines = [COMPANY_HEADER.encode(), *(row.encode() for row in rows)]
        lines[2] = lines[2].replace(b"Company 2", b"Z\xfcrich AG")
        source = {"path": "companies.csv"}
    else:
        lines = [_json_company(n).encode() for n in (1, 2, 3)]
        lines[1] = lines[1].replace(b"Company 2", b"Z\xfcrich AG")
        source = JSONL
    pages = _read(build(b"\n".join(lines) + b"\n", company_source=source))
    assert ids(records(pages)) == ["co-1", "co-3"]
    found = _only_bad(pages)
    assert found.external_id == "co-2"
    line = 3 if file_format == "csv" else 2
    assert found.reason.startswith(f"line {line}: not valid UTF-8 (byte 0xfc at column ")
    assert "Z\\xfcrich AG" in found.raw


def test_a_broken_row_without_an_id_is_reported_by_every_incremental_pass(build: Build) -> None:
    content = csv_text(COMPANY_HEADER, ",Nameless,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01")
    pages = _read(build(content), cursor=Cursor(since=STARTED_AT))
    assert _only_bad(pages).reason == "line 2: no id (column 'id' is empty)"


def test_fetch_reports_a_named_row_whose_line_is_broken(build: Build) -> None:
    content = csv_text(
        COMPANY_HEADER,
        'X-2,"Unclosed quote Co,1 Main St,Hamburg,20095,DE,TAXED,,2026-03-01',
        *company_rows(1, start=3),
    )
    page = build(content).fetch(COMPANY, ["X-2", "co-3"])
    assert ids(page.records) == ["co-3"]
    assert ids(page.bad) == ["X-2"]
    assert page.bad[0].reason.startswith("line 2: a quote opened on this line is not closed")


def test_a_json_line_nested_deeper_than_the_parser_goes_quarantines_only_that_record(
    build: Build,
) -> None:
    deep = '{"id": "co-1", "aliases": ' + "[" * 50_000 + "]" * 50_000 + "}"
    pages = _read(build(deep + "\n" + _json_company(2), company_source=JSONL))
    assert ids(records(pages)) == ["co-2"]
    found = _only_bad(pages)
    assert found.external_id == "co-1"
    assert found.reason.startswith("line 1: not readable JSON (RecursionError")


def test_nan_nested_in_a_list_within_the_parsers_depth_is_found_without_recursion(
    build: Build,
) -> None:
    nested = '{"id": "co-1", "aliases": ' + "[" * 400 + "NaN" + "]" * 400 + "}"
    pages = _read(build(nested, company_source=JSONL))
    assert _only_bad(pages).reason == "line 1: aliases: NaN is not a number crm-sync can store"
