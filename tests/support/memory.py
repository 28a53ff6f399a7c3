"""An in-memory connector for engine tests: pages over lists of records, with faults."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from crmsync.sdk import (
    BadRecord,
    CompanyRecord,
    ContactRecord,
    Cursor,
    ObjectType,
    Page,
    ReadRequest,
)


class Boom(RuntimeError):
    """The failure a test injects (a stand-in for a crash)."""


@dataclass
class MemoryConnector:
    """Pages through records in list order; cursor.position counts records delivered."""

    companies: list[CompanyRecord] = field(default_factory=list)
    contacts: list[ContactRecord] = field(default_factory=list)
    bad: dict[ObjectType, list[BadRecord]] = field(default_factory=dict)
    page_size: int = 10
    fail_after_pages: int | None = None
    pages_served: int = 0
    closed: bool = False

    def streams(self) -> Sequence[ObjectType]:
        return (ObjectType.COMPANY, ObjectType.CONTACT)

    def _records(self, stream: ObjectType) -> list[CompanyRecord] | list[ContactRecord]:
        return self.companies if stream is ObjectType.COMPANY else self.contacts

    def read(self, request: ReadRequest) -> Iterator[Page]:
        records = self._records(request.stream)
        cursor = request.cursor or Cursor()
        since = None if (request.full and not cursor.in_pass) else cursor.since
        start = int(cursor.position or 0)
        selected = [
            r for r in records if since is None or r.modified_at is None or r.modified_at >= since
        ]
        bad = self.bad.get(request.stream, []) if start == 0 else []
        newest: datetime | None = cursor.since
        for r in selected[:start]:
            if r.modified_at and (newest is None or r.modified_at > newest):
                newest = r.modified_at
        if not selected[start:]:
            yield Page(request.stream, Cursor(since=newest), (), bad)
            return
        for offset in range(start, len(selected), self.page_size):
            if self.fail_after_pages is not None and self.pages_served >= self.fail_after_pages:
                raise Boom(f"injected failure after {self.pages_served} pages")
            chunk = selected[offset : offset + self.page_size]
            for r in chunk:
                if r.modified_at and (newest is None or r.modified_at > newest):
                    newest = r.modified_at
            end = offset + len(chunk)
            done = end >= len(selected)
            cursor = Cursor(
                since=newest if done else cursor.since,
                position=None if done else str(end),
                full=request.full and not done,
            )
            self.pages_served += 1
            yield Page(request.stream, cursor, chunk, bad if offset == start else ())

    def fetch(self, object_type: ObjectType, external_ids: Sequence[str]) -> Page:
        wanted = set(external_ids)
        records = [r for r in self._records(object_type) if r.external_id in wanted]
        return Page(object_type, Cursor(), records)

    def close(self) -> None:
        self.closed = True
