"""Pure functions turning Salesforce's JSON records into records, or bad records saying why.

An Account or Contact row is ``{"attributes", "Id", "SystemModstamp", "IsDeleted",
"MasterRecordId", field: value, ...}``. The rules:

* text is trimmed; an empty value is "no value"; numbers and booleans are read as text;
* ``modified_at`` is ``SystemModstamp`` (``2026-03-02T09:00:00.000+0000``);
* ``deleted`` is ``IsDeleted`` (queryAll returns deleted rows, and the losers of a merge
  with their ``MasterRecordId``);
* the street (``BillingStreet``) may hold several lines: the first is line 1, the
  others, joined by ", ", line 2;
* with state and country picklists, ``BillingStateCode``/``BillingCountryCode`` win over
  the text fields when set;
* aliases come from the configured alias fields, a value with semicolons holding
  several; empty items and repeats are dropped;
* a tax status is a key of ``tax_status_values`` or one of ``TAXED``, ``TAX_EXEMPT``,
  ``REVERSE_CHARGED`` (any case; spaces and hyphens read as underscores);
* a contact's name is its first and last names joined by a space;
* a contact's companies are its ``AccountId`` and the accounts of its active
  ``AccountContactRelations`` (and of its ``AccountContactRoles``), in that order,
  each once. A link is the billing contact's when the relation's ``Roles`` holds the
  billing role, when a primary ``AccountContactRole`` has that role, or (for every
  link) when the configured checkbox on the contact is true.

Every problem found in a record is reported in one line, prefixed with its id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from crmsync.sdk.records import BadRecord, CompanyLink, CompanyRecord, ContactRecord, ObjectType
from crmsync.sdk.values import InvalidValue, parse_tax_status, parse_text, show
from crmsync_salesforce.config import AccountFields, BillingContactSettings, ContactFields

__all__ = [
    "RELATIONS",
    "ROLES",
    "ContactMapping",
    "InvalidValue",
    "deleted_record",
    "map_company",
    "map_contact",
    "parse_tax_status",
    "parse_text",
    "parse_timestamp",
    "record_id",
    "split_street",
]

RELATIONS = "AccountContactRelations"
"""Contact's child relationship to AccountContactRelation (a subquery's name)."""
ROLES = "AccountContactRoles"
"""Contact's child relationship to AccountContactRole."""

