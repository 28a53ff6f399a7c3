"""The typed records a connector yields, and the cursor the engine keeps for it.

A connector turns what its CRM returns into :class:`CompanyRecord` and
:class:`ContactRecord` (or a :class:`BadRecord` saying why it could not), grouped
in :class:`Page` objects. Each page carries the :class:`Cursor` that resumes the
stream right after it; the engine commits the page and that cursor in one
transaction, so a run killed at any moment resumes without losing a record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from crmsync.domain.values import TaxStatus

__all__ = [
    "BadRecord",
    "CompanyLink",
    "CompanyRecord",
    "ContactRecord",
    "Cursor",
    "ObjectType",
    "Page",
    "Record",
    "UtcDatetime",
]


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
"""An aware datetime, converted to UTC; naive datetimes are refused."""

ExternalId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class ObjectType(StrEnum):
    """The kinds of CRM object crm-sync reads; also the names of a connector's streams."""

    COMPANY = "company"
    CONTACT = "contact"


def _has_nul(values: Iterable[Any]) -> bool:
    """Whether any text among ``values`` (or in a list among them) holds a NUL. A plain
    loop: this runs for every field of every record a sync reads."""
    for value in values:
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, list | tuple) and _has_nul(value):
            return True
    return False


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list | tuple):
        return type(value)(_without_nul(item) for item in value)
    return value


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_nul(cls, data: Any) -> Any:
        """NUL characters carry no meaning in a name, an address or an id, and PostgreSQL
        text cannot hold them: they are dropped from every text field, so a record reads
        the same on either store (other control characters are kept, and escaped when
        printed)."""
        if isinstance(data, dict) and _has_nul(data.values()):
            return {key: _without_nul(value) for key, value in data.items()}
        return data


class CompanyRecord(_Record):
    """A company (account, organization) as the CRM holds it: one billing customer."""

    external_id: ExternalId
    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None
    tax_status: TaxStatus | None = None
    aliases: tuple[str, ...] = ()
    modified_at: UtcDatetime | None = None
    deleted: bool = False
    """The CRM reports the record deleted or archived (never inferred from absence). A
    deletion may carry only the id (and its modification time): it is a tombstone, and
    the store changes nothing but the deletion mark, so the customer keeps its fields and
    aliases and is held as ``source_deleted``."""
    merged_ids: tuple[str, ...] = ()
    """Ids of records the CRM merged into this one; their customers fold into this one."""


class CompanyLink(_Record):
    """A contact's association to a company, and whether the CRM marks it as billing contact."""

    company_id: ExternalId
    billing_contact: bool = False


class ContactRecord(_Record):
    """A person at one or more companies."""

    external_id: ExternalId
    name: str | None = None
    email: str | None = None
    companies: tuple[CompanyLink, ...] = ()
    modified_at: UtcDatetime | None = None
    deleted: bool = False
    merged_ids: tuple[str, ...] = ()
    """Ids of contacts the CRM merged into this one; their memberships fold into this one."""


Record = CompanyRecord | ContactRecord


class BadRecord(_Record):
    """A record the connector could not turn into a valid record; it is quarantined."""

    object_type: ObjectType
    external_id: str | None = None
    raw: str = Field(description="the record as received (JSON text or the raw line)")
    reason: str

    @model_validator(mode="before")
    @classmethod
    def _drop_nul(cls, data: Any) -> Any:
        """Keep the evidence: a NUL in the raw text is written as the four characters
        ``\\x00`` (the store's text columns cannot hold NUL); other fields lose it."""
        if isinstance(data, dict) and _has_nul(data.values()):
            data = {
                key: value.replace("\x00", "\\x00")
                if key == "raw" and isinstance(value, str)
                else _without_nul(value)
                for key, value in data.items()
            }
        return data


class Cursor(_Record):
    """Where a stream stands; owned and stored by the engine, interpreted by the connector.

    ``since`` is the inclusive lower bound on modification time for the next
    incremental pass. While a pass is under way, ``position`` is the connector's
    resume token (an ``after`` token, the last id seen, a row number) and ``until``
    the pass' fixed upper bound; both are ``None`` between passes. ``full`` says the
    pass under way is a full pass (``False`` between passes). ``extra`` holds
    any other connector-specific state (JSON-serialisable values only).
    """

    since: UtcDatetime | None = None
    until: UtcDatetime | None = None
    position: str | None = None
    full: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    @property
    def in_pass(self) -> bool:
        """Whether a pass was interrupted (or is under way) at this cursor."""
        return self.position is not None


@dataclass(frozen=True, slots=True)
class Page:
    """One batch of a stream: its records, its bad records, and the cursor just after it."""

    stream: ObjectType
    cursor: Cursor
    records: Sequence[Record] = ()
    bad: Sequence[BadRecord] = ()
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC), compare=False)
    """When the CRM's answer arrived (the page is made then): of two reads of a record
    that the CRM's modification time does not tell apart, the later read wins."""
    total: int | None = None
    """How many records the stream's pass delivers in all, when the source knows it (an
    export file's line count, a CRM's reported total): progress shows a bar with it."""
