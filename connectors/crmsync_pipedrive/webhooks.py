"""Pipedrive webhooks v2: Basic-auth verification and parsing into the SDK's typed events.

Pipedrive signs nothing: a webhook carries the HTTP Basic credentials set when it was
created (``http_auth_user``/``http_auth_password``). :func:`verify` compares the user
name and the password in constant time (``hmac.compare_digest``, both compared every
time) and refuses a request without them with 401.

A delivery is one JSON object ``{"meta": {...}, "data": {...} | null, "previous": ...}``
(https://pipedrive.readme.io/docs/guide-for-webhooks-v2):

- ``meta.action`` ``create``/``change`` -> :attr:`EventAction.UPSERT`, ``delete`` ->
  :attr:`EventAction.DELETE` (``data`` is null); webhooks v1's ``added``/``updated``/
  ``deleted``/``merged`` are read too;
- a merge arrives as a ``delete`` of the loser (``meta.merged_to_id``) and a ``change``
  of the survivor (``meta.merged_from_id``): either becomes :attr:`EventAction.MERGE`
  with the survivor as ``external_id`` and the loser in ``merged_ids``;
- ``meta.entity`` (v1: ``meta.object``) ``organization``/``person`` map to companies and
  contacts; other entities (deals, leads ...) are acknowledged and ignored;
- the de-duplication key is the entity, its id, ``meta.id`` (the event's id) and
  ``meta.timestamp``: a re-delivery (a higher ``meta.attempt``) has the same key.

Pipedrive retries a delivery that fails (3, 30, 150 s) and bans a webhook that keeps
failing, losing its events: answer quickly, and keep the periodic sync running.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from datetime import UTC, datetime
from typing import Any

from crmsync.sdk.capabilities import (
    EventAction,
    InvalidWebhookEvent,
    ParsedWebhook,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
)
from crmsync.sdk.records import ObjectType
from crmsync_pipedrive.config import WebhookSettings

__all__ = ["parse", "verify"]

_ACTIONS = {
    "create": EventAction.UPSERT,
    "added": EventAction.UPSERT,
    "change": EventAction.UPSERT,
    "updated": EventAction.UPSERT,
    "delete": EventAction.DELETE,
    "deleted": EventAction.DELETE,
    "merged": EventAction.MERGE,
}
_ENTITIES = {"organization": ObjectType.COMPANY, "person": ObjectType.CONTACT}
_RAW_CHARS = 2_000


def verify(request: WebhookRequest, settings: WebhookSettings | None) -> None:
    """Raise :class:`WebhookRejected` (401) unless the request carries the webhook's
    Basic-auth credentials."""
    if settings is None:
        raise WebhookRejected(401, "no webhook credentials are configured for this connector")
    header = request.header("Authorization") or ""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise WebhookRejected(401, "the request carries no Basic credentials")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(401, "the Basic credentials are not base64") from None
    user, separator, password = decoded.partition(b":")
    user_ok = hmac.compare_digest(user, settings.username.encode())
    password_ok = hmac.compare_digest(password, settings.password.get_secret_value().encode())
    if not (separator and user_ok and password_ok):
        raise WebhookRejected(401, "the Basic credentials do not match")


def _id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value).strip() or None


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 10_000_000_000 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def _event(payload: dict[str, Any]) -> WebhookEvent:
    meta = payload.get("meta")
    if not isinstance(meta, dict):
        raise ValueError("the delivery has no meta object")
    entity = str(meta.get("entity") or meta.get("object") or "").strip().lower()
    action = _ACTIONS.get(str(meta.get("action") or "").strip().lower())
    found = payload.get("data")
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    entity_id = _id(meta.get("entity_id")) or _id(meta.get("id_of_entity")) or _id(data.get("id"))
    if action is None:
        raise ValueError(f"meta.action {str(meta.get('action'))[:30]!r} is not one Pipedrive sends")
    if entity_id is None:
        raise ValueError("meta.entity_id is missing")
    raw_timestamp = meta.get("timestamp")
    key = f"{entity}/{entity_id}/{meta.get('id') or '-'}/{raw_timestamp or '-'}"
    object_type = _ENTITIES.get(entity)
    occurred_at = _timestamp(raw_timestamp)
    if object_type is None:
        return WebhookEvent(key, EventAction.IGNORE, None, entity_id, occurred_at)
    merged_to, merged_from = _id(meta.get("merged_to_id")), _id(meta.get("merged_from_id"))
    if merged_to is not None:  # the loser's delete: fold it into the survivor
        return WebhookEvent(
            key, EventAction.MERGE, object_type, merged_to, occurred_at, (entity_id,)
        )
    if merged_from is not None:  # the survivor's change
        return WebhookEvent(
            key, EventAction.MERGE, object_type, entity_id, occurred_at, (merged_from,)
        )
    return WebhookEvent(key, action, object_type, entity_id, occurred_at)


def parse(request: WebhookRequest) -> ParsedWebhook:
    """The events of a verified delivery; a body that is not a JSON object is refused (400)."""
    try:
        payload = json.loads(request.body)
    except ValueError:
        raise WebhookRejected(400, "the body is not JSON") from None
    items = payload if isinstance(payload, list) else [payload]
    events: list[WebhookEvent] = []
    invalid: list[InvalidWebhookEvent] = []
    for item in items:
        try:
            if not isinstance(item, dict):
                raise ValueError("a delivery must be a JSON object")
            events.append(_event(item))
        except ValueError as exc:
            raw = json.dumps(item, ensure_ascii=False)[:_RAW_CHARS]
            invalid.append(InvalidWebhookEvent(raw, str(exc)))
    return ParsedWebhook(events=events, invalid=invalid)
