"""HubSpot webhook requests: signature checks and typed events.

Signatures (https://developers.hubspot.com/docs/api/webhooks/validating-requests):

- **v3** (``X-HubSpot-Signature-v3``, ``X-HubSpot-Request-Timestamp`` in epoch ms):
  ``base64(HMAC-SHA256(client_secret, method + uri + body + timestamp))``. The uri is
  the full URL HubSpot called, with ``%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B``
  decoded first. Requests whose timestamp is more than 5 minutes away from now are refused.
- **v2** (``X-HubSpot-Signature`` with ``X-HubSpot-Signature-Version: v2``):
  ``hex(SHA-256(client_secret + method + uri + body))``.
- **v1** (legacy CRM webhooks, version ``v1`` or no version header):
  ``hex(SHA-256(client_secret + body))``.

Signatures are compared in constant time (:func:`hmac.compare_digest`). v1 and v2 carry
no timestamp, so they cannot refuse a replayed request; set ``allow_legacy=False`` to
accept v3 only.

Events: the body is a JSON array of up to 100 events. Each names its kind in
``subscriptionType`` (older apps: ``eventType``), for example ``contact.propertyChange``
(the generic format, ``object.propertyChange``, names the object in ``objectTypeId``:
``0-1`` contacts, ``0-2`` companies); :func:`parse_events` turns them into
:class:`HubSpotEvent` objects and reports the ones it cannot read instead of failing the
whole request (HubSpot retries any 4xx/5xx). :func:`sdk_events` says what crm-sync does
with each, in the SDK's terms (:class:`crmsync.sdk.capabilities.WebhookEvent`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from crmsync.sdk import capabilities as sdk
from crmsync.sdk.capabilities import EventAction
from crmsync.sdk.records import ObjectType

__all__ = [
    "EventKind",
    "HubSpotEvent",
    "InvalidEvent",
    "ParsedEvents",
    "WebhookRejected",
    "event_key",
    "parse_events",
    "sdk_event",
    "sdk_events",
    "signature_v1",
    "signature_v2",
    "signature_v3",
    "verify_signature",
]

MAX_TIMESTAMP_SKEW = timedelta(minutes=5)
MAX_RAW_CHARS = 2_000
"""Longest excerpt of an unreadable event kept in :class:`InvalidEvent` (the raw text)."""
_TIMESTAMP = re.compile(r"[0-9]{1,14}")

_V3_ESCAPES = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_V3_ESCAPE = re.compile("|".join(_V3_ESCAPES), re.IGNORECASE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class WebhookRejected(sdk.WebhookRejected):
    """The request is refused: 401 (the default) when it is not a genuine, fresh HubSpot
    request, 400 when its body cannot be read at all."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(status, reason)


# --- signatures ------------------------------------------------------------------------------


def _secret(value: SecretStr | str) -> bytes:
    return (value.get_secret_value() if isinstance(value, SecretStr) else value).encode()


def _v3_uri(uri: str) -> str:
    return _V3_ESCAPE.sub(lambda match: _V3_ESCAPES[match.group(0).upper()], uri)


