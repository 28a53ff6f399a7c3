"""The service's HTTP side, in process (httpx's ASGI transport): which deliveries are
refused with what, that nothing refused is stored, and that a stored delivery enqueues an
import once. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.applications import Starlette

from crmsync.adapters import inbox
from crmsync.bootstrap import App, bootstrap
from crmsync.entrypoints.web import Health, Receivers, ServiceMetrics, create_app
from crmsync_hubspot.webhooks import signature_v3

SECRET = "app-test-secret"
URL = "http://testserver/webhooks/hubspot"


class Jobs:
    def __init__(self) -> None:
        self.imports: list[str] = []

    def enqueue_sync(self, connector: str, *, full: bool) -> None:
        raise AssertionError("no sync expected")

    def enqueue_import(self, connector: str) -> None:
        self.imports.append(connector)


@pytest.fixture
def application(tmp_path: Path, store_url: str) -> Iterator[App]:
    (tmp_path / "companies.csv").write_text("id,name\n")
    config = tmp_path / "crm-sync.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": store_url,
                "webhooks": {"max_body_bytes": 2048},
                "connectors": {
                    "sample": {"type": "file", "companies": {"path": "companies.csv"}},
                    "hubspot": {
                        "type": "hubspot",
                        "access_token": "${TOKEN}",
                        "webhook_secret": "${SECRET}",
                    },
                },
            }
        )
    )
    app = bootstrap(config, environ={"TOKEN": "pat-token", "SECRET": SECRET})
    yield app
    app.close()


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture
def health() -> Health:
    return Health()


class Client:
    """Requests to the app in this process (without its lifespan: deliveries are stored
    one by one instead of grouped)."""

    def __init__(self, web: Starlette) -> None:
        self.web = web

    def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.web)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.request(method, path, **options)

        return asyncio.run(send())

    def post(self, path: str, **options: Any) -> httpx.Response:
        return self.request("POST", path, **options)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)


@pytest.fixture
def client(application: App, jobs: Jobs, health: Health) -> Client:
    web = create_app(
        application,
        jobs=jobs,
        health=health,
        metrics=ServiceMetrics(application),
        receivers=Receivers(application),
    )
    return Client(web)


def signed(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time() * 1000))
    return {
        "X-HubSpot-Signature-v3": signature_v3(SECRET, "POST", URL, body, timestamp),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


def event(object_id: int = 101) -> bytes:
    return json.dumps(
        [
            {
                "eventId": 1,
                "subscriptionType": "company.propertyChange",
                "objectId": object_id,
                "occurredAt": int(time.time() * 1000),
                "propertyName": "name",
                "propertyValue": "x",
            }
        ]
    ).encode()


def stored(application: App) -> int:
    with application.open_store().read() as conn:
        return len(inbox.list_events(conn))


def test_a_stored_delivery_enqueues_one_import_and_a_redelivery_none(
    client: Client, application: App, jobs: Jobs
) -> None:
    body = event()

    first = client.post("/webhooks/hubspot", content=body, headers=signed(body))
    again = client.post("/webhooks/hubspot", content=body, headers=signed(body))

    assert (first.status_code, again.status_code) == (200, 200)
    assert stored(application) == 1
    assert jobs.imports == ["hubspot"]


@pytest.mark.parametrize("connector", ["nope", "sample"])
def test_a_connector_unknown_or_without_webhooks_is_not_found(
    client: Client, application: App, connector: str
) -> None:
    answer = client.post(f"/webhooks/{connector}", content=event(), headers=signed(event()))

    assert answer.status_code == 404
    assert stored(application) == 0


def test_a_body_over_the_limit_is_refused_whether_or_not_its_length_is_announced(
    client: Client, application: App
) -> None:
    big = b"[" + b" " * 4096 + b"]"

    announced = client.post("/webhooks/hubspot", content=big, headers=signed(big))

    async def chunks() -> Any:
        yield big[:1000]
        yield big[1000:]

    streamed = client.post("/webhooks/hubspot", content=chunks(), headers=signed(big))

    assert (announced.status_code, streamed.status_code) == (413, 413)
    assert stored(application) == 0


def test_refusals_say_why_without_a_server_error(client: Client, application: App) -> None:
    body = event()
    forged = client.post("/webhooks/hubspot", content=body, headers={"X-HubSpot-Signature-v3": "x"})
    unsigned = client.post("/webhooks/hubspot", content=body)
    garbage = b"\xff\xfe not json"
    malformed = client.post("/webhooks/hubspot", content=garbage, headers=signed(garbage))
    bad_length = client.post(
        "/webhooks/hubspot", content=body, headers={**signed(body), "Content-Length": "-1"}
    )

    assert [r.status_code for r in (forged, unsigned, malformed, bad_length)] == [
        401,
        401,
        400,
        400,
    ]
    assert all("error" in r.json() for r in (forged, unsigned, malformed, bad_length))
    assert stored(application) == 0


def test_health_fails_when_a_registered_part_is_down(client: Client, health: Health) -> None:
    health.register("worker", lambda: True)
    assert client.get("/healthz").status_code == 200

    health.register("scheduler", lambda: False)
    answer = client.get("/healthz")

    assert answer.status_code == 503
    assert answer.json()["checks"] == {"store": True, "worker": True, "scheduler": False}