_LINES = re.compile(r"\r\n|\r|\n")


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from Salesforce's ``2026-03-02T09:00:00.000+0000`` (ISO 8601)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{show(value)} is not a timestamp")
    text = value.strip()
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidValue(f"{show(text)} is not an ISO 8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def split_street(value: object) -> tuple[str | None, str | None]:
    """Line 1 and line 2 of a street field that may hold several lines."""
    text = parse_text(value)
    if text is None:
        return None, None
    lines = [line.strip() for line in _LINES.split(text) if line.strip()]
    return lines[0], ", ".join(lines[1:]) or None


def _split(value: object) -> list[str]:
    text = parse_text(value)
    return [] if text is None else [part.strip() for part in text.split(";") if part.strip()]


def record_id(raw: object) -> str | None:
    """The record's ``Id``, or ``None`` when it has none (or an unreadable one)."""
    if not isinstance(raw, dict):
        return None
    value = raw.get("Id")
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _get(raw: dict[str, Any], name: str | None) -> str | None:
    return None if name is None else parse_text(raw.get(name))


def _bad(object_type: ObjectType, raw: object, external_id: str | None, reason: str) -> BadRecord:
    try:
        text = json.dumps(raw, ensure_ascii=False, default=str)
    except ValueError:  # a circular structure cannot come from JSON; be safe anyway
        text = repr(raw)
    where = f"{object_type} {external_id}" if external_id else f"a {object_type} without an Id"
    return BadRecord(
        object_type=object_type, external_id=external_id, raw=text, reason=f"{where}: {reason}"
    )


def _validation_reason(error: ValidationError) -> str:
    parts = []
    for problem in error.errors():
        where = ".".join(str(step) for step in problem["loc"]) or "record"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def _preferred(
    raw: dict[str, Any], code: str | None, text: str | None, picklists: bool
) -> str | None:
    if picklists and (value := _get(raw, code)) is not None:
        return value
    return _get(raw, text)


def map_company(
    raw: object, fields: AccountFields, *, picklists: bool = False
) -> CompanyRecord | BadRecord:
    """One Account, or a bad record saying what is wrong with it."""
    external_id = record_id(raw)
    if external_id is None or not isinstance(raw, dict):
        return _bad(ObjectType.COMPANY, raw, None, "the record has no Id")
    try:
        line1, line2 = split_street(None if fields.street is None else raw.get(fields.street))
        aliases: list[str] = []
        for name in fields.aliases:
            aliases.extend(_split(raw.get(name)))
        return CompanyRecord(
            external_id=external_id,
            name=_get(raw, fields.name),
            line1=line1,
            line2=line2,
            city=_get(raw, fields.city),
            state=_preferred(raw, fields.state_code, fields.state, picklists),
            postal_code=_get(raw, fields.postal_code),
            country=_preferred(raw, fields.country_code, fields.country, picklists),
            tax_status=None
            if fields.tax_status is None
            else parse_tax_status(raw.get(fields.tax_status), fields.tax_status_values),
            aliases=tuple(dict.fromkeys(aliases)),
            modified_at=parse_timestamp(raw.get("SystemModstamp")),
            deleted=raw.get("IsDeleted") is True,
        )
    except InvalidValue as exc:
        return _bad(ObjectType.COMPANY, raw, external_id, str(exc))
    except ValidationError as exc:
        return _bad(ObjectType.COMPANY, raw, external_id, _validation_reason(exc))


def deleted_record(
    object_type: ObjectType, external_id: str, deleted_at: str | None
) -> CompanyRecord | ContactRecord | BadRecord:
    """A deletion known only by its id (the getDeleted log): the id, the mark, the time."""
    try:
        when = parse_timestamp(deleted_at)
        if object_type is ObjectType.COMPANY:
            return CompanyRecord(external_id=external_id, deleted=True, modified_at=when)
        return ContactRecord(external_id=external_id, deleted=True, modified_at=when)
    except (InvalidValue, ValidationError) as exc:
        return _bad(
            object_type, {"id": external_id, "deletedDate": deleted_at}, external_id, str(exc)
        )


@dataclass(frozen=True, slots=True)
class ContactMapping:
    """What mapping a contact needs besides the record: its fields and the billing rule."""

    fields: ContactFields
    billing: BillingContactSettings


def _children(raw: dict[str, Any], relationship: str) -> list[dict[str, Any]]:
    block = raw.get(relationship)
    if block is None:
        return []
    records = block.get("records") if isinstance(block, dict) else None
    if not isinstance(records, list):
        raise InvalidValue(f"{relationship} is not a query result")
    return [row for row in records if isinstance(row, dict)]


def _has_role(roles: object, wanted: str | None) -> bool:
    if wanted is None or not isinstance(roles, str):
        return False
    folded, role = roles.casefold(), wanted.casefold()
    return role in folded and any(r.strip() == role for r in folded.split(";"))


def _pairs(raw: dict[str, Any], billing: BillingContactSettings) -> Iterable[tuple[str, bool]]:
    if (direct := parse_text(raw.get("AccountId"))) is not None:
        yield direct, False
    for relation in _children(raw, RELATIONS):
        account = parse_text(relation.get("AccountId"))
        if account is None or relation.get("IsActive") is False:
            continue
        yield account, _has_role(relation.get("Roles"), billing.role)
    for role in _children(raw, ROLES):
        account = parse_text(role.get("AccountId"))
        if account is not None and role.get("IsPrimary") is True:
            yield account, _has_role(role.get("Role"), billing.role)


def _links(raw: dict[str, Any], billing: BillingContactSettings) -> tuple[CompanyLink, ...]:
    flags: dict[str, bool] = {}
    for account, designated in _pairs(raw, billing):
        flags[account] = flags.get(account, False) or designated
    if billing.contact_checkbox is not None and raw.get(billing.contact_checkbox) is True:
        flags = dict.fromkeys(flags, True)
    return tuple(CompanyLink(company_id=a, billing_contact=b) for a, b in flags.items())


def map_contact(raw: object, mapping: ContactMapping) -> ContactRecord | BadRecord:
    """One Contact with its accounts, or a bad record saying what is wrong with it."""
    external_id = record_id(raw)
    if external_id is None or not isinstance(raw, dict):
        return _bad(ObjectType.CONTACT, raw, None, "the record has no Id")
    try:
        fields = mapping.fields
        parts = [_get(raw, fields.first_name), _get(raw, fields.last_name)]
        return ContactRecord(
            external_id=external_id,
            name=" ".join(part for part in parts if part) or None,
            email=_get(raw, fields.email),
            companies=_links(raw, mapping.billing),
            modified_at=parse_timestamp(raw.get("SystemModstamp")),
            deleted=raw.get("IsDeleted") is True,
        )
    except InvalidValue as exc:
        return _bad(ObjectType.CONTACT, raw, external_id, str(exc))
    except ValidationError as exc:
        return _bad(ObjectType.CONTACT, raw, external_id, _validation_reason(exc))