def signature_v3(
    secret: SecretStr | str, method: str, uri: str, body: bytes, timestamp: str
) -> str:
    """The v3 signature HubSpot sends for this request (base64)."""
    message = method.upper().encode() + _v3_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(_secret(secret), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signature_v2(secret: SecretStr | str, method: str, uri: str, body: bytes) -> str:
    """The v2 signature (hex SHA-256 of secret + method + uri + body)."""
    message = _secret(secret) + method.upper().encode() + uri.encode() + body
    return hashlib.sha256(message).hexdigest()


def signature_v1(secret: SecretStr | str, body: bytes) -> str:
    """The v1 signature (hex SHA-256 of secret + body)."""
    return hashlib.sha256(_secret(secret) + body).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify_signature(
    *,
    secret: SecretStr | str,
    method: str,
    uri: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    allow_legacy: bool = True,
) -> str:
    """Check the request's signature; return the version checked (``v3``, ``v2``, ``v1``).

    ``uri`` is the full URL HubSpot called (scheme, host, path and query, as sent);
    ``body`` the raw bytes; ``headers`` a case-insensitive or plain mapping. Raises
    :class:`WebhookRejected` saying why (never echoing a signature or the secret).
    """
    v3 = _header(headers, "X-HubSpot-Signature-v3")
    if v3 is not None:
        timestamp = _header(headers, "X-HubSpot-Request-Timestamp")
        if timestamp is None or not _TIMESTAMP.fullmatch(timestamp.strip()):
            raise WebhookRejected("a v3 signature without a valid X-HubSpot-Request-Timestamp")
        sent = _EPOCH + timedelta(milliseconds=int(timestamp.strip()))
        if abs(now - sent) > MAX_TIMESTAMP_SKEW:
            raise WebhookRejected(
                f"the request timestamp {sent.isoformat()} is more than 5 minutes from now"
            )
        expected = signature_v3(secret, method, uri, body, timestamp.strip())
        if not hmac.compare_digest(expected.encode(), v3.strip().encode()):
            raise WebhookRejected("the v3 signature does not match")
        return "v3"
    legacy = _header(headers, "X-HubSpot-Signature")
    if legacy is None:
        raise WebhookRejected("the request carries no HubSpot signature")
    if not allow_legacy:
        raise WebhookRejected("only v3 signatures are accepted")
    version = (_header(headers, "X-HubSpot-Signature-Version") or "v1").strip().lower()
    if version == "v1":
        expected = signature_v1(secret, body)
    elif version == "v2":
        expected = signature_v2(secret, method, uri, body)
    else:
        raise WebhookRejected(f"unknown signature version {version[:10]!r}")
    if not hmac.compare_digest(expected.encode(), legacy.strip().lower().encode()):
        raise WebhookRejected(f"the {version} signature does not match")
    return version


# --- events --------------------------------------------------------------------------------


class EventKind(StrEnum):
    """What happened to the object."""

    CREATED = "created"
    CHANGED = "changed"
    DELETED = "deleted"
    PRIVACY_DELETED = "privacy_deleted"
    """A GDPR deletion: forget the personal data, not only the record."""
    MERGED = "merged"
    RESTORED = "restored"
    ASSOCIATION_CHANGED = "association_changed"
    OTHER = "other"
    """A subscription type crm-sync does not act on (it is acknowledged and skipped)."""


_KINDS = {
    "creation": EventKind.CREATED,
    "propertychange": EventKind.CHANGED,
    "deletion": EventKind.DELETED,
    "privacydeletion": EventKind.PRIVACY_DELETED,
    "merge": EventKind.MERGED,
    "restore": EventKind.RESTORED,
    "associationchange": EventKind.ASSOCIATION_CHANGED,
}
_OBJECTS = {"company": ObjectType.COMPANY, "contact": ObjectType.CONTACT}
_OBJECT_TYPE_IDS = {"0-2": ObjectType.COMPANY, "0-1": ObjectType.CONTACT}
"""The generic format's ``objectTypeId`` of the objects crm-sync syncs."""


def _camel(*names: str) -> Any:
    return AliasChoices(*names)


class HubSpotEvent(BaseModel):
    """One webhook event, typed. ``object_type`` is ``None`` for objects crm-sync does not
    sync (deals, tickets ...); ``kind`` is ``OTHER`` for subscription types it ignores."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    subscription_type: str = Field(
        validation_alias=_camel("subscriptionType", "eventType", "subscription_type")
    )
    object_type: ObjectType | None = None
    kind: EventKind = EventKind.OTHER
    object_id: str = Field(validation_alias=_camel("objectId", "object_id"))
    occurred_at: datetime = Field(validation_alias=_camel("occurredAt", "occurred_at"))
    event_id: str | None = Field(default=None, validation_alias=_camel("eventId", "event_id"))
    """Not unique: HubSpot reuses event ids; deduplicate on the whole event instead."""
    portal_id: str | None = Field(default=None, validation_alias=_camel("portalId", "portal_id"))
    app_id: str | None = Field(default=None, validation_alias=_camel("appId", "app_id"))
    attempt_number: int = Field(
        default=0, validation_alias=_camel("attemptNumber", "attempt_number")
    )
    change_source: str | None = Field(
        default=None, validation_alias=_camel("changeSource", "change_source")
    )
    property_name: str | None = Field(
        default=None, validation_alias=_camel("propertyName", "property_name")
    )
    property_value: str | None = Field(
        default=None, validation_alias=_camel("propertyValue", "property_value")
    )
    primary_object_id: str | None = Field(
        default=None, validation_alias=_camel("primaryObjectId", "primary_object_id")
    )
    merged_object_ids: tuple[str, ...] = Field(
        default=(), validation_alias=_camel("mergedObjectIds", "merged_object_ids")
    )
    new_object_id: str | None = Field(
        default=None, validation_alias=_camel("newObjectId", "new_object_id")
    )
    association_type: str | None = Field(
        default=None, validation_alias=_camel("associationType", "association_type")
    )
    from_object_id: str | None = Field(
        default=None, validation_alias=_camel("fromObjectId", "from_object_id")
    )
    to_object_id: str | None = Field(
        default=None, validation_alias=_camel("toObjectId", "to_object_id")
    )
    association_removed: bool = Field(
        default=False, validation_alias=_camel("associationRemoved", "association_removed")
    )
    is_primary_association: bool = Field(
        default=False, validation_alias=_camel("isPrimaryAssociation", "is_primary_association")
    )

    @model_validator(mode="before")
    @classmethod
    def _classify(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("an event must be a JSON object")
        name = data.get("subscriptionType", data.get("eventType", data.get("subscription_type")))
        if not isinstance(name, str) or "." not in name:
            raise ValueError("the event has no subscriptionType such as contact.creation")
        prefix, _, action = name.partition(".")
        kind = _KINDS.get(action.lower(), EventKind.OTHER)
        if prefix.lower() == "object":  # the generic format names the object apart
            object_type = _OBJECT_TYPE_IDS.get(str(data.get("objectTypeId", "")).strip())
        else:
            object_type = _OBJECTS.get(prefix.lower())
        found = {**data, "object_type": object_type, "kind": kind}
        if kind is EventKind.ASSOCIATION_CHANGED and "objectId" not in data:
            found.setdefault("object_id", data.get("fromObjectId"))
        return found

    @field_validator(
        "object_id", "event_id", "portal_id", "app_id", "primary_object_id", "new_object_id",
        "from_object_id", "to_object_id",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _id_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("property_value", mode="before")
    @classmethod
    def _value_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if isinstance(value, int | float) else value

    @field_validator("merged_object_ids", mode="before")
    @classmethod
    def _ids_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return tuple(str(item) for item in value)
        return value

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _epoch_ms(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return _EPOCH + timedelta(milliseconds=value)
        return value

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def survivor_id(self) -> str:
        """For a merge: the record that remains (a merge may mint a new id)."""
        return self.new_object_id or self.primary_object_id or self.object_id


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """An array item that is not a readable event, and why."""

    raw: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedEvents:
    """The events of one webhook request, and the items that could not be read."""

    events: list[HubSpotEvent] = field(default_factory=list)
    invalid: list[InvalidEvent] = field(default_factory=list)


def parse_events(body: bytes | str) -> ParsedEvents:
    """Parse a webhook body (a JSON array of events; a single object is taken as one event).

    Raises :class:`WebhookRejected` when the body is not JSON at all.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise WebhookRejected("the body is not JSON", 400) from None
    if not isinstance(payload, list | dict):
        raise WebhookRejected("the body is neither an array of events nor an event", 400)
    items = payload if isinstance(payload, list) else [payload]
    parsed = ParsedEvents()
    for item in items:
        try:
            parsed.events.append(HubSpotEvent.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, p['loc'])) or 'event'}: {p['msg']}" for p in exc.errors()
            )
            raw = json.dumps(item, ensure_ascii=False)
            parsed.invalid.append(InvalidEvent(raw[:MAX_RAW_CHARS], problems[:MAX_RAW_CHARS]))
    return parsed


