"""Webhooks v2: Basic-auth verification and parsing into the SDK's typed events."""

from __future__ import annotations

import base64
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from crmsync.sdk.capabilities import (
    EventAction,
    WebhookEvent,
    WebhookReceiver,
    WebhookRejected,
    WebhookRequest,
    WriteBack,
    capabilities_of,
)
from crmsync.sdk.records import ObjectType
from crmsync_pipedrive import plugin
from crmsync_pipedrive.connector import PipedriveConnector
from crmsync_pipedrive.tests.doubles import make_config, make_connector

USER, PASSWORD = "crm-sync", "s3cret-hook-password"
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def request(body: Any = None, authorization: str | None = None) -> WebhookRequest:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    raw = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    return WebhookRequest("POST", "https://hooks.example.com/pipedrive", headers, raw, NOW)


def delivery(action: str, entity: str = "person", **meta: Any) -> dict[str, Any]:
    return {
        "meta": {
            "action": action,
            "entity": entity,
            "entity_id": "7001",
            "id": "0b7f5e1c-7a59-4a43-a1a5-6f4f3a4e9c11",
            "timestamp": "2026-06-01T11:59:58.123Z",
            "attempt": 1,
            "change_source": "app",
            **meta,
        },
        "data": None if action == "delete" else {"id": 7001, "name": "Lea"},
        "previous": None,
    }


@pytest.fixture
def connector() -> PipedriveConnector:
    webhook = {"username": USER, "password": PASSWORD}
    return make_connector(make_config(webhook=webhook))


def only(connector: PipedriveConnector, body: Any) -> WebhookEvent:
    parsed = connector.parse(request(body))
    assert not parsed.invalid, parsed.invalid
    [event] = parsed.events
    return event


def test_the_connector_offers_webhooks_and_write_back() -> None:
    assert plugin.connector_class is PipedriveConnector
    assert {"webhooks", "write-back"} <= set(capabilities_of(PipedriveConnector))
    assert issubclass(PipedriveConnector, WebhookReceiver)
    assert issubclass(PipedriveConnector, WriteBack)


def test_a_request_with_the_webhooks_basic_credentials_is_accepted(
    connector: PipedriveConnector,
) -> None:
    connector.verify(request(authorization=basic(USER, PASSWORD)))


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        basic(USER, "wrong-password"),
        basic("someone-else", PASSWORD),
        "Basic not-base64!!",
        "Bearer " + PASSWORD,
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ],
    ids=["missing", "wrong-password", "wrong-user", "not-base64", "bearer", "no-colon"],
)
def test_a_request_without_the_right_credentials_is_refused_with_401(
    connector: PipedriveConnector, authorization: str | None
) -> None:
    with pytest.raises(WebhookRejected) as refused:
        connector.verify(request(authorization=authorization))

    assert refused.value.status == 401
    assert PASSWORD not in refused.value.reason


def test_every_request_is_refused_when_no_webhook_credentials_are_configured() -> None:
    with pytest.raises(WebhookRejected) as refused:
        make_connector().verify(request(authorization=basic(USER, PASSWORD)))

    assert refused.value.status == 401


def test_the_user_and_the_password_are_both_compared_in_constant_time(
    connector: PipedriveConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []

    def compare(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", compare)
    with pytest.raises(WebhookRejected):
        connector.verify(request(authorization=basic("intruder", PASSWORD)))

    assert compared == [(b"intruder", USER.encode()), (PASSWORD.encode(), PASSWORD.encode())]


@pytest.mark.parametrize("action", ["create", "change", "added", "updated"])
def test_a_created_or_changed_person_is_an_upsert_of_that_contact(
    connector: PipedriveConnector, action: str
) -> None:
    event = only(connector, delivery(action))

    assert (event.action, event.object_type, event.external_id) == (
        EventAction.UPSERT,
        ObjectType.CONTACT,
        "7001",
    )
    assert event.occurred_at == datetime(2026, 6, 1, 11, 59, 58, 123000, tzinfo=UTC)


def test_a_deleted_organization_is_a_delete_of_that_company(connector: PipedriveConnector) -> None:
    event = only(connector, delivery("delete", "organization", entity_id=42))

    assert (event.action, event.object_type, event.external_id) == (
        EventAction.DELETE,
        ObjectType.COMPANY,
        "42",
    )


def test_the_losers_delete_of_a_merge_folds_it_into_the_survivor(
    connector: PipedriveConnector,
) -> None:
    event = only(connector, delivery("delete", "organization", entity_id="41", merged_to_id=42))

    assert (event.action, event.external_id, event.merged_ids) == (EventAction.MERGE, "42", ("41",))


def test_the_survivors_change_of_a_merge_names_the_loser(connector: PipedriveConnector) -> None:
    event = only(connector, delivery("change", "person", entity_id="7001", merged_from_id="7000"))

    assert (event.action, event.external_id, event.merged_ids) == (
        EventAction.MERGE,
        "7001",
        ("7000",),
    )


def test_an_entity_crm_sync_does_not_sync_is_acknowledged_and_ignored(
    connector: PipedriveConnector,
) -> None:
    parsed = connector.parse(request(delivery("change", "deal", entity_id="9")))

    assert [e.action for e in parsed.events] == [EventAction.IGNORE]
    assert connector.acknowledge(parsed).status == 200


def test_a_redelivery_has_the_same_key_and_another_event_another(
    connector: PipedriveConnector,
) -> None:
    first = only(connector, delivery("change"))
    again = only(connector, delivery("change", attempt=2))
    other = only(connector, delivery("change", id="9a1c2b3d-0000-4000-8000-000000000000"))

    assert first.key == again.key
    assert other.key != first.key


def test_a_body_that_is_not_json_is_refused_with_400(connector: PipedriveConnector) -> None:
    with pytest.raises(WebhookRejected) as refused:
        connector.parse(request(b"{not json"))

    assert refused.value.status == 400


def test_a_delivery_without_meta_is_reported_invalid_with_its_reason(
    connector: PipedriveConnector,
) -> None:
    parsed = connector.parse(request({"data": {"id": 1}}))

    assert not parsed.events
    [invalid] = parsed.invalid
    assert "meta" in invalid.reason
    assert '"id": 1' in invalid.raw


def test_an_unknown_action_is_reported_invalid(connector: PipedriveConnector) -> None:
    parsed = connector.parse(request(delivery("exploded")))

    assert not parsed.events
    assert "meta.action" in parsed.invalid[0].reason
