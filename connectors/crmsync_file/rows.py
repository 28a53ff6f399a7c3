"""Reading an export file lazily, row by row, keeping each row's raw text.

An :class:`ExportFile` wraps one open file: its fingerprint (taken from the open
handle, so it describes exactly the bytes being read) and an iterator of rows. A
row is a :class:`Row` (a mapping of column or key to value) or a :class:`BrokenRow`
(a line that is not valid JSON, a CSV row with the wrong number of fields). Only
the current row is held in memory.

Rows are numbered from 1 in the order the reader meets them: CSV records after the
header (a quoted field may span lines), JSON Lines lines. Blank rows are counted
but not yielded, so that a row number means the same thing on every read of an
unchanged file; the connector's resume position is such a number.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from crmsync.errors import FatalConnectorError
from crmsync_file.config import FileFormat

__all__ = ["MAX_RAW_CHARS", "BrokenRow", "ExportFile", "Row", "fingerprint"]

MAX_RAW_CHARS = 10_000
"""Raw text kept for a bad record; longer rows are cut (and marked) at this length."""

_FINGERPRINT_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Row:
    """One data row: its number, the line it starts on, its values and its raw text."""

    number: int
    line: int
    values: Mapping[str, object]
    raw: str


@dataclass(frozen=True, slots=True)
class BrokenRow:
    """A row that cannot be read as values at all; ``reason`` says why."""

    number: int
    line: int
    raw: str
    reason: str


def fingerprint(handle: BinaryIO) -> tuple[str, datetime]:
    """``size:mtime_ns:sha256(first 64 KiB)`` of an open file, and its mtime; rewinds it."""
    stat = os.fstat(handle.fileno())
    handle.seek(0)
    digest = hashlib.sha256(handle.read(_FINGERPRINT_BYTES)).hexdigest()
    handle.seek(0)
    mtime = datetime.fromtimestamp(stat.st_mtime_ns / 1e9, UTC)
    return f"{stat.st_size}:{stat.st_mtime_ns}:{digest}", mtime


def _clip(raw: str) -> str:
    raw = raw.rstrip("\r\n")
    if len(raw) > MAX_RAW_CHARS:
        return raw[:MAX_RAW_CHARS] + "…[cut]"
    return raw


class _Lines:
    """Iterates the text's lines, remembering those handed out since the last ``take``."""

    def __init__(self, text: io.TextIOBase, path: Path, encoding: str) -> None:
        self._text = text
        self._path = path
        self._encoding = encoding
        self._taken: list[str] = []
        self._size = 0
        self.line = 0
        """Number of the last line handed out (1-based)."""

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._text)
        except UnicodeDecodeError as exc:
            raise FatalConnectorError(
                f"{self._path}: not readable as {self._encoding} ({exc.reason}); "
                "set the source's encoding"
            ) from None
        self.line += 1
        if self._size <= MAX_RAW_CHARS:
            self._taken.append(line)
            self._size += len(line)
        return line

    def take(self) -> str:
        """The raw text of the lines handed out since the last call."""
        raw = "".join(self._taken)
        self._taken.clear()
        self._size = 0
        return _clip(raw)


class ExportFile:
    """An open export file: its fingerprint, its CSV header, and its rows."""

    def __init__(
        self,
        path: Path,
        handle: BinaryIO,
        *,
        file_format: FileFormat,
        encoding: str,
        delimiter: str = ",",
    ) -> None:
        self.path = path
        self.format = file_format
        self.fingerprint, self.modified_at = fingerprint(handle)
        self._text = io.TextIOWrapper(handle, encoding=encoding, newline="")
        self._lines = _Lines(self._text, path, encoding)
        self._csv: Iterator[list[str]] | None = None
        self.header: tuple[str, ...] | None = None
        """The CSV header (empty for an empty file); ``None`` for JSON Lines."""
        if file_format == "csv":
            try:
                self._csv = csv.reader(self._lines, delimiter=delimiter)
                self.header = self._read_header(self._csv)
            except BaseException:
                self.close()
                raise

    def _read_header(self, reader: Iterator[list[str]]) -> tuple[str, ...]:
        first = next(reader, None)
        self._lines.take()
        header = tuple(name.strip() for name in first) if first else ()
        if duplicates := sorted({name for name in header if name and header.count(name) > 1}):
            raise FatalConnectorError(
                f"{self.path}: columns appear twice in the header: {duplicates}"
            )
        return header

    def rows(self, skip: int = 0) -> Iterator[Row | BrokenRow]:
        """The data rows after the first ``skip`` ones (which are read but not parsed further)."""
        if self._csv is not None:
            return self._csv_rows(self._csv, skip)
        return self._jsonl_rows(skip)

    def close(self) -> None:
        """Close the file (the text layer and the handle under it)."""
        self._text.close()

    def __enter__(self) -> ExportFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _csv_rows(self, reader: Iterator[list[str]], skip: int) -> Iterator[Row | BrokenRow]:
        header = self.header or ()
        number = 0
        while True:
            start = self._lines.line + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                number += 1
                raw = self._lines.take()
                if number > skip:
                    yield BrokenRow(number, start, raw, f"line {start}: unreadable CSV ({exc})")
                continue
            number += 1
            raw = self._lines.take()
            if number <= skip or not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                reason = f"line {start}: {len(fields)} fields where the header has {len(header)}"
                yield BrokenRow(number, start, raw, reason)
                continue
            yield Row(number, start, dict(zip(header, fields, strict=True)), raw)

    def _jsonl_rows(self, skip: int) -> Iterator[Row | BrokenRow]:
        for number, line in enumerate(self._lines, start=1):
            raw = self._lines.take()
            if number <= skip or not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                reason = f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
                yield BrokenRow(number, number, raw, reason)
                continue
            if not isinstance(value, dict):
                reason = f"line {number}: a JSON {_json_type(value)} where an object was expected"
                yield BrokenRow(number, number, raw, reason)
                continue
            yield Row(number, number, value, raw)


def _json_type(value: object) -> str:
    match value:
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case None:
            return "null"
        case _:
            return "object"