# --- what crm-sync does with them -------------------------------------------------------------

_DELETIONS = frozenset({EventKind.DELETED, EventKind.PRIVACY_DELETED})
_UPSERTS = frozenset({EventKind.CREATED, EventKind.CHANGED, EventKind.RESTORED})
_SIDES = {"CONTACT": ObjectType.CONTACT, "COMPANY": ObjectType.COMPANY}
_CONTACT_COMPANY = (
    [ObjectType.CONTACT, ObjectType.COMPANY],
    [ObjectType.COMPANY, ObjectType.CONTACT],
)


def event_key(event: HubSpotEvent) -> str:
    """The event's identity for de-duplication: a re-delivery (another ``attemptNumber``)
    has the same key; two events sharing an ``eventId`` (HubSpot reuses them) do not."""
    parts = [
        event.subscription_type,
        event.object_id,
        event.occurred_at.isoformat(),
        event.event_id,
        event.property_name,
        event.association_type,
        event.from_object_id,
        event.to_object_id,
        event.association_removed,
    ]
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
    return f"hubspot:{digest}"


def _ignored(event: HubSpotEvent, key: str) -> sdk.WebhookEvent:
    return sdk.WebhookEvent(
        key, EventAction.IGNORE, event.object_type, event.object_id, event.occurred_at
    )


