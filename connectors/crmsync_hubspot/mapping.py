"""Pure functions turning HubSpot's JSON records into records, or bad records saying why.

A HubSpot record is ``{"id", "properties": {name: text | null}, "updatedAt",
"archived", "archivedAt"?, "associations"?}``. The rules:

* text is trimmed; an empty value is "no value"; numbers and booleans are read as text;
* ``modified_at`` is the archive time of an archived record, else the object's modified
  date property (``hs_lastmodifieddate`` / ``lastmodifieddate``), else ``updatedAt``;
  timestamps are ISO 8601 (``2026-03-01T12:00:00.000Z``) or epoch milliseconds;
* ``deleted`` is ``archived``; ``merged_ids`` are the ids in ``hs_merged_object_ids``
  (separated by semicolons), the record's own id left out;
* aliases come from the configured alias properties, a value with semicolons holding
  several; empty items and repeats are dropped;
* a tax status is a key of ``tax_status_values`` or one of ``TAXED``, ``TAX_EXEMPT``,
  ``REVERSE_CHARGED`` (any case; spaces and hyphens read as underscores);
* a contact's name is the full-name property when configured and not empty, else its
  first and last names joined by a space;
* a contact's companies come from v4 association reads (:func:`links_from_v4`) or the
  list answer's inline associations (:func:`links_from_inline`); the billing contact
  label, or the billing contact property, marks them ``billing_contact``.

Every problem found in a record is reported in one line, prefixed with its id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from pydantic import ValidationError

from crmsync.sdk.records import BadRecord, CompanyLink, CompanyRecord, ContactRecord, ObjectType
from crmsync.sdk.values import InvalidValue, parse_tax_status, parse_text, show
from crmsync_hubspot.config import BillingContactSettings, CompanyProperties, ContactProperties
from crmsync_hubspot.settings import MERGED_IDS_PROPERTY

__all__ = [
    "ContactMapping",
    "InlineLinks",
    "InvalidValue",
    "archived_at",
    "label_v3_name",
    "links_from_inline",
    "links_from_v4",
    "map_company",
    "map_contact",
    "parse_tax_status",
    "parse_text",
    "parse_timestamp",
    "record_id",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_LINKS: tuple[CompanyLink, ...] = ()


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from ISO 8601 (naive means UTC) or epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return _from_epoch_ms(value)
    if not isinstance(value, str):
        raise InvalidValue(f"{show(value)} is not a timestamp")
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return _from_epoch_ms(int(text))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"{show(text)} is not an ISO 8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _from_epoch_ms(value: int) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=value)
    except OverflowError:
        raise InvalidValue(f"{show(value)} is out of range for epoch milliseconds") from None


def _split(value: object) -> list[str]:
    text = parse_text(value)
    return [] if text is None else [part.strip() for part in text.split(";") if part.strip()]


def record_id(raw: object) -> str | None:
    """The record's id, or ``None`` when it has none (or an unreadable one)."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None


def _properties(raw: dict[str, Any]) -> dict[str, Any]:
    properties = raw.get("properties", {})
    if properties is None:
        return {}
    if not isinstance(properties, dict):
        raise InvalidValue("properties is not a JSON object")
    return properties


def archived_at(raw: object) -> datetime | None:
    """When an archived record was archived (``None`` if it does not say or is unreadable)."""
    if not isinstance(raw, dict):
        return None
    try:
        return parse_timestamp(raw.get("archivedAt")) or parse_timestamp(raw.get("updatedAt"))
    except InvalidValue:
        return None


def _modified_at(raw: dict[str, Any], properties: dict[str, Any], modified: str) -> datetime | None:
    if raw.get("archived") is True and raw.get("archivedAt") is not None:
        return parse_timestamp(raw["archivedAt"])
    if properties.get(modified) is not None:
        return parse_timestamp(properties[modified])
    return parse_timestamp(raw.get("updatedAt"))


def _merged_ids(properties: dict[str, Any], own_id: str) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(i for i in _split(properties.get(MERGED_IDS_PROPERTY)) if i != own_id)
    )


def _get(properties: dict[str, Any], name: str | None) -> str | None:
    return None if name is None else parse_text(properties.get(name))


def _bad(object_type: ObjectType, raw: object, external_id: str | None, reason: str) -> BadRecord:
    try:
        text = json.dumps(raw, ensure_ascii=False, default=str)
    except ValueError:  # a circular structure cannot come from JSON; be safe anyway
        text = repr(raw)
    where = f"{object_type} {external_id}" if external_id else f"a {object_type} without an id"
    return BadRecord(
        object_type=object_type, external_id=external_id, raw=text, reason=f"{where}: {reason}"
    )


