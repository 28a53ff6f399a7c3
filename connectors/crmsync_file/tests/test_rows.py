"""Reading export files row by row: raw text, broken rows, encodings, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crmsync.errors import FatalConnectorError
from crmsync_file.config import FileFormat
from crmsync_file.rows import MAX_RAW_CHARS, BrokenRow, ExportFile, Row


def _rows(
    tmp_path: Path, content: bytes | str, file_format: FileFormat = "csv", skip: int = 0, **kw: str
) -> list[Row | BrokenRow]:
    path = tmp_path / f"export.{file_format}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with path.open("rb") as handle:
        export = ExportFile(
            path,
            handle,
            file_format=file_format,
            encoding=kw.get("encoding", "utf-8-sig"),
            delimiter=kw.get("delimiter", ","),
        )
        return list(export.rows(skip))


def test_csv_rows_map_header_names_to_values_and_keep_their_raw_text(tmp_path: Path) -> None:
    (row,) = _rows(tmp_path, " id , name \r\n1,Acme\r\n")
    assert row == Row(number=1, line=2, values={"id": "1", "name": "Acme"}, raw="1,Acme")


def test_a_quoted_field_may_span_lines(tmp_path: Path) -> None:
    first, second = _rows(tmp_path, 'id,name\n1,"Acme\nWest"\n2,Beta\n')
    assert isinstance(first, Row)
    assert first.values == {"id": "1", "name": "Acme\nWest"}
    assert first.raw == '1,"Acme\nWest"'
    assert (second.number, second.line) == (2, 4)


def test_a_row_with_the_wrong_number_of_fields_is_broken(tmp_path: Path) -> None:
    (row,) = _rows(tmp_path, "id,name\n1,Acme,surplus\n")
    assert row == BrokenRow(
        1,
        2,
        "1,Acme,surplus",
        "line 2: 3 fields where the header has 2",
        {"id": "1", "name": "Acme"},
    )


def test_blank_rows_are_counted_but_not_yielded(tmp_path: Path) -> None:
    rows = _rows(tmp_path, "id,name\n1,a\n\n,\n2,b\n")
    assert [(r.number, r.line) for r in rows] == [(1, 2), (4, 5)]


def test_skipped_rows_are_not_yielded_and_numbering_is_unchanged(tmp_path: Path) -> None:
    rows = _rows(tmp_path, "id\n1\n2\n3\n", skip=2)
    assert [(r.number, r.raw) for r in rows] == [(3, "3")]


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    (row,) = _rows(tmp_path, "\ufeffid,name\n1,Łódź\n".encode())
    assert isinstance(row, Row)
    assert row.values == {"id": "1", "name": "Łódź"}


def test_other_encodings_and_delimiters_are_read(tmp_path: Path) -> None:
    (row,) = _rows(
        tmp_path, "id;name\n1;Zürich\n".encode("cp1252"), encoding="cp1252", delimiter=";"
    )
    assert isinstance(row, Row)
    assert row.values == {"id": "1", "name": "Zürich"}


def test_a_line_with_bytes_that_do_not_decode_is_broken_and_the_others_are_read(
    tmp_path: Path,
) -> None:
    broken, row = _rows(tmp_path, b"id,name\n1,Z\xfcrich\n2,Bern\n")
    assert broken == BrokenRow(
        1,
        2,
        "1,Z\\xfcrich",
        "line 2: not valid UTF-8 (byte 0xfc at column 4)",
        {"id": "1", "name": "Z\\xfcrich"},
    )
    assert isinstance(row, Row)
    assert row.values == {"id": "2", "name": "Bern"}


def test_a_json_line_with_bytes_that_do_not_decode_is_broken_and_names_its_id(
    tmp_path: Path,
) -> None:
    broken, row = _rows(tmp_path, b'{"id": "7", "name": "Z\xfcrich"}\n{"id": "8"}\n', "jsonl")
    assert isinstance(broken, BrokenRow)
    assert broken.reason == "line 1: not valid UTF-8 (byte 0xfc at column 23)"
    assert broken.values["id"] == "7"
    assert isinstance(row, Row)


def test_a_header_that_does_not_decode_stops_the_read_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(FatalConnectorError, match=r"export\.csv: the header line is not valid"):
        _rows(tmp_path, b"id,n\xe4me\n1,a\n")


def test_an_encoding_that_cannot_be_decoded_at_all_stops_the_read(tmp_path: Path) -> None:
    with pytest.raises(FatalConnectorError, match=r"not readable as utf-16"):
        _rows(tmp_path, "id\n1\n".encode("utf-16-le") + b"\x00\xdc", encoding="utf-16-le")


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FatalConnectorError, match=r"columns appear twice in the header: \['id'\]"):
        _rows(tmp_path, "id,name,id\n1,a,2\n")


def test_an_empty_csv_file_has_no_rows(tmp_path: Path) -> None:
    assert _rows(tmp_path, "") == []


def test_json_lines_become_rows_and_broken_lines_say_why(tmp_path: Path) -> None:
    content = '{"id": "1"}\n\n{"id": "2",\n[1, 2]\n{"id": "3"}'
    rows = _rows(tmp_path, content, "jsonl")
    assert rows[0] == Row(1, 1, {"id": "1"}, '{"id": "1"}')
    assert isinstance(rows[1], BrokenRow)
    assert rows[1].reason.startswith("line 3: not valid JSON (Expecting property name")
    assert rows[1].raw == '{"id": "2",'
    assert rows[2] == BrokenRow(4, 4, "[1, 2]", "line 4: a JSON array where an object was expected")
    assert rows[3] == Row(5, 5, {"id": "3"}, '{"id": "3"}')


def test_raw_text_of_a_huge_row_is_cut(tmp_path: Path) -> None:
    (row,) = _rows(tmp_path, '{"id": "' + "x" * (3 * MAX_RAW_CHARS) + '"', "jsonl")
    assert isinstance(row, BrokenRow)
    assert len(row.raw) < MAX_RAW_CHARS + 20
    assert row.raw.endswith("[cut]")


def test_the_fingerprint_changes_with_content_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"

    def fingerprint() -> str:
        with ExportFile(path, path.open("rb"), file_format="csv", encoding="utf-8") as export:
            return export.fingerprint

    path.write_text("id\n1\n")
    first = fingerprint()
    assert fingerprint() == first
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    touched = fingerprint()
    assert touched != first
    path.write_text("id\n2\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert fingerprint() != touched  # same size and mtime, other bytes