def _association(event: HubSpotEvent, key: str) -> sdk.WebhookEvent:
    """A contact-company association added or removed: fetch the contact (and its company)."""
    ends = (event.association_type or "").upper().split("_TO_")
    sides = [_SIDES.get(end.partition("_")[0]) for end in ends]
    from_id, to_id = event.from_object_id, event.to_object_id
    if from_id is None or to_id is None or sides not in _CONTACT_COMPANY:
        return _ignored(event, key)
    contact_id, company_id = (
        (from_id, to_id) if sides[0] is ObjectType.CONTACT else (to_id, from_id)
    )
    return sdk.WebhookEvent(
        key,
        EventAction.UPSERT,
        ObjectType.CONTACT,
        contact_id,
        event.occurred_at,
        related_ids=(company_id,),
    )


def sdk_event(event: HubSpotEvent) -> sdk.WebhookEvent:
    """What crm-sync does with one HubSpot event.

    Creations, property changes and restores fetch the record (UPSERT); deletions and
    privacy deletions mark it deleted (DELETE); a merge folds every other id it names into
    the survivor (MERGE); a contact-company association change fetches the contact with the
    company as a related record; other objects and subscription types are IGNOREd.
    """
    key = event_key(event)
    if event.object_type is None:
        return _ignored(event, key)
    if event.kind is EventKind.ASSOCIATION_CHANGED:
        return _association(event, key)
    if event.kind is EventKind.MERGED:
        survivor = event.survivor_id
        named = (*event.merged_object_ids, event.primary_object_id, event.object_id)
        merged = tuple(dict.fromkeys(i for i in named if i and i != survivor))
        return sdk.WebhookEvent(
            key, EventAction.MERGE, event.object_type, survivor, event.occurred_at, merged
        )
    if event.kind in _DELETIONS:
        action = EventAction.DELETE
    elif event.kind in _UPSERTS:
        action = EventAction.UPSERT
    else:
        return _ignored(event, key)
    return sdk.WebhookEvent(key, action, event.object_type, event.object_id, event.occurred_at)


def sdk_events(parsed: ParsedEvents) -> sdk.ParsedWebhook:
    """A parsed delivery in the SDK's terms (unreadable items stay reported, not raised)."""
    return sdk.ParsedWebhook(
        events=[sdk_event(event) for event in parsed.events],
        invalid=[sdk.InvalidWebhookEvent(item.raw, item.reason) for item in parsed.invalid],
    )
