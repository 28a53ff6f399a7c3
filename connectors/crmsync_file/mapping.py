"""Pure functions turning one export row into a record, or a bad record saying why not.

Cell values are read forgivingly but never guessed at:

* text is trimmed; an empty cell is "no value";
* lists (aliases, company ids) are split on ``list_separator`` in text, or taken from
  a JSON array; empty items and repeated values are dropped;
* booleans are ``true_values`` / ``false_values`` (any case), JSON booleans, or 0/1;
  an empty cell is false;
* timestamps are ISO 8601 (``2026-03-01T12:00:00Z``, ``2026-03-01 12:00:00+01:00``,
  ``2026-03-01``); **a timestamp without a zone is taken as UTC**. Integers (a JSON
  number or a cell of 11 or more digits) are epoch milliseconds; smaller integers
  are refused because they are most likely epoch seconds;
* a tax status is a key of ``tax_status_values`` or one of ``TAXED``, ``TAX_EXEMPT``,
  ``REVERSE_CHARGED`` (any case; spaces and hyphens read as underscores);
* the billing designation of a contact is a true value (billing contact of every
  company it is linked to), a false value or empty (of none), or a list of company
  ids (billing contact of those only, each of which must be among its companies).

Every problem found in a row is reported in one line, prefixed with the line number.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import ValidationError

from crmsync.domain.values import TaxStatus
from crmsync.sdk.records import (
    BadRecord,
    CompanyLink,
    CompanyRecord,
    ContactRecord,
    ObjectType,
    Record,
)
from crmsync.sdk.values import InvalidValue, show, tax_status_from_text
from crmsync_file.config import CompanyFileSource, ContactFileSource, FileSource
from crmsync_file.rows import BrokenRow, Row

__all__ = [
    "InvalidValue",
    "Mapped",
    "map_broken",
    "map_company",
    "map_contact",
    "parse_flag",
    "parse_list",
    "parse_tax_status",
    "parse_text",
    "parse_timestamp",
    "row_id",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_EPOCH_MS = 100_000_000_000  # 1973-03-03: smaller integers are most likely seconds
_NO_ITEMS: tuple[str, ...] = ()
_NO_IDS: frozenset[str] = frozenset()

MAX_ID_CHARS = 255
"""The longest id (and alias) the store keeps; a longer one makes the row bad."""


@dataclass(frozen=True, slots=True)
class Mapped:
    """A row's outcome, and its modification time when that could be read."""

    item: Record | BadRecord
    modified_at: datetime | None = None


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, list):
        return "list"
    return "object"


def parse_text(value: object) -> str | None:
    """A trimmed string, or ``None`` for a missing or empty value."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InvalidValue(f"a JSON {_json_kind(value)} where text was expected")


def parse_list(value: object, separator: str) -> tuple[str, ...]:
    """Items of a separated text or a JSON array: trimmed, without empties and repeats.

    An item longer than 255 characters (the longest id or alias) is refused.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[str | None] = [part.strip() or None for part in value.split(separator)]
    elif isinstance(value, list):
        items = [parse_text(item) for item in value]
    else:
        items = [parse_text(value)]
    if too_long := next((item for item in items if item and len(item) > MAX_ID_CHARS), None):
        raise InvalidValue(f"an item of {len(too_long):,} characters (at most {MAX_ID_CHARS})")
    return tuple(dict.fromkeys(item for item in items if item is not None))


def parse_flag(value: object, source: FileSource) -> bool:
    """A boolean from ``true_values``/``false_values``, a JSON boolean or 0/1; empty is false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().casefold()
        if not word or word in source.false_values:
            return False
        if word in source.true_values:
            return True
    raise InvalidValue(f"{show(value)} is neither a true nor a false value")


def _from_epoch_ms(value: float) -> datetime:
    if value < _MIN_EPOCH_MS:
        raise InvalidValue(f"{show(value)} is not epoch milliseconds (seconds are not accepted)")
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise InvalidValue(f"{show(value)} is out of range for epoch milliseconds") from None


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from ISO 8601 (naive means UTC) or epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _from_epoch_ms(value)
    if not isinstance(value, str):
        raise InvalidValue(f"a JSON {_json_kind(value)} where a timestamp was expected")
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit() and len(text) >= 11:
        return _from_epoch_ms(int(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(
            f"{show(text)} is neither an ISO 8601 timestamp nor epoch milliseconds"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_tax_status(value: object, values: Mapping[str, TaxStatus]) -> TaxStatus | None:
    """A tax status from the configured value map or the status' own name."""
    return tax_status_from_text(parse_text(value), values)


def row_id(row: Row, column: str) -> str | None:
    """The row's id, or ``None`` when it has none (or an unreadable one)."""
    try:
        return parse_text(row.values.get(column))
    except InvalidValue:
        return None


T = TypeVar("T")


class _Reader:
    """Reads the mapped columns of one row, collecting every problem instead of stopping."""

    def __init__(self, row: Row) -> None:
        self.row = row
        self.problems: list[str] = []

    def get(self, column: str | None, parse: Callable[[object], T], empty: T) -> T:
        if column is None:
            return empty
        try:
            return parse(self.row.values.get(column))
        except InvalidValue as exc:
            self.problems.append(f"{column}: {exc}")
            return empty

    def bad(self, object_type: ObjectType, external_id: str | None) -> BadRecord:
        reason = f"line {self.row.line}: " + "; ".join(self.problems)
        return BadRecord(
            object_type=object_type, external_id=external_id, raw=self.row.raw, reason=reason
        )


