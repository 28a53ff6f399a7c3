"""The ``file`` connector: companies and contacts from CRM export files (CSV or JSON Lines).

A pass streams the file once, page by page: only the current page and row are in
memory. Rows that cannot become records are yielded as :class:`BadRecord` and the
pass goes on. How passes start, resume and end is in :mod:`crmsync_file.state`; how
a row becomes a record in :mod:`crmsync_file.mapping`.

Duplicate ids: rows are delivered in file order, every one of them, so the engine
(which upserts in order) ends with the last row of an id, as the file says. A
duplicate within one page is logged. ``fetch`` returns the last row of each id.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from crmsync.errors import FatalConnectorError
from crmsync.sdk.connector import ConnectorContext, ReadRequest
from crmsync.sdk.records import BadRecord, Cursor, ObjectType, Page, Record
from crmsync_file.config import (
    CompanyColumns,
    CompanyFileSource,
    ContactColumns,
    ContactFileSource,
    FileConnectorConfig,
    FileSource,
)
from crmsync_file.mapping import Mapped, map_broken, map_company, map_contact, row_id
from crmsync_file.rows import BrokenRow, ExportFile, Row
from crmsync_file.state import PassPlan, checkpoint, end_of_pass, plan_pass

__all__ = ["BinaryOpener", "FileConnector"]

logger = logging.getLogger(__name__)

BinaryOpener = Callable[[Path], BinaryIO]
"""Opens a file for binary reading; injectable so tests can watch the reads."""


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


@dataclass(frozen=True, slots=True)
class _Stream:
    object_type: ObjectType
    source: FileSource
    columns: CompanyColumns | ContactColumns
    map_row: Callable[[Row], Mapped]


def _company_stream(source: CompanyFileSource) -> _Stream:
    return _Stream(ObjectType.COMPANY, source, source.columns, lambda row: map_company(row, source))


def _contact_stream(source: ContactFileSource) -> _Stream:
    return _Stream(ObjectType.CONTACT, source, source.columns, lambda row: map_contact(row, source))


class FileConnector:
    """Reads the configured export files; see the module docstring for the rules."""

    def __init__(
        self,
        config: FileConnectorConfig,
        context: ConnectorContext,
        *,
        open_binary: BinaryOpener = _open_binary,
    ) -> None:
        self._name = context.name
        self._base_dir = context.base_dir
        self._page_size = config.page_size
        self._open_binary = open_binary
        self._streams = {ObjectType.COMPANY: _company_stream(config.companies)}
        if config.contacts is not None:
            self._streams[ObjectType.CONTACT] = _contact_stream(config.contacts)
        self._open_files: set[ExportFile] = set()

    def streams(self) -> Sequence[ObjectType]:
        return tuple(self._streams)

    def read(self, request: ReadRequest) -> Iterator[Page]:
        stream = self._streams.get(request.stream)
        if stream is None:
            raise FatalConnectorError(f"{self._name}: no {request.stream} file is configured")
        return self._read(stream, request)

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        stream = self._streams.get(object_type)
        wanted = {external_id.strip() for external_id in external_ids}
        found: dict[str, Record | BadRecord] = {}
        if stream is not None and wanted:
            with self._open(stream) as export:
                for row in export.rows():
                    item = self._fetched(stream, row, wanted)
                    if item is not None and item.external_id is not None:
                        found.pop(item.external_id, None)  # the last row of an id wins
                        found[item.external_id] = item
        return Page(
            stream=object_type,
            cursor=Cursor(),
            records=[item for item in found.values() if not isinstance(item, BadRecord)],
            bad=[item for item in found.values() if isinstance(item, BadRecord)],
        )

    @staticmethod
    def _fetched(
        stream: _Stream, row: Row | BrokenRow, wanted: set[str]
    ) -> Record | BadRecord | None:
        """The row as a record (or bad record) when it is one of the ``wanted`` ids."""
        if isinstance(row, BrokenRow):
            item = map_broken(row, stream.object_type, stream.columns.external_id).item
            return item if item.external_id in wanted else None
        if row_id(row, stream.columns.external_id) in wanted:
            return stream.map_row(row).item
        return None

    def close(self) -> None:
        for export in list(self._open_files):
            export.close()
        self._open_files.clear()

    def _read(self, stream: _Stream, request: ReadRequest) -> Iterator[Page]:
        with self._open(stream) as export:
            modified_column = stream.columns.modified_at
            has_modified = modified_column is not None and (
                export.header is None or modified_column in export.header
            )
            plan = plan_pass(request, export.fingerprint, has_modified=has_modified)
            if plan.unchanged:
                yield Page(stream.object_type, request.cursor or Cursor())
                return
            yield from self._pass(stream, export, plan, has_modified=has_modified)

    def _pass(
        self, stream: _Stream, export: ExportFile, plan: PassPlan, *, has_modified: bool
    ) -> Iterator[Page]:
        """Pages of ``page_size`` rows; a full page is yielded once another row follows it."""
        records: list[Record] = []
        bad: list[BadRecord] = []
        ids: set[str] = set()
        position, max_seen = plan.skip, plan.max_seen
        total = None if plan.lower_bound is not None else _rows_in(export) - plan.skip
        for number, mapped in self._mapped(stream, export, plan):
            if len(records) + len(bad) == self._page_size:
                cursor = checkpoint(plan, position, max_seen)
                yield Page(stream.object_type, cursor, records, bad, total=total)
                records, bad, ids = [], [], set()
            item = mapped.item
            if isinstance(item, BadRecord):
                bad.append(item)
            else:
                if item.external_id in ids:
                    logger.warning(
                        "%s: %s %s appears twice in one page of %s; both rows are delivered "
                        "in file order",
                        self._name,
                        stream.object_type,
                        item.external_id,
                        export.path.name,
                    )
                ids.add(item.external_id)
                records.append(item)
            position, max_seen = number, _later(max_seen, mapped.modified_at)
        newest = max_seen if has_modified else export.modified_at
        cursor = end_of_pass(plan, newest, row_times=has_modified)
        yield Page(stream.object_type, cursor, records, bad, total=total)

    @staticmethod
    def _mapped(
        stream: _Stream, export: ExportFile, plan: PassPlan
    ) -> Iterator[tuple[int, Mapped]]:
        """The rows after the resume position that pass the ``since`` filter, mapped."""
        bound = plan.lower_bound
        for row in export.rows(plan.skip):
            if isinstance(row, BrokenRow):
                mapped = map_broken(row, stream.object_type, stream.columns.external_id)
            else:
                mapped = stream.map_row(row)
            if bound is not None and _older(mapped, bound):
                continue
            yield row.number, mapped

    @contextmanager
    def _open(self, stream: _Stream) -> Iterator[ExportFile]:
        source = stream.source
        path = source.resolve(self._base_dir)
        self._refuse_special(path)
        try:
            handle = self._open_binary(path)
        except FileNotFoundError:
            raise FatalConnectorError(f"{self._name}: export file not found: {path}") from None
        except OSError as exc:
            raise FatalConnectorError(
                f"{self._name}: cannot open {path}: {exc.strerror or exc}"
            ) from None
        try:
            export = ExportFile(
                path,
                handle,
                file_format=source.file_format,
                encoding=source.encoding,
                delimiter=source.delimiter,
            )
        except BaseException:
            handle.close()
            raise
        self._open_files.add(export)
        try:
            if export.header is not None:
                self._check_header(stream, export.header, path)
            yield export
        finally:
            export.close()
            self._open_files.discard(export)

    def _refuse_special(self, path: Path) -> None:
        """Refuse a path that is not a regular file before opening it.

        A device (``/dev/zero``, ``/dev/urandom``) never ends and a named pipe blocks
        the open; neither is an export. (The opened handle is checked again, in case the
        path changed in between.)
        """
        try:
            mode = path.stat().st_mode
        except OSError:
            return  # opening it reports the problem
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
            raise FatalConnectorError(
                f"{self._name}: cannot open {path}: not a regular file ({kind})"
            )

    def _check_header(self, stream: _Stream, header: tuple[str, ...], path: Path) -> None:
        """Refuse a CSV file that lacks the id column or a column the config names."""
        if not header:
            return  # an empty file: no rows
        columns = stream.columns
        named = {field: getattr(columns, field) for field in columns.model_fields_set}
        named["external_id"] = columns.external_id
        missing = sorted({col for col in named.values() if col is not None and col not in header})
        if missing:
            raise FatalConnectorError(
                f"{self._name}: {path} has no column {', '.join(map(repr, missing))} "
                f"(its header: {', '.join(header)})"
            )


def _older(mapped: Mapped, bound: datetime) -> bool:
    """Whether the ``since`` filter drops a row: one modified before ``bound``.

    A bad row without an id is never dropped: its quarantine entry (keyed by its raw
    text) is kept only while passes keep seeing it.
    """
    item = mapped.item
    if isinstance(item, BadRecord) and item.external_id is None:
        return False
    return mapped.modified_at is not None and mapped.modified_at < bound


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)


def _rows_in(export: ExportFile) -> int:
    """About how many rows the export holds (its line endings, less the header), for a
    progress bar: counted in bytes, without parsing; a quoted field spanning lines makes
    it a little high, and the bar then ends short of its total."""
    lines = 0
    with export.path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(0, lines - (1 if export.header is not None else 0))
