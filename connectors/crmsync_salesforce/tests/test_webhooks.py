"""Outbound Messages: the shared secret, the org id, safe XML, typed events, the SOAP ack."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from crmsync.sdk.capabilities import (
    EventAction,
    WebhookReceiver,
    WebhookRejected,
    WebhookRequest,
    WriteBack,
    capabilities_of,
)
from crmsync.sdk.records import ObjectType
from crmsync_salesforce import plugin
from crmsync_salesforce.connector import SalesforceConnector
from crmsync_salesforce.tests.doubles import make_config, make_connector

ORG = "00D5g000001AbCdEAF"
SECRET = "s3cr3t-path-token"
URL = "https://sync.example.com/webhooks/salesforce"
RECEIVED = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def message(*sobjects: str, org: str = ORG) -> bytes:
    notifications = "".join(
        f"<Notification><Id>04l5g00000{i:08d}</Id>{sobject}</Notification>"
        for i, sobject in enumerate(sobjects)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k5g0000000001AAA</ActionId>"
        '<SessionId xsi:nil="true"/><EnterpriseUrl>https://acme.my.salesforce.com/</EnterpriseUrl>'
        f"{notifications}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def sobject(kind: str, *fields: tuple[str, str]) -> str:
    inner = "".join(f"<sf:{name}>{value}</sf:{name}>" for name, value in fields)
    return (
        f'<sObject xsi:type="sf:{kind}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"{inner}</sObject>"
    )


ACCOUNT = sobject(
    "Account", ("Id", "0015g00000AbCdEAAV"), ("SystemModstamp", "2026-06-01T11:59:58.000Z")
)


def basic(password: str, user: str = "crm-sync") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def request(
    body: bytes, *, url: str = URL, headers: dict[str, str] | None = None
) -> WebhookRequest:
    return WebhookRequest("POST", url, headers or basic(SECRET), body, RECEIVED)


@pytest.fixture
def connector() -> SalesforceConnector:
    return make_connector(make_config(webhooks={"organization_id": ORG, "secret": SECRET}))


def test_the_connector_says_it_takes_webhooks_and_writes_back() -> None:
    assert plugin.connector_class is SalesforceConnector
    assert {"webhooks", "write-back"} <= set(capabilities_of(SalesforceConnector))
    assert issubclass(SalesforceConnector, WebhookReceiver)
    assert issubclass(SalesforceConnector, WriteBack)


def test_a_message_with_the_secret_as_basic_auth_password_from_the_org_is_accepted(
    connector: SalesforceConnector,
) -> None:
    connector.verify(request(message(ACCOUNT)))


def test_a_message_with_the_secret_as_the_last_path_segment_is_accepted(
    connector: SalesforceConnector,
) -> None:
    connector.verify(request(message(ACCOUNT), url=f"{URL}/{SECRET}", headers={}))


def test_a_message_without_the_secret_is_refused_with_401(connector: SalesforceConnector) -> None:
    with pytest.raises(WebhookRejected) as refused:
        connector.verify(request(message(ACCOUNT), headers=basic("guess")))

    assert refused.value.status == 401


def test_a_message_from_another_org_is_refused_with_403(connector: SalesforceConnector) -> None:
    with pytest.raises(WebhookRejected) as refused:
        connector.verify(request(message(ACCOUNT, org="00D5g000009ZzZzEAF")))

    assert refused.value.status == 403


def test_the_15_character_org_id_matches_the_18_character_one() -> None:
    connector = make_connector(
        make_config(webhooks={"organization_id": ORG[:15], "secret": SECRET})
    )

    connector.verify(request(message(ACCOUNT)))


def test_messages_are_refused_until_org_and_secret_are_configured() -> None:
    with pytest.raises(WebhookRejected) as refused:
        make_connector().verify(request(message(ACCOUNT)))

    assert refused.value.status == 401


def test_a_body_declaring_entities_is_refused_with_400(connector: SalesforceConnector) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><notifications>&lol2;</notifications>'
    )

    with pytest.raises(WebhookRejected) as refused:
        connector.verify(request(bomb))

    assert refused.value.status == 400


def test_a_body_that_is_not_xml_is_refused_with_400(connector: SalesforceConnector) -> None:
    with pytest.raises(WebhookRejected) as refused:
        connector.parse(request(b"{not xml"))

    assert refused.value.status == 400


def test_notifications_become_typed_events_keyed_by_the_notification_id(
    connector: SalesforceConnector,
) -> None:
    contact = sobject("Contact", ("Id", "0035g00000AbCdEAAV"), ("IsDeleted", "true"))
    relation = sobject(
        "AccountContactRelation", ("Id", "07k5g0000001AAA"), ("ContactId", "0035g00000XyZAAV"),
        ("AccountId", "0015g00000AbCdEAAV"),
    )  # fmt: skip
    other = sobject("Opportunity", ("Id", "0065g0000001AAA"))

    parsed = connector.parse(request(message(ACCOUNT, contact, relation, other)))

    summary = [
        (e.key, e.action, e.object_type, e.external_id, e.related_ids) for e in parsed.events
    ]
    assert summary == [
        ("04l5g0000000000000", EventAction.UPSERT, ObjectType.COMPANY, "0015g00000AbCdEAAV", ()),
        ("04l5g0000000000001", EventAction.DELETE, ObjectType.CONTACT, "0035g00000AbCdEAAV", ()),
        ("04l5g0000000000002", EventAction.UPSERT, ObjectType.CONTACT, "0035g00000XyZAAV",
         ("0015g00000AbCdEAAV",)),
        ("04l5g0000000000003", EventAction.IGNORE, None, "0065g0000001AAA", ()),
    ]  # fmt: skip
    assert parsed.events[0].occurred_at == datetime(2026, 6, 1, 11, 59, 58, tzinfo=UTC)


def test_a_notification_without_a_record_id_is_reported_and_the_others_still_parse(
    connector: SalesforceConnector,
) -> None:
    parsed = connector.parse(request(message(sobject("Account", ("Name", "No Id")), ACCOUNT)))

    assert [e.external_id for e in parsed.events] == ["0015g00000AbCdEAAV"]
    assert len(parsed.invalid) == 1
    assert "Id" in parsed.invalid[0].reason


def test_an_accepted_message_is_answered_with_the_soap_acknowledgement(
    connector: SalesforceConnector,
) -> None:
    answer = connector.acknowledge(connector.parse(request(message(ACCOUNT))))

    assert answer.status == 200
    assert answer.media_type.startswith("text/xml")
    assert b"<Ack>true</Ack>" in answer.body
    assert b"http://soap.sforce.com/2005/09/outbound" in answer.body
