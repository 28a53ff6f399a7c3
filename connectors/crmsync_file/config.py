"""The ``file`` connector's config section, validated when crm-sync starts.

A minimal section reads a CSV export with the default column names::

    connectors:
      export:
        type: file
        companies: {path: exports/companies.csv}
        contacts: {path: exports/contacts.csv}

Every other key has a default; see the ``description`` of each field below. A column
named explicitly under ``columns`` must exist in a CSV file's header (the read stops
with an error otherwise); a default column name that is absent means the field is
not in the file. Set a column to ``null`` to declare it absent; in particular
``modified_at: null`` makes every incremental pass depend on the file's fingerprint.

Limits and damaged rows (the rules in full: :mod:`crmsync_file.rows`). A bad row
costs that row only: it is quarantined with a reason that starts with its line
number, under its id when the id can be read from it, and the read goes on.

* ``path`` must name a regular file; a device (``/dev/zero``), a pipe or a directory
  is refused with an error before anything is read.
* One limit for every format: a record (a JSON Lines line, a CSV record with all the
  lines its quoted fields span) is at most 131,072 characters, so no line or field
  is ever read whole beyond it. A longer line is quarantined and the read goes on at
  the next line.
* A line holding bytes that are not valid in ``encoding`` is quarantined
  (``line 7: not valid UTF-8 (byte 0xfc at column 12)``); the other lines are read.
  The header line must decode, and an encoding that is not ASCII-compatible (such
  as UTF-16) still stops the read at bytes it cannot decode at all.
* CSV: a quoted field may span lines; a record spanning lines is accepted only when
  it is well-formed, has the header's number of fields and fits the limit. Otherwise
  (typically an unbalanced quote) only the line where it began is quarantined and
  the read starts again at the next line. A row with the wrong number of fields is
  quarantined.
* JSON Lines: a line that is not a JSON object, or that holds ``NaN``,
  ``Infinity``, a number too large for a float or a lone surrogate escape in any
  field, is quarantined, naming the key.
* An id longer than 255 characters, or a list item (alias, company id) longer than
  that, makes the row bad. A bad row without a readable id is reported by every
  pass, incremental ones included, so that its quarantine entry lasts exactly as
  long as the file has the problem.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crmsync.domain.values import TaxStatus
from crmsync.sdk.connector import ConnectorConfig

__all__ = [
    "CompanyColumns",
    "CompanyFileSource",
    "ContactColumns",
    "ContactFileSource",
    "FileConnectorConfig",
    "FileFormat",
    "FileSource",
]

FileFormat = Literal["csv", "jsonl"]

_FORMAT_BY_SUFFIX: dict[str, FileFormat] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}

_COLUMN = (
    "name of the column (CSV header) or key (JSON Lines) holding {what}; null: not in the file"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _column(default: str | None, what: str) -> str | None:
    return Field(default=default, min_length=1, description=_COLUMN.format(what=what))


class CompanyColumns(_Strict):
    """Which column holds each company field; unset fields keep the defaults shown."""

    external_id: str = Field(
        default="id", min_length=1, description="column holding the company's id (required)"
    )
    name: str | None = _column("name", "the company name")
    line1: str | None = _column("address_line1", "the first address line")
    line2: str | None = _column("address_line2", "the second address line")
    city: str | None = _column("city", "the city")
    state: str | None = _column("state", "the state or province (code or name)")
    postal_code: str | None = _column("postal_code", "the postal code")
    country: str | None = _column("country", "the country (ISO code or English name)")
    tax_status: str | None = _column("tax_status", "the tax status (see tax_status_values)")
    aliases: str | None = _column("aliases", "aliases, separated by list_separator in CSV")
    modified_at: str | None = _column("updated_at", "the last modification time")
    deleted: str | None = _column("deleted", "whether the CRM deleted or archived the company")


class ContactColumns(_Strict):
    """Which column holds each contact field; unset fields keep the defaults shown."""

    external_id: str = Field(
        default="id", min_length=1, description="column holding the contact's id (required)"
    )
    name: str | None = _column("name", "the full name (used when present and not empty)")
    first_name: str | None = _column("first_name", "the first name (joined with last_name)")
    last_name: str | None = _column("last_name", "the last name (joined with first_name)")
    email: str | None = _column("email", "the email address")
    company_ids: str | None = _column(
        "company_id", "the ids of the contact's companies, separated by list_separator in CSV"
    )
    billing_contact: str | None = _column(
        "billing_contact",
        "the billing designation: a true value (billing contact of all its companies), "
        "a false value or empty (of none), or the ids of the companies it is billing contact of",
    )
    modified_at: str | None = _column("updated_at", "the last modification time")
    deleted: str | None = _column("deleted", "whether the CRM deleted or archived the contact")


class FileSource(_Strict):
    """One export file and how to read it (keys shared by companies and contacts)."""

    path: Path = Field(description="the file; a relative path resolves against the config's folder")
    format: FileFormat | None = Field(
        default=None,
        description="csv or jsonl; inferred from the suffix (.csv, .jsonl, .ndjson) when not set",
    )
    encoding: str = Field(
        default="utf-8-sig", description="text encoding (the default also skips a UTF-8 BOM)"
    )
    delimiter: str = Field(
        default=",", min_length=1, max_length=1, description="CSV field delimiter (one character)"
    )
    list_separator: str = Field(
        default=";",
        min_length=1,
        description="separates the values of a list held in one text cell (aliases, company ids); "
        "a JSON Lines file may hold real JSON lists instead",
    )
    true_values: frozenset[str] = Field(
        default=frozenset({"true", "yes", "y", "1"}),
        min_length=1,
        description="cell values meaning true, compared without regard to case",
    )
    false_values: frozenset[str] = Field(
        default=frozenset({"false", "no", "n", "0"}),
        description="cell values meaning false, compared without regard to case (empty is false)",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @field_validator("true_values", "false_values")
    @classmethod
    def _fold_case(cls, values: frozenset[str]) -> frozenset[str]:
        return frozenset(value.strip().casefold() for value in values)

    @model_validator(mode="after")
    def _check(self) -> FileSource:
        if self.format is None and self.path.suffix.lower() not in _FORMAT_BY_SUFFIX:
            raise ValueError(
                f"cannot infer the format of {self.path.name!r} from its suffix; "
                "set format to csv or jsonl"
            )
        if both := self.true_values & self.false_values:
            raise ValueError(f"values both true and false: {sorted(both)}")
        return self

    @property
    def file_format(self) -> FileFormat:
        """The configured format, or the one the suffix implies."""
        return self.format or _FORMAT_BY_SUFFIX[self.path.suffix.lower()]

    def resolve(self, base_dir: Path) -> Path:
        """The file's path, relative paths taken from ``base_dir``."""
        return self.path if self.path.is_absolute() else base_dir / self.path


class CompanyFileSource(FileSource):
    """The companies export."""

    columns: CompanyColumns = Field(
        default_factory=CompanyColumns, description="record field -> column name"
    )
    tax_status_values: dict[str, TaxStatus] = Field(
        default_factory=dict,
        description="CRM tax status value -> TAXED, TAX_EXEMPT or REVERSE_CHARGED, compared "
        "without regard to case; the three names themselves are always understood",
    )

    @field_validator("tax_status_values")
    @classmethod
    def _fold_keys(cls, values: dict[str, TaxStatus]) -> dict[str, TaxStatus]:
        return {key.strip().casefold(): status for key, status in values.items()}


class ContactFileSource(FileSource):
    """The contacts export."""

    columns: ContactColumns = Field(
        default_factory=ContactColumns, description="record field -> column name"
    )


class FileConnectorConfig(ConnectorConfig):
    """Reads companies and (optionally) contacts from CRM export files."""

    type: Literal["file"] = Field(description="always file")
    companies: CompanyFileSource = Field(description="the companies export")
    contacts: ContactFileSource | None = Field(
        default=None, description="the contacts export; none: companies only"
    )
