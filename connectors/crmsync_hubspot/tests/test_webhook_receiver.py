"""The connector as the SDK's WebhookReceiver: signed deliveries in, SDK events out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.sdk import capabilities
from crmsync.sdk.capabilities import (
    EventAction,
    WebhookEvent,
    WebhookReceiver,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
    WriteBack,
)
from crmsync.sdk.records import ObjectType
from crmsync_hubspot import plugin
from crmsync_hubspot.connector import HubSpotConnector
from crmsync_hubspot.tests.doubles import make_config, make_connector
from crmsync_hubspot.webhooks import signature_v1, signature_v3

SECRET = "client-secret-3f1c9b7e-4d2a-4e8b-9c1d-000000000001"
URL = "https://crm-sync.example.com/webhooks/hubspot"
RECEIVED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OCCURRED_MS = 1780315200000  # 2026-06-01T12:00:00Z


def connector(**overrides: Any) -> HubSpotConnector:
    return make_connector(make_config(webhook_secret=SECRET, **overrides))


def delivery(
    events: object,
    *,
    sent: datetime = RECEIVED,
    secret: str = SECRET,
    body: bytes | None = None,
    received: datetime = RECEIVED,
) -> WebhookRequest:
    """A v3-signed POST as HubSpot sends it."""
    raw = body if body is not None else json.dumps(events).encode()
    timestamp = str(int(sent.timestamp() * 1000))
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature_v3(secret, "POST", URL, raw, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }
    return WebhookRequest("POST", URL, headers, raw, received)


def event(subscription: str, object_id: int = 101, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": 7,
        "subscriptionId": 1,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": OCCURRED_MS,
        "subscriptionType": subscription,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM_UI",
    } | fields


def parsed_one(payload: dict[str, Any]) -> WebhookEvent:
    [parsed] = connector().parse(delivery([payload])).events
    return parsed


# --- verify ----------------------------------------------------------------------------------


def test_a_genuine_v3_delivery_is_accepted() -> None:
    connector().verify(delivery([event("contact.creation")]))  # no WebhookRejected


def test_a_delivery_signed_with_another_secret_is_refused_with_401() -> None:
    forged = delivery([event("contact.creation")], secret="not-the-client-secret")

    with pytest.raises(WebhookRejected) as refused:
        connector().verify(forged)

    assert refused.value.status == 401
    assert "does not match" in refused.value.reason
    assert SECRET not in refused.value.reason


def test_a_delivery_whose_body_was_changed_after_signing_is_refused_with_401() -> None:
    genuine = delivery([event("contact.creation")])
    tampered = WebhookRequest(
        genuine.method, genuine.url, genuine.headers, genuine.body.replace(b"101", b"999"),
        genuine.received_at,
    )  # fmt: skip

    with pytest.raises(WebhookRejected) as refused:
        connector().verify(tampered)

    assert refused.value.status == 401


def test_a_delivery_signed_more_than_five_minutes_before_it_arrived_is_refused_with_401() -> None:
    replayed = delivery([event("contact.creation")], sent=RECEIVED - timedelta(minutes=6))

    with pytest.raises(WebhookRejected) as refused:
        connector().verify(replayed)

    assert refused.value.status == 401
    assert "5 minutes" in refused.value.reason


@pytest.mark.parametrize("timestamp", ["9" * 40, "9" * 5000, "١٢٣", "-5", ""])
def test_an_unreadable_timestamp_is_refused_with_401_not_a_crash(timestamp: str) -> None:
    genuine = delivery([event("contact.creation")])
    headers = dict(genuine.headers) | {"X-HubSpot-Request-Timestamp": timestamp}
    request = WebhookRequest("POST", URL, headers, genuine.body, RECEIVED)

    with pytest.raises(WebhookRejected) as refused:
        connector().verify(request)

    assert refused.value.status == 401


def test_a_legacy_v1_signature_is_still_accepted() -> None:
    body = json.dumps([event("company.creation")]).encode()
    request = WebhookRequest(
        "POST", URL, {"X-HubSpot-Signature": signature_v1(SECRET, body)}, body, RECEIVED
    )

    connector().verify(request)  # no WebhookRejected


def test_without_a_webhook_secret_every_delivery_is_refused_with_401() -> None:
    with pytest.raises(WebhookRejected, match="no webhook_secret") as refused:
        make_connector(make_config()).verify(delivery([event("contact.creation")]))

    assert refused.value.status == 401


def test_a_public_app_checks_signatures_with_its_oauth_client_secret_by_default() -> None:
    oauth = {"client_id": "app", "client_secret": SECRET, "refresh_token": "refresh"}
    app = make_connector(make_config(access_token=None, oauth=oauth))

    app.verify(delivery([event("contact.creation")]))  # no WebhookRejected


# --- parse -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"<xml/>", b"\xff\xfe not utf-8", b"[" * 100_000, b"42", b'"contact.creation"']
)
def test_a_body_that_is_not_an_array_of_events_is_refused_with_400(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as refused:
        connector().parse(delivery(None, body=body))

    assert refused.value.status == 400


@pytest.mark.parametrize(
    "subscription", ["contact.creation", "contact.propertyChange", "company.restore"]
)
def test_creations_changes_and_restores_fetch_the_record(subscription: str) -> None:
    parsed = parsed_one(event(subscription, propertyName="email", propertyValue="x"))

    assert parsed.action is EventAction.UPSERT
    assert parsed.external_id == "101"
    assert parsed.occurred_at == RECEIVED


@pytest.mark.parametrize("subscription", ["company.deletion", "contact.privacyDeletion"])
def test_deletions_and_privacy_deletions_mark_the_record_deleted(subscription: str) -> None:
    parsed = parsed_one(event(subscription))

    assert (parsed.action, parsed.external_id) == (EventAction.DELETE, "101")


def test_the_object_type_comes_from_the_subscription_type() -> None:
    assert parsed_one(event("company.creation")).object_type is ObjectType.COMPANY
    assert parsed_one(event("contact.creation")).object_type is ObjectType.CONTACT


def test_the_generic_object_format_names_the_object_by_its_type_id() -> None:
    company = parsed_one(event("object.propertyChange", objectTypeId="0-2"))
    contact = parsed_one(event("object.deletion", objectTypeId="0-1"))
    deal = parsed_one(event("object.creation", objectTypeId="0-3"))

    assert (company.action, company.object_type) == (EventAction.UPSERT, ObjectType.COMPANY)
    assert (contact.action, contact.object_type) == (EventAction.DELETE, ObjectType.CONTACT)
    assert deal.action is EventAction.IGNORE


def test_a_merge_folds_every_other_id_it_names_into_the_survivor() -> None:
    kept = parsed_one(event("contact.merge", 100, primaryObjectId=100, mergedObjectIds=[200, 300]))
    minted = parsed_one(
        event("company.merge", 100, primaryObjectId=100, mergedObjectIds=[200], newObjectId=400)
    )

    assert (kept.action, kept.external_id, kept.merged_ids) == (
        EventAction.MERGE, "100", ("200", "300")
    )  # fmt: skip
    assert (minted.external_id, minted.merged_ids) == ("400", ("200", "100"))


@pytest.mark.parametrize(
    ("subscription", "association", "ends"),
    [
        ("contact.associationChange", "CONTACT_TO_COMPANY", (50, 10)),
        ("company.associationChange", "COMPANY_TO_CONTACT", (10, 50)),
    ],
)
def test_an_association_change_fetches_the_contact_with_its_company(
    subscription: str, association: str, ends: tuple[int, int]
) -> None:
    payload = event(subscription, associationType=association, fromObjectId=ends[0],
                    toObjectId=ends[1], associationRemoved=True)  # fmt: skip
    del payload["objectId"]

    parsed = parsed_one(payload)

    assert (parsed.action, parsed.object_type) == (EventAction.UPSERT, ObjectType.CONTACT)
    assert (parsed.external_id, parsed.related_ids) == ("50", ("10",))


@pytest.mark.parametrize(
    "payload",
    [
        event("deal.creation"),
        event("contact.unknownThing"),
        event("contact.associationChange", associationType="CONTACT_TO_DEAL", fromObjectId=1,
              toObjectId=2),
        event("company.associationChange", associationType="COMPANY_TO_COMPANY", fromObjectId=1,
              toObjectId=2),
    ],
)  # fmt: skip
def test_other_objects_and_subscriptions_are_acknowledged_and_ignored(
    payload: dict[str, Any],
) -> None:
    assert parsed_one(payload).action is EventAction.IGNORE


def test_a_redelivery_has_the_same_key() -> None:
    first = parsed_one(event("contact.propertyChange", propertyName="email", attemptNumber=0))
    again = parsed_one(event("contact.propertyChange", propertyName="email", attemptNumber=3))

    assert first.key == again.key


def test_events_sharing_an_event_id_keep_apart_keys() -> None:
    base = event("contact.propertyChange", propertyName="email")
    variants = [
        base,
        base | {"objectId": 102},
        base | {"propertyName": "firstname"},
        base | {"occurredAt": OCCURRED_MS + 1},
        base | {"subscriptionType": "company.propertyChange"},
    ]

    keys = {parsed.key for parsed in connector().parse(delivery(variants)).events}

    assert len(keys) == len(variants)


def test_unreadable_items_are_reported_and_the_rest_of_the_delivery_is_parsed() -> None:
    huge = {"subscriptionType": "contact.creation", "junk": "x" * 50_000}

    parsed = connector().parse(delivery([event("contact.creation"), huge, "not an event"]))

    assert [e.external_id for e in parsed.events] == ["101"]
    assert len(parsed.invalid) == 2
    assert all(len(item.raw) <= 2_000 for item in parsed.invalid)


# --- acknowledge and capabilities ---------------------------------------------------------


def test_an_accepted_delivery_is_acknowledged_with_an_empty_200() -> None:
    receiver = connector()
    parsed = receiver.parse(delivery([event("contact.creation")]))

    assert receiver.acknowledge(parsed) == WebhookResponse(200, b"")


def test_the_plugin_says_the_connector_takes_webhooks_and_writes_back() -> None:
    assert plugin.connector_class is HubSpotConnector
    assert capabilities.capabilities_of(HubSpotConnector) == (
        "sync", "fetch", "write-back", "webhooks"
    )  # fmt: skip
    assert isinstance(connector(), WebhookReceiver)
    assert isinstance(connector(), WriteBack)