def _validation_reason(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(step) for step in problem["loc"]) or "record"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def map_company(
    raw: object, mapping: CompanyProperties, modified_property: str
) -> CompanyRecord | BadRecord:
    """One company, or a bad record saying what is wrong with it."""
    external_id = record_id(raw)
    if external_id is None or not isinstance(raw, dict):
        return _bad(ObjectType.COMPANY, raw, None, "the record has no id")
    try:
        properties = _properties(raw)
        aliases: list[str] = []
        for name in mapping.aliases:
            aliases.extend(_split(properties.get(name)))
        return CompanyRecord(
            external_id=external_id,
            name=_get(properties, mapping.name),
            line1=_get(properties, mapping.line1),
            line2=_get(properties, mapping.line2),
            city=_get(properties, mapping.city),
            state=_get(properties, mapping.state),
            postal_code=_get(properties, mapping.postal_code),
            country=_get(properties, mapping.country),
            tax_status=None
            if mapping.tax_status is None
            else parse_tax_status(properties.get(mapping.tax_status), mapping.tax_status_values),
            aliases=tuple(dict.fromkeys(aliases)),
            modified_at=_modified_at(raw, properties, modified_property),
            deleted=raw.get("archived") is True,
            merged_ids=_merged_ids(properties, external_id),
        )
    except InvalidValue as exc:
        return _bad(ObjectType.COMPANY, raw, external_id, str(exc))
    except ValidationError as exc:
        return _bad(ObjectType.COMPANY, raw, external_id, _validation_reason(exc))


@dataclass(frozen=True, slots=True)
class ContactMapping:
    """What mapping a contact needs besides the record: its properties and the billing rule."""

    properties: ContactProperties
    billing: BillingContactSettings
    modified_property: str


def _contact_name(properties: dict[str, Any], mapping: ContactProperties) -> str | None:
    full = _get(properties, mapping.full_name)
    if full is not None:
        return full
    parts = [_get(properties, mapping.first_name), _get(properties, mapping.last_name)]
    return " ".join(part for part in parts if part) or None


def _billing_by_property(properties: dict[str, Any], billing: BillingContactSettings) -> bool:
    value = _get(properties, billing.contact_property)
    return value is not None and value.casefold() in billing.true_values


def map_contact(
    raw: object, mapping: ContactMapping, links: Sequence[CompanyLink] = _NO_LINKS
) -> ContactRecord | BadRecord:
    """One contact with its company links, or a bad record saying what is wrong with it.

    With a billing contact property, the property decides the designation of every link.
    """
    external_id = record_id(raw)
    if external_id is None or not isinstance(raw, dict):
        return _bad(ObjectType.CONTACT, raw, None, "the record has no id")
    try:
        properties = _properties(raw)
        if mapping.billing.contact_property is not None:
            billing = _billing_by_property(properties, mapping.billing)
            links = [
                CompanyLink(company_id=link.company_id, billing_contact=billing) for link in links
            ]
        return ContactRecord(
            external_id=external_id,
            name=_contact_name(properties, mapping.properties),
            email=_get(properties, mapping.properties.email),
            companies=tuple(links),
            modified_at=_modified_at(raw, properties, mapping.modified_property),
            deleted=raw.get("archived") is True,
            merged_ids=_merged_ids(properties, external_id),
        )
    except InvalidValue as exc:
        return _bad(ObjectType.CONTACT, raw, external_id, str(exc))
    except ValidationError as exc:
        return _bad(ObjectType.CONTACT, raw, external_id, _validation_reason(exc))


# --- associations --------------------------------------------------------------------------


@lru_cache(maxsize=64)
def label_v3_name(label: str) -> str:
    """How v3 inline associations name a user-defined label: its text in snake case.

    ("Billing contact" -> ``billing_contact``.) HubSpot shows this in answers but does
    not document it; set ``associations: batch`` to match labels by name instead.
    """
    return re.sub(r"[^a-z0-9]+", "_", label.casefold()).strip("_")


def _links(pairs: Iterable[tuple[str, bool]]) -> tuple[CompanyLink, ...]:
    billing: dict[str, bool] = {}
    for company_id, designated in pairs:
        billing[company_id] = billing.get(company_id, False) or designated
    return tuple(CompanyLink(company_id=cid, billing_contact=flag) for cid, flag in billing.items())


def links_from_v4(entries: Iterable[object], label: str | None) -> tuple[CompanyLink, ...]:
    """Links from v4 ``to`` entries; billing when an association type carries ``label``."""
    wanted = label.casefold() if label is not None else None

    def pairs() -> Iterator[tuple[str, bool]]:
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("toObjectId") is None:
                continue
            types = entry.get("associationTypes")
            labels = [
                t.get("label")
                for t in (types if isinstance(types, list) else [])
                if isinstance(t, dict)
            ]
            designated = wanted is not None and any(
                isinstance(name, str) and name.casefold() == wanted for name in labels
            )
            yield str(entry["toObjectId"]), designated

    return _links(pairs())


@dataclass(frozen=True, slots=True)
class InlineLinks:
    """A record's companies as its list answer shows them; ``complete`` unless paged."""

    links: tuple[CompanyLink, ...]
    complete: bool


def links_from_inline(raw: object, to_object: str, label: str | None) -> InlineLinks:
    """Links from a list answer's ``associations.{to_object}`` block.

    The block is ``{"results": [{"id", "type"}], "paging"?}``; one entry per
    association type, user-defined labels named by :func:`label_v3_name`. When the
    block has a next page the links are incomplete and must be read through v4.
    """
    block = None
    if isinstance(raw, dict) and isinstance(raw.get("associations"), dict):
        block = raw["associations"].get(to_object)
    if not isinstance(block, dict):
        return InlineLinks(_NO_LINKS, complete=True)
    wanted = label_v3_name(label) if label is not None else None
    results = block.get("results")
    entries = results if isinstance(results, list) else []
    pairs = [
        (str(entry["id"]), wanted is not None and entry.get("type") == wanted)
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("id"), str | int)
    ]
    return InlineLinks(_links(pairs), complete=block.get("paging") is None)
