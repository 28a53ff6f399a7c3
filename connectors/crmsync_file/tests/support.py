"""Helpers for the file connector's tests (the ``build`` fixture lives in conftest)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from crmsync.sdk.records import BadRecord, Page, Record
from crmsync_file import FileConnector

__all__ = [
    "COMPANY_HEADER",
    "STARTED_AT",
    "Build",
    "bad",
    "company_rows",
    "csv_text",
    "ids",
    "records",
]

STARTED_AT = datetime(2026, 6, 1, tzinfo=UTC)

COMPANY_HEADER = "id,name,address_line1,city,postal_code,country,tax_status,aliases,updated_at"

Build = Callable[..., FileConnector]
"""``build(companies=<csv text>, contacts=<csv text>, page_size=3, company_source={...}, ...)``"""


def csv_text(header: str, *rows: str) -> str:
    return "\n".join([header, *rows]) + "\n"


def company_rows(
    count: int, *, start: int = 1, updated_at: str = "2026-03-01T10:00:00Z"
) -> list[str]:
    """Valid company rows for COMPANY_HEADER: co-<start> ... co-<start+count-1>."""
    return [
        f"co-{i},Company {i},{i} Example St,Hamburg,20095,DE,TAXED,,{updated_at}"
        for i in range(start, start + count)
    ]


def records(pages: Iterable[Page]) -> list[Record]:
    return [record for page in pages for record in page.records]


def bad(pages: Iterable[Page]) -> list[BadRecord]:
    return [item for page in pages for item in page.bad]


def ids(items: Iterable[Record | BadRecord]) -> list[str | None]:
    return [item.external_id for item in items]
