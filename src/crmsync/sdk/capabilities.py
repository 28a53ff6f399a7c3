"""What a connector may do besides reading: optional capabilities the engine discovers.

Every connector reads (:class:`~crmsync.sdk.connector.Connector`). Some also take
webhook deliveries from their CRM, or write values (the billing customer id) back to
the CRM. A connector says so by implementing the protocols below; the webhook service
and the push find them with ``isinstance`` (the protocols are runtime-checkable), so
every connector is used the same way and the engine names no connector.

Webhook requests travel as plain data (:class:`WebhookRequest`), never as a web
framework's request object, so a connector's verification and parsing are pure
functions of bytes and headers and are tested without a server:

- :meth:`WebhookReceiver.verify` raises :class:`WebhookRejected` (with the HTTP
  status the service answers: 401 for a bad or missing signature or a timestamp
  outside the replay window, 400 for a body that cannot be read) or returns ``None``;
- :meth:`WebhookReceiver.parse` turns a verified body into typed
  :class:`WebhookEvent` objects (a payload is a hint: the service fetches the current
  records from the CRM before applying anything);
- :meth:`WebhookReceiver.acknowledge` is the answer the CRM expects (an empty 200,
  or Salesforce's SOAP acknowledgement).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from crmsync.sdk.records import ObjectType

__all__ = [
    "EventAction",
    "InvalidWebhookEvent",
    "ParsedWebhook",
    "WebhookEvent",
    "WebhookReceiver",
    "WebhookRejected",
    "WebhookRequest",
    "WebhookResponse",
    "WriteBack",
    "WriteBackResult",
    "WriteBackUpdate",
    "capabilities_of",
]


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One HTTP delivery as received: what a connector needs to verify and parse it."""

    method: str
    url: str
    """The full URL the CRM called (scheme, host, path and query), as signatures cover it."""
    headers: Mapping[str, str]
    """Header names are matched without regard to case by the receiver."""
    body: bytes
    received_at: datetime
    """When the service received it (aware UTC): the reference for replay windows."""

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


class WebhookRejected(Exception):
    """The delivery is refused; ``status`` is the HTTP status to answer (4xx only)."""

    def __init__(self, status: int, reason: str) -> None:
        if not 400 <= status < 500:
            raise ValueError("a rejected webhook is answered with a 4xx status")
        super().__init__(reason)
        self.status = status
        self.reason = reason


class EventAction(StrEnum):
    """What the service does with an event."""

    UPSERT = "upsert"
    """The record was created or changed (properties or associations): fetch and apply it."""
    DELETE = "delete"
    """The record was deleted or archived in the CRM: fetch to confirm, then mark it deleted."""
    MERGE = "merge"
    """Records were merged: ``merged_ids`` fold into ``external_id`` (the survivor)."""
    IGNORE = "ignore"
    """Acknowledged and skipped (an object or subscription crm-sync does not sync)."""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event of a delivery, in the SDK's terms."""

    key: str
    """Identity for de-duplication within the connector (a re-delivery has the same key)."""
    action: EventAction
    object_type: ObjectType | None
    external_id: str
    """The record to fetch; for a merge, the survivor."""
    occurred_at: datetime | None = None
    merged_ids: tuple[str, ...] = ()
    related_ids: tuple[str, ...] = ()
    """Other records the event touches (an association's other side), fetched as well."""


@dataclass(frozen=True, slots=True)
class InvalidWebhookEvent:
    """An item of a delivery that is not a readable event, and why."""

    raw: str
    reason: str


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    """The events of one delivery, and the items that could not be read."""

    events: Sequence[WebhookEvent] = ()
    invalid: Sequence[InvalidWebhookEvent] = ()


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """The answer a CRM expects for an accepted delivery."""

    status: int = 200
    body: bytes = b""
    media_type: str = "text/plain"


@runtime_checkable
class WebhookReceiver(Protocol):
    """A connector that takes webhook deliveries from its CRM."""

    def verify(self, request: WebhookRequest) -> None:
        """Raise :class:`WebhookRejected` unless the request comes from the CRM, now.

        Signatures and shared secrets are compared in constant time; a timestamp
        outside the replay window is refused with 401.
        """
        ...

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        """The typed events of a verified delivery. Raise :class:`WebhookRejected` (400)
        when the body as a whole cannot be read."""
        ...

    def acknowledge(self, parsed: ParsedWebhook) -> WebhookResponse:
        """The answer for an accepted delivery."""
        ...


@dataclass(frozen=True, slots=True)
class WriteBackUpdate:
    """Values to write to one CRM record (a company) after a push."""

    object_type: ObjectType
    external_id: str
    values: Mapping[str, str]
    """Field names as crm-sync knows them (``billing_customer_id``); the connector maps
    each to the CRM field its config names."""


@dataclass(slots=True)
class WriteBackResult:
    """Which records were written, and why the others were not (per record)."""

    written: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class WriteBack(Protocol):
    """A connector that writes values back to its CRM's records, in batches."""

    def write_back(self, updates: Sequence[WriteBackUpdate]) -> WriteBackResult:
        """Write every update, batched as the CRM allows; never raise for one bad record."""
        ...


def capabilities_of(connector: object) -> tuple[str, ...]:
    """What a connector (an instance, or its class) can do, for ``crm-sync connectors
    list``: sync, fetch, and the optional capabilities it implements."""
    cls = connector if isinstance(connector, type) else type(connector)
    found = ["sync", "fetch"]
    if issubclass(cls, WriteBack):
        found.append("write-back")
    if issubclass(cls, WebhookReceiver):
        found.append("webhooks")
    return tuple(found)