def _invalid_model(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def _identity(
    read: _Reader, id_column: str, modified_column: str | None
) -> tuple[str | None, datetime | None]:
    """The row's id (a missing one is a problem) and its modification time."""
    external_id = read.get(id_column, parse_text, None)
    if external_id is not None and len(external_id) > MAX_ID_CHARS:
        read.problems.append(
            f"{id_column}: an id of {len(external_id):,} characters (at most {MAX_ID_CHARS})"
        )
        external_id = None
    if external_id is None and not read.problems:
        read.problems.append(f"no id (column {id_column!r} is empty)")
    return external_id, read.get(modified_column, parse_timestamp, None)


def map_company(row: Row, source: CompanyFileSource) -> Mapped:
    """A company row as a :class:`CompanyRecord`, or a :class:`BadRecord`."""
    columns = source.columns
    read = _Reader(row)
    external_id, modified_at = _identity(read, columns.external_id, columns.modified_at)
    fields = {
        "name": read.get(columns.name, parse_text, None),
        "line1": read.get(columns.line1, parse_text, None),
        "line2": read.get(columns.line2, parse_text, None),
        "city": read.get(columns.city, parse_text, None),
        "state": read.get(columns.state, parse_text, None),
        "postal_code": read.get(columns.postal_code, parse_text, None),
        "country": read.get(columns.country, parse_text, None),
    }
    tax_status = read.get(
        columns.tax_status, lambda v: parse_tax_status(v, source.tax_status_values), None
    )
    aliases = read.get(columns.aliases, lambda v: parse_list(v, source.list_separator), _NO_ITEMS)
    deleted = read.get(columns.deleted, lambda v: parse_flag(v, source), False)
    if read.problems or external_id is None:
        return Mapped(read.bad(ObjectType.COMPANY, external_id), modified_at)
    try:
        record = CompanyRecord(
            external_id=external_id,
            tax_status=tax_status,
            aliases=aliases,
            modified_at=modified_at,
            deleted=deleted,
            **fields,
        )
    except ValidationError as exc:
        read.problems.append(_invalid_model(exc))
        return Mapped(read.bad(ObjectType.COMPANY, external_id), modified_at)
    return Mapped(record, modified_at)


def _billing(
    value: object, source: ContactFileSource, company_ids: tuple[str, ...]
) -> frozenset[str]:
    """The ids of the companies the contact is billing contact of."""
    if value is None or isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return frozenset(company_ids) if parse_flag(value, source) else _NO_IDS
    if isinstance(value, str):
        word = value.strip().casefold()
        if not word or word in source.false_values:
            return _NO_IDS
        if word in source.true_values:
            return frozenset(company_ids)
    named = parse_list(value, source.list_separator)
    if unknown := [company for company in named if company not in company_ids]:
        raise InvalidValue(
            f"names {', '.join(map(repr, unknown))}, not among the contact's companies"
        )
    return frozenset(named)


def map_contact(row: Row, source: ContactFileSource) -> Mapped:
    """A contact row as a :class:`ContactRecord`, or a :class:`BadRecord`."""
    columns = source.columns
    read = _Reader(row)
    external_id, modified_at = _identity(read, columns.external_id, columns.modified_at)
    name = read.get(columns.name, parse_text, None)
    if name is None:
        parts = (
            read.get(columns.first_name, parse_text, None),
            read.get(columns.last_name, parse_text, None),
        )
        name = " ".join(part for part in parts if part) or None
    email = read.get(columns.email, parse_text, None)
    company_ids = read.get(
        columns.company_ids, lambda v: parse_list(v, source.list_separator), _NO_ITEMS
    )
    billing = read.get(columns.billing_contact, lambda v: _billing(v, source, company_ids), _NO_IDS)
    deleted = read.get(columns.deleted, lambda v: parse_flag(v, source), False)
    if read.problems or external_id is None:
        return Mapped(read.bad(ObjectType.CONTACT, external_id), modified_at)
    try:
        record = ContactRecord(
            external_id=external_id,
            name=name,
            email=email,
            companies=tuple(
                CompanyLink(company_id=company, billing_contact=company in billing)
                for company in company_ids
            ),
            modified_at=modified_at,
            deleted=deleted,
        )
    except ValidationError as exc:
        read.problems.append(_invalid_model(exc))
        return Mapped(read.bad(ObjectType.CONTACT, external_id), modified_at)
    return Mapped(record, modified_at)


def map_broken(row: BrokenRow, object_type: ObjectType, id_column: str) -> Mapped:
    """A row that could not be read as values, as a :class:`BadRecord`.

    It names the row's id when the part that could be read holds a usable one (text
    of at most 255 characters without a quote: a fragment of a quoted field that ran
    across lines is not an id), so that a later valid row of that id clears it.
    """
    try:
        external_id = parse_text(row.values.get(id_column))
    except InvalidValue:
        external_id = None
    if external_id is not None and (len(external_id) > MAX_ID_CHARS or '"' in external_id):
        external_id = None
    bad = BadRecord(
        object_type=object_type, external_id=external_id, raw=row.raw, reason=row.reason
    )
    return Mapped(bad)
