"""Webhook signatures (HubSpot's published vectors) and typed events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from crmsync.sdk.records import ObjectType
from crmsync_hubspot.webhooks import (
    EventKind,
    WebhookRejected,
    parse_events,
    signature_v1,
    signature_v2,
    signature_v3,
    verify_signature,
)

# HubSpot's published examples (the SDKs' tests and the request validation docs).
SECRET = SecretStr("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy")
URI = "https://www.example.com/webhook_uri"
BODY = b"{'example_field':'example_value'}"
TIMESTAMP = "1693657560000"
SENT = datetime(2023, 9, 2, 12, 26, tzinfo=UTC)
V3 = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="
V1 = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
V2 = "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
V2_GET = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
V1_EVENTS = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
V1_EVENTS_SIGNATURE = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"


def v3_headers(signature: str = V3, timestamp: str = TIMESTAMP) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp}


def verify(
    headers: dict[str, str],
    *,
    body: bytes = BODY,
    uri: str = URI,
    method: str = "POST",
    now: datetime = SENT,
    allow_legacy: bool = True,
) -> str:
    return verify_signature(
        secret=SECRET, method=method, uri=uri, body=body, headers=headers, now=now,
        allow_legacy=allow_legacy,
    )  # fmt: skip


def test_the_signatures_match_hubspots_published_vectors() -> None:
    assert signature_v3(SECRET, "POST", URI, BODY, TIMESTAMP) == V3
    assert signature_v1(SECRET, BODY) == V1
    assert signature_v2(SECRET, "POST", URI, BODY) == V2
    assert signature_v2(SECRET, "GET", URI, b"") == V2_GET
    assert signature_v1(SECRET, V1_EVENTS) == V1_EVENTS_SIGNATURE


def test_a_genuine_v3_request_is_accepted_within_five_minutes_either_way() -> None:
    assert verify(v3_headers(), now=SENT + timedelta(minutes=4, seconds=59)) == "v3"
    assert verify(v3_headers(), now=SENT - timedelta(minutes=4)) == "v3"


def test_header_names_are_matched_without_regard_to_case() -> None:
    headers = {"x-hubspot-signature-v3": V3, "x-hubspot-request-timestamp": TIMESTAMP}
    assert verify(headers) == "v3"


@pytest.mark.parametrize("skew", [timedelta(minutes=5, seconds=1), -timedelta(minutes=6)])
def test_a_v3_request_more_than_five_minutes_from_now_is_rejected(skew: timedelta) -> None:
    with pytest.raises(WebhookRejected, match="more than 5 minutes"):
        verify(v3_headers(), now=SENT + skew)


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (v3_headers(), b"{'example_field':'other_value'}", "does not match"),
        (v3_headers(timestamp="1693657560001"), BODY, "does not match"),
        (v3_headers(signature=V3.lower()), BODY, "does not match"),
        ({"X-HubSpot-Signature-v3": V3}, BODY, "X-HubSpot-Request-Timestamp"),
        (v3_headers(timestamp="soon"), BODY, "X-HubSpot-Request-Timestamp"),
        ({}, BODY, "no HubSpot signature"),
    ],
)
def test_a_tampered_or_incomplete_v3_request_is_rejected(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    with pytest.raises(WebhookRejected, match=reason) as caught:
        verify(headers, body=body)

    assert SECRET.get_secret_value() not in str(caught.value)
    assert V3 not in str(caught.value)


def test_v3_decodes_the_documented_escapes_in_the_uri_before_signing() -> None:
    escaped = "https://www.example.com/webhook_uri%3Fportal=62515%2Cx%40y%3b%2a"
    decoded = "https://www.example.com/webhook_uri?portal=62515,x@y;*"
    signature = signature_v3(SECRET, "POST", decoded, BODY, TIMESTAMP)

    assert signature_v3(SECRET, "POST", escaped, BODY, TIMESTAMP) == signature
    assert verify(v3_headers(signature), uri=escaped) == "v3"
    undocumented = signature_v3(SECRET, "POST", URI + "%20x%3D", BODY, TIMESTAMP)
    assert undocumented != signature_v3(SECRET, "POST", URI + " x=", BODY, TIMESTAMP)


def test_legacy_v1_and_v2_signatures_are_checked_by_their_version_header() -> None:
    assert verify({"X-HubSpot-Signature": V1}) == "v1"
    assert verify({"X-HubSpot-Signature": V1, "X-HubSpot-Signature-Version": "v1"}) == "v1"
    assert verify({"X-HubSpot-Signature": V2, "X-HubSpot-Signature-Version": "v2"}) == "v2"
    with pytest.raises(WebhookRejected, match="v2 signature does not match"):
        verify({"X-HubSpot-Signature": V1, "X-HubSpot-Signature-Version": "v2"})
    with pytest.raises(WebhookRejected, match="unknown signature version"):
        verify({"X-HubSpot-Signature": V1, "X-HubSpot-Signature-Version": "v9"})


def test_legacy_signatures_can_be_refused() -> None:
    with pytest.raises(WebhookRejected, match="only v3"):
        verify({"X-HubSpot-Signature": V1}, allow_legacy=False)


def test_events_are_typed_from_subscription_type_or_the_older_event_type() -> None:
    body = json.dumps(
        [
            {"eventId": 1, "subscriptionType": "company.propertyChange", "objectId": 10000001,
             "propertyName": "name", "propertyValue": "Acme", "occurredAt": 1693657560000,
             "portalId": 62515, "appId": 54321, "attemptNumber": 2, "changeSource": "CRM_UI"},
            {"eventId": 2, "eventType": "contact.deletion", "objectId": "50000001",
             "occurredAt": "2023-09-02T12:26:00Z"},
            {"eventId": 3, "subscriptionType": "contact.privacyDeletion", "objectId": 7,
             "occurredAt": 1693657560000},
            {"eventId": 4, "subscriptionType": "company.restore", "objectId": 8,
             "occurredAt": 1693657560000},
            {"eventId": 5, "subscriptionType": "contact.creation", "objectId": 9,
             "occurredAt": 1693657560000},
        ]
    ).encode()  # fmt: skip

    changed, deleted, forgotten, restored, created = parse_events(body).events

    assert (changed.object_type, changed.kind, changed.object_id) == (
        ObjectType.COMPANY, EventKind.CHANGED, "10000001"
    )  # fmt: skip
    assert (changed.property_name, changed.property_value) == ("name", "Acme")
    assert (changed.portal_id, changed.attempt_number, changed.occurred_at) == ("62515", 2, SENT)
    assert (deleted.object_type, deleted.kind, deleted.occurred_at) == (
        ObjectType.CONTACT, EventKind.DELETED, SENT
    )  # fmt: skip
    assert forgotten.kind is EventKind.PRIVACY_DELETED
    assert restored.kind is EventKind.RESTORED
    assert created.kind is EventKind.CREATED


def test_a_merge_event_names_the_survivor_and_the_merged_ids() -> None:
    body = json.dumps(
        [{"eventId": 9, "subscriptionType": "contact.merge", "objectId": 100,
          "primaryObjectId": 100, "mergedObjectIds": [200, 300], "newObjectId": 400,
          "occurredAt": 1693657560000}]
    )  # fmt: skip

    [merge] = parse_events(body).events

    assert merge.kind is EventKind.MERGED
    assert merge.merged_object_ids == ("200", "300")
    assert merge.survivor_id == "400"


def test_an_association_change_carries_both_ends_and_whether_it_was_removed() -> None:
    body = json.dumps(
        [{"eventId": 9, "subscriptionType": "contact.associationChange", "objectId": 50,
          "fromObjectId": 50, "toObjectId": 10, "associationType": "CONTACT_TO_COMPANY",
          "associationRemoved": True, "isPrimaryAssociation": False,
          "occurredAt": 1693657560000}]
    )  # fmt: skip

    [change] = parse_events(body).events

    assert change.kind is EventKind.ASSOCIATION_CHANGED
    assert (change.from_object_id, change.to_object_id) == ("50", "10")
    assert (change.association_type, change.association_removed) == ("CONTACT_TO_COMPANY", True)


def test_events_of_other_objects_or_kinds_are_parsed_as_other_to_be_acknowledged() -> None:
    body = json.dumps(
        [{"subscriptionType": "deal.creation", "objectId": 1, "occurredAt": 1693657560000},
         {"subscriptionType": "contact.unknownThing", "objectId": 2, "occurredAt": 1693657560000}]
    )  # fmt: skip

    deal, unknown = parse_events(body).events

    assert (deal.object_type, deal.kind) == (None, EventKind.CREATED)
    assert (unknown.object_type, unknown.kind) == (ObjectType.CONTACT, EventKind.OTHER)


def test_unreadable_events_are_reported_and_the_others_still_parsed() -> None:
    body = json.dumps(
        [{"subscriptionType": "contact.creation", "objectId": 1, "occurredAt": 1693657560000},
         {"subscriptionType": "contact.creation", "occurredAt": 1693657560000},
         {"objectId": 3},
         "not an event"]
    )  # fmt: skip

    parsed = parse_events(body)

    assert [e.object_id for e in parsed.events] == ["1"]
    assert len(parsed.invalid) == 3
    assert "object_id" in parsed.invalid[0].reason or "objectId" in parsed.invalid[0].reason
    assert "subscriptionType" in parsed.invalid[1].reason


def test_a_body_that_is_not_json_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="not JSON"):
        parse_events(b"<xml/>")
