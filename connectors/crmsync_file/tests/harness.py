"""Renders a contract-kit :class:`Dataset` as export files and builds the file connector."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from crmsync.sdk.connector import Connector, ConnectorContext
from crmsync.sdk.records import CompanyRecord, ContactRecord, ObjectType
from crmsync.sdk.testing import BadKind, BadSample, ConnectorHarness, Dataset
from crmsync_file import FileConnectorConfig, plugin
from crmsync_file.config import FileFormat

__all__ = ["COMPANY_COLUMNS", "CONTACT_COLUMNS", "FileHarness", "epoch_ms"]

COMPANY_COLUMNS = (
    "id",
    "name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "tax_status",
    "aliases",
    "updated_at",
    "deleted",
)
CONTACT_COLUMNS = ("id", "name", "email", "company_id", "billing_contact", "updated_at", "deleted")


def epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds, as HubSpot-style exports carry them."""
    return round(moment.timestamp() * 1000)


def _company(record: CompanyRecord, file_format: FileFormat) -> dict[str, Any]:
    assert record.modified_at is not None
    csv_format = file_format == "csv"
    return {
        "id": record.external_id,
        "name": record.name,
        "address_line1": record.line1,
        "address_line2": record.line2,
        "city": record.city,
        "state": record.state,
        "postal_code": record.postal_code,
        "country": record.country,
        "tax_status": record.tax_status.value if record.tax_status else None,
        "aliases": ";".join(record.aliases) if csv_format else list(record.aliases),
        "updated_at": (
            record.modified_at.isoformat().replace("+00:00", "Z")
            if csv_format
            else epoch_ms(record.modified_at)
        ),
        "deleted": ("true" if record.deleted else "") if csv_format else record.deleted,
    }


def _contact(record: ContactRecord, file_format: FileFormat) -> dict[str, Any]:
    assert record.modified_at is not None
    csv_format = file_format == "csv"
    company_ids = [link.company_id for link in record.companies]
    billing_ids = [link.company_id for link in record.companies if link.billing_contact]
    billing: object
    if billing_ids and billing_ids == company_ids:
        billing = "yes" if csv_format else True  # billing contact of all its companies
    elif not billing_ids:
        billing = "" if csv_format else False
    else:
        billing = ";".join(billing_ids) if csv_format else billing_ids
    return {
        "id": record.external_id,
        "name": record.name,
        "email": record.email,
        "company_id": ";".join(company_ids) if csv_format else company_ids,
        "billing_contact": billing,
        "updated_at": record.modified_at.isoformat()
        if csv_format
        else epoch_ms(record.modified_at),
        "deleted": ("yes" if record.deleted else "no") if csv_format else record.deleted,
    }


def _broken(
    sample: BadSample, columns: Sequence[str], file_format: FileFormat
) -> str | dict[str, Any]:
    """A broken row: a dict rendered as usual, or (MALFORMED) the raw text of the line."""
    row: dict[str, Any] = dict.fromkeys(columns, "")
    row.update(id=sample.external_id or "", name="Broken on purpose", updated_at="2026-03-01")
    if sample.kind is BadKind.BAD_TIMESTAMP:
        row["updated_at"] = "yesterday"
    if sample.kind is BadKind.MALFORMED:
        if file_format == "jsonl":
            return json.dumps(row)[:-1]  # a truncated object
        return ",".join([*(str(value) for value in row.values()), "one field too many"])
    if file_format == "jsonl" and sample.kind is BadKind.MISSING_ID:
        del row["id"]
    return row


def _interleave(
    rows: Sequence[dict[str, Any]], broken: Sequence[str | dict[str, Any]]
) -> Iterator[str | dict[str, Any]]:
    """Good rows with the broken ones spread among them."""
    gap = max(1, len(rows) // (len(broken) + 1))
    pending = list(broken)
    for index, row in enumerate(rows):
        if pending and index and index % gap == 0:
            yield pending.pop(0)
        yield row
    yield from pending


def write_export(
    path: Path,
    columns: Sequence[str],
    rows: Iterator[str | dict[str, Any]],
    file_format: FileFormat,
) -> None:
    """Write rows (dicts, or raw lines taken as they are) as CSV or JSON Lines."""
    with path.open("w", encoding="utf-8", newline="") as out:
        if file_format == "jsonl":
            for row in rows:
                out.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
                out.write("\n")
            return
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(columns)
        for row in rows:
            if isinstance(row, str):
                out.write(row + "\r\n")
            else:
                writer.writerow(["" if row[c] is None else row[c] for c in columns])


class FileHarness(ConnectorHarness):
    """Writes each dataset once (a rebuild sees the same, unchanged files)."""

    def __init__(self, directory: Path, file_format: FileFormat) -> None:
        self._directory = directory
        self._format = file_format
        self._written: dict[Dataset, Path] = {}

    def build(self, dataset: Dataset, *, page_size: int, rate_limited: bool = False) -> Connector:
        assert not rate_limited, "files have no rate limits"
        folder = self._written.get(dataset)
        if folder is None:
            folder = self._directory / f"dataset-{len(self._written)}"
            folder.mkdir()
            self._write(dataset, folder)
            self._written[dataset] = folder
        suffix = self._format
        config = FileConnectorConfig.model_validate(
            {
                "type": "file",
                "page_size": page_size,
                "companies": {"path": f"companies.{suffix}"},
                "contacts": {"path": f"contacts.{suffix}"},
            }
        )
        return plugin.factory(config, ConnectorContext(name="export", base_dir=folder))

    def _write(self, dataset: Dataset, folder: Path) -> None:
        fmt = self._format
        for stream, columns, rows in (
            (ObjectType.COMPANY, COMPANY_COLUMNS, [_company(r, fmt) for r in dataset.companies]),
            (ObjectType.CONTACT, CONTACT_COLUMNS, [_contact(r, fmt) for r in dataset.contacts]),
        ):
            broken = [_broken(s, columns, fmt) for s in dataset.bad_samples(stream)]
            name = "companies" if stream is ObjectType.COMPANY else "contacts"
            write_export(folder / f"{name}.{fmt}", columns, _interleave(rows, broken), fmt)
