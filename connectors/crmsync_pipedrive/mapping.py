"""Pure functions turning Pipedrive's JSON (API v2) into records, or bad records saying why.

An organization is ``{"id", "name", "address": {...}, "custom_fields": {hash: value},
"update_time", "is_deleted", ...}``; a person ``{"id", "name", "first_name",
"last_name", "emails": [{"value", "primary", "label"}], "org_id", "label_ids",
"custom_fields", "update_time", "is_deleted"}``. The rules:

* ids are read as text; text is trimmed, an empty value is "no value";
* ``modified_at`` is ``update_time`` (RFC 3339; ``YYYY-MM-DD HH:MM:SS`` is read as UTC);
* ``deleted`` is ``is_deleted``; a deleted record that carries only its id (no name)
  becomes an id-only deletion (``CompanyRecord(external_id, deleted=True)``): the store
  changes only its deletion mark;
* the address is mapped field by field: line 1 from ``route`` and ``street_number``
  (in the configured order), line 2 from ``subpremise``, city from ``locality``, state
  from ``admin_area_level_1``, postal code and country as they are;
* custom fields are read by the hash keys the fields endpoints give for the configured
  names; an option field's value is its option's label; a value with semicolons holds
  several aliases;
* a person's ``org_id`` is its one company; its billing designation is a configured
  label among ``label_ids``, or a configured custom field with a true value;
* a person gives one contact with its primary email (else its first), or with
  ``emails: each`` one contact per address: the primary keeps the person's id, the
  others are ``<id>~<n>``.

Every problem found in a record is reported in one line, prefixed with its id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from crmsync.domain.values import TaxStatus
from crmsync.sdk.records import BadRecord, CompanyLink, CompanyRecord, ContactRecord, ObjectType
from crmsync.sdk.values import InvalidValue, parse_text, show, tax_status_from_text
from crmsync_pipedrive.api import FieldDefinition
from crmsync_pipedrive.config import ContactSettings, OrganizationSettings

__all__ = [
    "InvalidValue",
    "OrganizationFields",
    "PersonFields",
    "custom_values",
    "map_organization",
    "map_person",
    "parse_timestamp",
    "record_id",
]

_ID_ONLY_MARKERS = ("name", "first_name", "last_name", "emails", "address")


@dataclass(frozen=True, slots=True)
class OrganizationFields:
    """The organization custom fields the config names, resolved to their hash keys."""

    tax_status: FieldDefinition | None = None
    aliases: tuple[FieldDefinition, ...] = ()


@dataclass(frozen=True, slots=True)
class PersonFields:
    """How the billing contact is recognised, resolved through the person fields."""

    billing_label_ids: frozenset[str] = frozenset()
    billing_field: FieldDefinition | None = None
    true_values: frozenset[str] = field(default_factory=frozenset)


def record_id(raw: object) -> str | None:
    """The record's id as text, or ``None`` when it has none."""
    value = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text or None


