"""Reading an export file lazily, row by row, keeping each row's raw text.

An :class:`ExportFile` wraps one open file: its fingerprint (taken from the open
handle, so it describes exactly the bytes being read) and an iterator of rows. A
row is a :class:`Row` (a mapping of column or key to value) or a :class:`BrokenRow`
(a line that cannot be read as values; it says why, and carries whatever values
could be read from it, so that its id can be named). Only the current row (and,
for CSV, the lines of one record) is held in memory.

Limits and rules, the same for CSV and JSON Lines:

* **A record is at most** :data:`MAX_RECORD_CHARS` **characters** (a JSON Lines line,
  or a CSV record with every line a quoted field spans, line endings included). A
  longer line is never held whole: its first ``MAX_RECORD_CHARS`` characters are
  kept, the rest is skipped up to the next line ending, the line is a broken row
  (its id named when it can be read from the part kept) and reading goes on with
  the next line. Every field is therefore bounded by the same limit.
* **Bytes that are not valid in the source's encoding** make that line a broken row
  (``line N: not valid UTF-8 (byte 0xfc at column 7)``); the other lines are read.
  The raw text kept shows such a byte as ``\\xfc``. (Encodings that are not
  ASCII-compatible, such as UTF-16, still stop the read when a byte sequence cannot
  be decoded at all.)
* **JSON Lines**: a line that is not a JSON object, or that holds ``NaN``,
  ``Infinity``, a number too large for a float (``1e999``) or a lone surrogate
  escape (``"\\ud800"``) anywhere, is a broken row saying which key holds it.
* **CSV**: a quoted field may span lines. A record that runs over more than one
  line is accepted only when it is well-formed CSV (each closing quote followed by
  the delimiter or the line's end), has exactly the header's number of fields and
  stays within the record limit. Otherwise (typically one unbalanced quote, which
  would swallow the rows after it) **only the line where the record began** is a
  broken row, and reading starts again at the line after it, so every other row
  still lands. A one-line record with the wrong number of fields is a broken row.
  Its id is taken from the field in the id column's position when there is one.

Rows are numbered from 1 in the order the reader meets them: CSV records after the
header, JSON Lines lines. Blank rows are counted but not yielded, so that a row
number means the same thing on every read of an unchanged file (the rules above
depend only on the file's bytes); the connector's resume position is such a number.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import os
import re
import stat
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple

from crmsync.errors import FatalConnectorError
from crmsync_file.config import FileFormat

__all__ = [
    "MAX_RAW_CHARS",
    "MAX_RECORD_CHARS",
    "BrokenRow",
    "ExportFile",
    "Row",
    "fingerprint",
]

MAX_RAW_CHARS = 10_000
"""Raw text kept for a bad record; longer rows are cut (and marked) at this length."""

MAX_RECORD_CHARS = 131_072
"""The longest record read, in characters: a JSON Lines line, or a CSV record with all
the lines its quoted fields span (line endings included). Longer ones are broken rows."""

_FINGERPRINT_BYTES = 64 * 1024
_SKIP_CHUNK = 64 * 1024
_LINE_ENDINGS = ("\n", "\r")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


@dataclass(frozen=True, slots=True)
class Row:
    """One data row: its number, the line it starts on, its values and its raw text."""

    number: int
    line: int
    values: Mapping[str, object]
    raw: str


@dataclass(frozen=True, slots=True)
class BrokenRow:
    """A row that cannot be read as values; ``reason`` says why.

    ``values`` holds what could be read anyway (to name the row's id), often nothing.
    """

    number: int
    line: int
    raw: str
    reason: str
    values: Mapping[str, object] = field(default_factory=dict)


def fingerprint(handle: BinaryIO) -> tuple[str, datetime]:
    """``size:mtime_ns:sha256(first 64 KiB)`` of an open file, and its mtime; rewinds it.

    Raises :class:`FatalConnectorError` when the handle is not a regular file (a
    device such as ``/dev/zero``, a pipe): such a "file" may never end.
    """
    status = os.fstat(handle.fileno())
    if not stat.S_ISREG(status.st_mode):
        raise FatalConnectorError(f"{getattr(handle, 'name', 'the export')}: not a regular file")
    handle.seek(0)
    digest = hashlib.sha256(handle.read(_FINGERPRINT_BYTES)).hexdigest()
    handle.seek(0)
    mtime = datetime.fromtimestamp(status.st_mtime_ns / 1e9, UTC)
    return f"{status.st_size}:{status.st_mtime_ns}:{digest}", mtime


def _printable(text: str) -> str:
    """Text with bytes that did not decode shown as ``\\xNN`` (storable anywhere)."""
    if text.isascii():
        return text
    return _ESCAPED_BYTE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


def _clip(raw: str) -> str:
    raw = _printable(raw.rstrip("\r\n"))
    if len(raw) > MAX_RAW_CHARS:
        return raw[:MAX_RAW_CHARS] + "…[cut]"
    return raw


def _encoding_name(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    return "UTF-8" if name in ("utf-8", "utf-8-sig") else name


class _Line(NamedTuple):
    """One physical line (its ending kept), cut at the record limit when longer."""

    number: int
    text: str
    problem: str | None = None
    """Why the line cannot be read (too long, bytes not in the encoding), or None."""


class _LineReader:
    """The file's lines, each read with a bounded ``readline``; lines put back come first."""

    def __init__(self, text: io.TextIOWrapper, path: Path, encoding: str) -> None:
        self._text = text
        self._path = path
        self._encoding = encoding
        self._pending: deque[_Line] = deque()
        self.line = 0
        """Number of the last line read from the file (1-based)."""

    def put_back(self, lines: list[_Line]) -> None:
        """Make ``lines`` (in file order) the next ones handed out."""
        self._pending.extendleft(reversed(lines))

    def next_line(self) -> _Line | None:
        if self._pending:
            return self._pending.popleft()
        text = self._readline(MAX_RECORD_CHARS + 1)
        if not text:
            return None
        self.line += 1
        if len(text) > MAX_RECORD_CHARS and not text.endswith(_LINE_ENDINGS):
            self._skip_rest()
            text = text[:MAX_RECORD_CHARS]
            problem = f"longer than the {MAX_RECORD_CHARS:,}-character limit (the rest is skipped)"
            return _Line(self.line, text, problem)
        if not text.isascii() and (bad := _ESCAPED_BYTE.search(text)):
            byte = ord(bad.group()) - 0xDC00
            where = f"byte 0x{byte:02x} at column {bad.start() + 1}"
            return _Line(self.line, text, f"not valid {_encoding_name(self._encoding)} ({where})")
        return _Line(self.line, text)

    def _skip_rest(self) -> None:
        while (rest := self._readline(_SKIP_CHUNK)) and not rest.endswith(_LINE_ENDINGS):
            pass

    def _readline(self, limit: int) -> str:
        try:
            return self._text.readline(limit)
        except UnicodeDecodeError as exc:
            raise FatalConnectorError(
                f"{self._path}: not readable as {self._encoding} ({exc.reason}) after line "
                f"{self.line}; set the source's encoding"
            ) from None


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
        self._delimiter = delimiter
        self.fingerprint, self.modified_at = fingerprint(handle)
        self._text = io.TextIOWrapper(
            handle, encoding=encoding, errors="surrogateescape", newline=""
        )
        self._lines = _LineReader(self._text, path, encoding)
        self.header: tuple[str, ...] | None = None
        """The CSV header (empty for an empty file); ``None`` for JSON Lines."""
        if file_format == "csv":
            try:
                self.header = self._read_header()
            except BaseException:
                self.close()
                raise

    def _read_header(self) -> tuple[str, ...]:
        first = self._lines.next_line()
        if first is None:
            return ()
        if first.problem is not None:
            raise FatalConnectorError(f"{self.path}: the header line is {first.problem}")
        fields = next(csv.reader([first.text], delimiter=self._delimiter), [])
        header = tuple(name.strip() for name in fields)
        if duplicates := sorted({name for name in header if name and header.count(name) > 1}):
            raise FatalConnectorError(
                f"{self.path}: columns appear twice in the header: {duplicates}"
            )
        return header

    def rows(self, skip: int = 0) -> Iterator[Row | BrokenRow]:
        """The data rows after the first ``skip`` ones (which are read but not parsed further)."""
        if self.header is not None:
            return _CsvRows(self._lines, self.header, self._delimiter).rows(skip)
        return self._jsonl_rows(skip)

    def close(self) -> None:
        """Close the file (the text layer and the handle under it)."""
        self._text.close()

    def __enter__(self) -> ExportFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _jsonl_rows(self, skip: int) -> Iterator[Row | BrokenRow]:
        while (line := self._lines.next_line()) is not None:
            number = line.number
            if number <= skip or not line.text.strip():
                continue
            raw = _clip(line.text)
            if line.problem is not None:
                reason = f"line {number}: {line.problem}"
                yield BrokenRow(number, number, raw, reason, _json_id_fields(line.text))
                continue
            yield _json_row(number, line.text, raw)


# --- JSON Lines ----------------------------------------------------------------------------


class _NotANumber:
    """Stands for ``NaN``, ``Infinity`` or an overflowing number while a line is parsed."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_float(text: str) -> float | _NotANumber:
    value = float(text)
    return value if math.isfinite(value) else _NotANumber(text)


def _json_row(number: int, text: str, raw: str) -> Row | BrokenRow:
    try:
        value = json.loads(text, parse_constant=_NotANumber, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        reason = f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
        return BrokenRow(number, number, raw, reason, _json_id_fields(text))
    except (ValueError, RecursionError) as exc:  # an integer of > 4300 digits; deep nesting
        reason = f"line {number}: not readable JSON ({type(exc).__name__}: {str(exc)[:100]})"
        return BrokenRow(number, number, raw, reason, _json_id_fields(text))
    if not isinstance(value, dict):
        reason = f"line {number}: a JSON {_json_type(value)} where an object was expected"
        return BrokenRow(number, number, raw, reason)
    problems = {key: why for key, item in value.items() if (why := _unusable(item))}
    if problems:
        reason = f"line {number}: " + "; ".join(
            f"{key[:100]}: {why}" for key, why in problems.items()
        )
        usable = {key: item for key, item in value.items() if key not in problems}
        return BrokenRow(number, number, raw, reason, usable)
    return Row(number, number, value, raw)


def _unusable(value: object) -> str | None:
    """Why a parsed JSON value cannot be stored (a non-finite number, a lone surrogate).

    Walks nested lists and objects without recursion: the nesting depth is the file's.
    """
    if isinstance(value, str):  # the usual case
        return _lone_surrogate(value)
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, _NotANumber):
            return f"{item.text} is not a number crm-sync can store"
        if isinstance(item, str) and (why := _lone_surrogate(item)):
            return why
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
    return None


def _lone_surrogate(text: str) -> str | None:
    if text.isascii():
        return None
    if found := re.search("[\ud800-\udfff]", text):
        return f"a lone surrogate escape (\\u{ord(found.group()):04x}) is not text"
    return None


_JSON_PAIR = re.compile(r'"((?:[^"\\]|\\.){1,255})"\s*:\s*("(?:[^"\\]|\\.){0,300}"|-?\d{1,30})')


def _json_id_fields(text: str) -> dict[str, object]:
    """Best effort for a line that is not a readable object: its simple string/integer pairs
    among the first :data:`MAX_RAW_CHARS` characters (the part kept as raw text).

    Only used to name a broken line's id; an unreadable pair is left out.
    """
    pairs: dict[str, object] = {}
    for match in _JSON_PAIR.finditer(_printable(text[:MAX_RAW_CHARS])):
        try:
            key, value = json.loads(f'"{match.group(1)}"'), json.loads(match.group(2))
        except ValueError:
            continue
        pairs.setdefault(key, value)
    return pairs


def _json_type(value: object) -> str:
    match value:
        case bool():
            return "boolean"
        case int() | float() | _NotANumber():
            return "number"
        case str():
            return "string"
        case list():
            return "array"
        case None:
            return "null"
        case _:
            return "object"


# --- CSV -----------------------------------------------------------------------------------


class _RecordFeed:
    """Hands one CSV record's lines to the csv reader, within the record limit.

    The csv reader pulls a further line only while a quoted field is open; the feed
    refuses (ends the record early, setting ``stopped``) at the end of the file, at
    a line that cannot be read, and when the record would outgrow the limit.
    """

    def __init__(self, lines: _LineReader) -> None:
        self._lines = lines
        self.taken: list[_Line] = []
        self.stopped: str | None = None
        self._chars = 0
        self._first: _Line | None = None

    def start(self, first: _Line) -> None:
        """Begin a record at ``first`` (the next line the reader pulls)."""
        self.taken, self.stopped, self._chars, self._first = [first], None, len(first.text), first

    def __iter__(self) -> _RecordFeed:
        return self

    def __next__(self) -> str:
        if self._first is not None:
            first, self._first = self._first, None
            return first.text
        line = self._lines.next_line()
        if line is None:
            self.stopped = "the file ends first"
            raise StopIteration
        if line.problem is not None:
            self.stopped = f"line {line.number} is {line.problem}"
        elif self._chars + len(line.text) > MAX_RECORD_CHARS:
            self.stopped = f"the record would pass the {MAX_RECORD_CHARS:,}-character limit"
        if self.stopped is not None:
            self._lines.put_back([line])
            raise StopIteration
        self.taken.append(line)
        self._chars += len(line.text)
        return line.text


class _CsvRows:
    """The data rows of a CSV file, by the rules in the module docstring."""

    def __init__(self, lines: _LineReader, header: tuple[str, ...], delimiter: str) -> None:
        self._lines = lines
        self._header = header
        self._delimiter = delimiter
        self._feed = _RecordFeed(lines)
        self._reader = csv.reader(self._feed, delimiter=delimiter)

    def rows(self, skip: int) -> Iterator[Row | BrokenRow]:
        number = 0
        while (first := self._lines.next_line()) is not None:
            number += 1
            row = self._row(number, first)
            if number > skip and row is not None:
                yield row

    def _row(self, number: int, first: _Line) -> Row | BrokenRow | None:
        """The record starting at ``first`` (None: a blank one)."""
        start = first.number
        if first.problem is not None:
            return self._broken(number, first, f"line {start}: {first.problem}")
        self._feed.start(first)
        try:
            fields: list[str] | None = next(self._reader)
            error = None
        except csv.Error as exc:
            fields, error = None, f"unreadable CSV ({exc})"
        lines = self._feed.taken
        if len(lines) > 1 or self._feed.stopped is not None:
            if self._feed.stopped is None and fields is not None and self._whole(fields, lines):
                return Row(number, start, dict(zip(self._header, fields, strict=True)), _raw(lines))
            self._lines.put_back(lines[1:])
            return self._broken(number, first, self._unbalanced(start))
        if fields is None:
            return self._broken(number, first, f"line {start}: {error}")
        if not any(value.strip() for value in fields):
            return None
        if len(fields) != len(self._header):
            reason = f"line {start}: {len(fields)} fields where the header has {len(self._header)}"
            return self._broken(number, first, reason)
        return Row(number, start, dict(zip(self._header, fields, strict=True)), _raw(lines))

    def _whole(self, fields: list[str], lines: list[_Line]) -> bool:
        """Whether a record spanning lines is well-formed and has the header's fields."""
        if len(fields) != len(self._header):
            return False
        strict = csv.reader((line.text for line in lines), delimiter=self._delimiter, strict=True)
        try:
            next(strict)
        except csv.Error:
            return False
        return True

    def _unbalanced(self, start: int) -> str:
        why = self._feed.stopped or "it does not read as a row of the header's fields"
        return (
            f"line {start}: a quote opened on this line is not closed where a row of "
            f"{len(self._header)} fields would end ({why}); the line is set aside alone and "
            f"reading goes on at line {start + 1}"
        )

    def _broken(self, number: int, line: _Line, reason: str) -> BrokenRow:
        """``line`` as a broken row, with the fields it gives when read alone."""
        text = _printable(line.text) if line.problem else line.text
        try:
            fields = next(csv.reader([text.rstrip("\r\n")], delimiter=self._delimiter), [])
        except csv.Error:
            fields = []
        values = dict(zip(self._header, fields, strict=False))  # whatever the line has
        return BrokenRow(number, line.number, _clip(line.text), reason, values)


def _raw(lines: list[_Line]) -> str:
    return _clip(lines[0].text if len(lines) == 1 else "".join(line.text for line in lines))
