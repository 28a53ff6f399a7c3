"""Salesforce Outbound Messages: verification, typed events and the SOAP acknowledgement.

An Outbound Message is a SOAP request (``text/xml``) carrying up to 100
``<Notification>`` elements, each with its own ``<Id>`` (kept across re-deliveries) and
an ``<sObject xsi:type="sf:Account">`` holding the fields chosen for the message
(https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_understanding.htm).
Outbound Messages are not signed, so a delivery is accepted only when

- it carries the shared secret: as the Basic auth password (register the endpoint as
  ``https://crm-sync:SECRET@host/...``) or as the URL's last path segment
  (``https://host/webhooks/salesforce/SECRET``), compared in constant time; and
- its ``<OrganizationId>`` is the configured org's (15 or 18 characters; compared on the
  first 15, which are case-sensitive).

Salesforce retries a delivery it does not see acknowledged for 24 hours, so every
accepted delivery is answered with ``<Ack>true</Ack>``, also when some notifications could
not be read (they are reported as invalid, and a later poll picks the records up).

The body is parsed with defusedxml: entity declarations and DTDs are refused, so a
crafted body cannot expand entities or read files.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import xml.etree.ElementTree as ET  # types and ParseError only; parsing is defusedxml's
from datetime import UTC, datetime

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from crmsync.sdk.capabilities import (
    EventAction,
    InvalidWebhookEvent,
    ParsedWebhook,
    WebhookEvent,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
)
from crmsync.sdk.records import ObjectType
from crmsync_salesforce.config import WebhookSettings

__all__ = ["ACKNOWLEDGEMENT", "MAX_BODY_BYTES", "OutboundMessages", "notifications"]

MAX_BODY_BYTES = 2_000_000
_OUTBOUND = "{http://soap.sforce.com/2005/09/outbound}"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_OBJECT_TYPES = {"account": ObjectType.COMPANY, "contact": ObjectType.CONTACT}

ACKNOWLEDGEMENT = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack>"
    b"</notificationsResponse>"
    b"</soapenv:Body>"
    b"</soapenv:Envelope>"
)
"""What Salesforce expects for a delivered message (anything else is retried)."""


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            text = (child.text or "").strip()
            return text or None
    return None


def _envelope(body: bytes) -> ET.Element:
    if len(body) > MAX_BODY_BYTES:
        raise WebhookRejected(413, f"the message is over {MAX_BODY_BYTES} bytes")
    try:
        root = SafeET.fromstring(body)
    except DefusedXmlException:
        raise WebhookRejected(400, "the message declares entities or a DTD") from None
    except ET.ParseError:
        raise WebhookRejected(400, "the message is not well-formed XML") from None
    return root


def notifications(root: ET.Element) -> ET.Element:
    """The ``<notifications>`` element of an Outbound Message envelope."""
    found = root.find(f".//{_OUTBOUND}notifications")
    if found is None:
        raise WebhookRejected(400, "the message holds no Outbound Message notifications")
    return found


def _secret_in(request: WebhookRequest) -> str | None:
    authorization = request.header("Authorization") or ""
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() == "basic" and encoded:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def _path_secret(request: WebhookRequest) -> str:
    path = request.url.split("?", 1)[0].rstrip("/")
    return path.rpartition("/")[2]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _occurred(sobject: ET.Element) -> datetime | None:
    text = _child_text(sobject, "SystemModstamp") or _child_text(sobject, "LastModifiedDate")
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _event(notification: ET.Element) -> WebhookEvent | InvalidWebhookEvent:
    raw = ET.tostring(notification, encoding="unicode")[:2_000]
    key = _child_text(notification, "Id")
    sobject = next((c for c in notification if _local(c.tag) == "sObject"), None)
    if key is None or sobject is None:
        return InvalidWebhookEvent(raw, "a notification without its Id or sObject")
    kind = _local(sobject.get(_XSI_TYPE, "")).partition(":")[2] or sobject.get(_XSI_TYPE, "")
    record_id = _child_text(sobject, "Id")
    if record_id is None:
        return InvalidWebhookEvent(
            raw, f"a {kind or 'record'} notification without the record's Id"
        )
    occurred = _occurred(sobject)
    if kind.casefold() == "accountcontactrelation":
        contact = _child_text(sobject, "ContactId")
        account = _child_text(sobject, "AccountId")
        if contact is None:
            return InvalidWebhookEvent(
                raw, "an AccountContactRelation notification without ContactId"
            )
        related = (account,) if account else ()
        return WebhookEvent(
            key, EventAction.UPSERT, ObjectType.CONTACT, contact, occurred, (), related
        )
    object_type = _OBJECT_TYPES.get(kind.casefold())
    if object_type is None:
        return WebhookEvent(key, EventAction.IGNORE, None, record_id, occurred)
    deleted = (_child_text(sobject, "IsDeleted") or "").casefold() == "true"
    action = EventAction.DELETE if deleted else EventAction.UPSERT
    return WebhookEvent(key, action, object_type, record_id, occurred)


class OutboundMessages:
    """The :class:`~crmsync.sdk.capabilities.WebhookReceiver` side of the connector."""

    def __init__(self, settings: WebhookSettings) -> None:
        self._settings = settings

    def verify(self, request: WebhookRequest) -> None:
        """Refuse (401) a delivery without the shared secret, (403) one from another org."""
        settings = self._settings
        if settings.secret is None or settings.organization_id is None:
            raise WebhookRejected(
                401, "Outbound Messages are not set up (webhooks.secret and organization_id)"
            )
        expected = settings.secret.get_secret_value()
        given = _secret_in(request)
        by_basic = given is not None and _same(given, expected)
        if not by_basic and not _same(_path_secret(request), expected):
            raise WebhookRejected(401, "the message does not carry the shared secret")
        organization = _child_text(notifications(_envelope(request.body)), "OrganizationId")
        if organization is None or not _same(organization[:15], settings.organization_id[:15]):
            raise WebhookRejected(403, "the message comes from another Salesforce org")

    def parse(self, request: WebhookRequest) -> ParsedWebhook:
        """Each notification as an event; unreadable ones reported, not fatal."""
        found = notifications(_envelope(request.body))
        events: list[WebhookEvent] = []
        invalid: list[InvalidWebhookEvent] = []
        for element in found:
            if _local(element.tag) != "Notification":
                continue
            item = _event(element)
            (events if isinstance(item, WebhookEvent) else invalid).append(item)  # type: ignore[arg-type]
        return ParsedWebhook(tuple(events), tuple(invalid))

    def acknowledge(self, parsed: ParsedWebhook) -> WebhookResponse:
        """Salesforce's SOAP acknowledgement (``<Ack>true</Ack>``)."""
        return WebhookResponse(200, ACKNOWLEDGEMENT, "text/xml; charset=utf-8")