def parse_timestamp(value: object) -> datetime | None:
    """An aware UTC datetime from RFC 3339 (or Pipedrive v1's ``YYYY-MM-DD HH:MM:SS``, UTC)."""
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
        raise InvalidValue(f"{show(text)} is not an RFC 3339 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def custom_values(raw: Mapping[str, Any], definition: FieldDefinition) -> list[str]:
    """The texts a custom field holds: its text, or its chosen options' labels."""
    fields = raw.get("custom_fields")
    value = fields.get(definition.key) if isinstance(fields, dict) else raw.get(definition.key)
    if isinstance(value, dict):  # monetary, address ... carry {"value": ...}
        value = value.get("value")
    items = value if isinstance(value, list) else [value]
    texts: list[str] = []
    for item in items:
        text = parse_text(item)
        if text is not None:
            texts.append(definition.options.get(text, text))
    return texts


def _tax_status(
    raw: Mapping[str, Any], fields: OrganizationFields, values: Mapping[str, TaxStatus]
) -> TaxStatus | None:
    if fields.tax_status is None:
        return None
    found = custom_values(raw, fields.tax_status)
    if not found:
        return None
    return tax_status_from_text(found[0], values)


def _aliases(raw: Mapping[str, Any], fields: OrganizationFields) -> tuple[str, ...]:
    found: list[str] = []
    for definition in fields.aliases:
        for text in custom_values(raw, definition):
            found += [part.strip() for part in text.split(";") if part.strip()]
    return tuple(dict.fromkeys(found))


def _line1(address: Mapping[str, Any], number_first: bool) -> str | None:
    route, number = parse_text(address.get("route")), parse_text(address.get("street_number"))
    parts = [number, route] if number_first else [route, number]
    joined = " ".join(part for part in parts if part)
    return joined or None


def _address(raw: Mapping[str, Any], settings: OrganizationSettings) -> dict[str, str | None]:
    address = raw.get("address")
    if address is None:
        return {}
    if not isinstance(address, dict):
        raise InvalidValue(f"address {show(address)} is not an object")
    return {
        "line1": _line1(address, settings.street_number_first),
        "line2": parse_text(address.get("subpremise")),
        "city": parse_text(address.get("locality")),
        "state": parse_text(address.get("admin_area_level_1")),
        "postal_code": parse_text(address.get("postal_code")),
        "country": parse_text(address.get("country")),
    }


def _bad(stream: ObjectType, raw: object, reason: str, external_id: str | None) -> BadRecord:
    try:
        text = json.dumps(raw, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(raw)
    return BadRecord(object_type=stream, external_id=external_id, raw=text, reason=reason)


def _id_only(raw: Mapping[str, Any]) -> bool:
    return bool(raw.get("is_deleted")) and not any(key in raw for key in _ID_ONLY_MARKERS)


def map_organization(
    raw: object, settings: OrganizationSettings, fields: OrganizationFields
) -> CompanyRecord | BadRecord:
    """An organization as a company, or a bad record saying why it is not one."""
    external_id = record_id(raw)
    if external_id is None or not isinstance(raw, dict):
        return _bad(ObjectType.COMPANY, raw, "the organization has no id", None)
    try:
        modified_at = parse_timestamp(raw.get("update_time"))
        if _id_only(raw):
            return CompanyRecord(external_id=external_id, deleted=True, modified_at=modified_at)
        return CompanyRecord(
            external_id=external_id,
            name=parse_text(raw.get("name")),
            **_address(raw, settings),
            tax_status=_tax_status(raw, fields, settings.tax_status_values),
            aliases=_aliases(raw, fields),
            modified_at=modified_at,
            deleted=bool(raw.get("is_deleted")),
        )
    except (InvalidValue, ValidationError) as exc:
        return _bad(
            ObjectType.COMPANY, raw, f"organization {external_id}: {_reason(exc)}", external_id
        )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


def _emails(raw: Mapping[str, Any]) -> list[str]:
    """The person's addresses, the primary first."""
    emails = raw.get("emails", raw.get("email"))
    if emails is None:
        return []
    if not isinstance(emails, list):
        raise InvalidValue(f"emails {show(emails)} is not a list")
    primary: list[str] = []
    others: list[str] = []
    for entry in emails:
        if not isinstance(entry, dict):
            raise InvalidValue(f"email entry {show(entry)} is not an object")
        value = parse_text(entry.get("value"))
        if value is not None:
            (primary if entry.get("primary") is True else others).append(value)
    return list(dict.fromkeys(primary[:1] + others + primary[1:]))


def _name(raw: Mapping[str, Any]) -> str | None:
    name = parse_text(raw.get("name"))
    if name is not None:
        return name
    parts = [parse_text(raw.get("first_name")), parse_text(raw.get("last_name"))]
    return " ".join(part for part in parts if part) or None


def _org_id(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("org_id")
    if isinstance(value, dict):  # API v1 and webhooks v1 embed the organization
        value = value.get("value", value.get("id"))
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidValue(f"org_id {show(value)} is not an id")
    return str(value).strip() or None


def _is_billing(raw: Mapping[str, Any], fields: PersonFields) -> bool:
    if fields.billing_field is not None:
        values = custom_values(raw, fields.billing_field)
        return any(value.casefold() in fields.true_values for value in values)
    if not fields.billing_label_ids:
        return False
    labels = raw.get("label_ids", raw.get("label"))
    items = labels if isinstance(labels, list) else [labels]
    return any(str(item) in fields.billing_label_ids for item in items if item is not None)


def map_person(
    raw: object, settings: ContactSettings, fields: PersonFields
) -> list[ContactRecord] | BadRecord:
    """A person as its contacts (one, or one per email address), or a bad record."""
    external_id = record_id(raw)
    if external_id is None or not isinstance(raw, dict):
        return _bad(ObjectType.CONTACT, raw, "the person has no id", None)
    try:
        modified_at = parse_timestamp(raw.get("update_time"))
        if _id_only(raw):
            return [ContactRecord(external_id=external_id, deleted=True, modified_at=modified_at)]
        org_id = _org_id(raw)
        links: tuple[CompanyLink, ...] = ()
        if org_id is not None:
            links = (CompanyLink(company_id=org_id, billing_contact=_is_billing(raw, fields)),)
        common: dict[str, Any] = {
            "name": _name(raw),
            "companies": links,
            "modified_at": modified_at,
            "deleted": bool(raw.get("is_deleted")),
        }
        emails: Sequence[str | None] = _emails(raw) or [None]
        if settings.emails == "primary":
            return [ContactRecord(external_id=external_id, email=emails[0], **common)]
        return [
            ContactRecord(
                external_id=external_id if n == 0 else f"{external_id}~{n}", email=email, **common
            )
            for n, email in enumerate(emails)
        ]
    except (InvalidValue, ValidationError) as exc:
        return _bad(ObjectType.CONTACT, raw, f"person {external_id}: {_reason(exc)}", external_id)
