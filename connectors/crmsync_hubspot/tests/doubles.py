"""Test doubles: a clock that moves only when slept on, and a HubSpot serving a Dataset.

:class:`DatasetHubSpot` renders the contract kit's neutral :class:`Dataset` in
HubSpot's JSON shapes and answers the connector's endpoints through a respx router
(no network): the live and archived lists (``after`` = the next record's index),
search (modified-date and ``hs_object_id`` filters, sorted by id, ids compared as
text), batch reads, v4 association reads and the association labels' v3 names.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import respx

from crmsync.sdk.connector import ConnectorContext
from crmsync.sdk.records import CompanyRecord, ContactRecord, ObjectType
from crmsync.sdk.testing import BadKind, BadSample, Dataset, FakeTime
from crmsync_hubspot.config import HubSpotConfig
from crmsync_hubspot.connector import HubSpotConnector

BASE = "https://api.hubapi.test"
TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RATE_HEADERS = {
    "X-HubSpot-RateLimit-Max": "100",
    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    "X-HubSpot-RateLimit-Daily": "250000",
    "X-HubSpot-RateLimit-Daily-Remaining": "249000",
}
COMPANY_PROPERTIES = {
    "name": "name",
    "line1": "address",
    "line2": "address2",
    "city": "city",
    "state": "state",
    "postal_code": "zip",
    "country": "country",
    "tax_status": "tax_status",
}


def iso(moment: datetime) -> str:
    """HubSpot's v3 timestamp format: ``2026-03-02T09:00:00.125Z``."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def epoch_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def make_config(**overrides: Any) -> HubSpotConfig:
    """A config for the doubles: the test base URL, a token, the test property names,
    pages of one HubSpot answer."""
    settings: dict[str, Any] = {
        "type": "hubspot",
        "base_url": BASE,
        "access_token": TOKEN,
        "companies": {**COMPANY_PROPERTIES, "aliases": ["account_ids"]},
        "page_size": 100,  # one answer per page, unless a test says otherwise
    }
    settings.update(overrides)
    return HubSpotConfig.model_validate(settings)


def make_connector(
    config: HubSpotConfig | None = None,
    *,
    time: FakeTime | None = None,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], datetime] = lambda: NOW,
) -> HubSpotConnector:
    time = time or FakeTime()
    return HubSpotConnector(
        config or make_config(),
        ConnectorContext(name="hubspot", clock=clock),
        transport=transport,
        sleep=time.sleep,
        monotonic=time.clock,
    )


def render_company(record: CompanyRecord) -> dict[str, Any]:
    modified = iso(record.modified_at) if record.modified_at else None
    properties: dict[str, Any] = {
        prop: getattr(record, field) for field, prop in COMPANY_PROPERTIES.items()
    }
    properties["account_ids"] = ";".join(record.aliases) or None
    properties["hs_lastmodifieddate"] = modified
    properties["hs_merged_object_ids"] = ";".join(record.merged_ids) or None
    properties["hs_object_id"] = record.external_id
    return _envelope(record.external_id, properties, modified, record.deleted)


def render_contact(record: ContactRecord) -> dict[str, Any]:
    modified = iso(record.modified_at) if record.modified_at else None
    properties: dict[str, Any] = {
        "firstname": record.name,
        "lastname": None,
        "email": record.email,
        "lastmodifieddate": modified,
        "hs_merged_object_ids": ";".join(record.merged_ids) or None,
        "hs_object_id": record.external_id,
    }
    raw = _envelope(record.external_id, properties, modified, record.deleted)
    if record.companies:
        rows = []
        for link in record.companies:
            rows.append({"id": link.company_id, "type": "contact_to_company_unlabeled"})
            if link.billing_contact:
                rows.append({"id": link.company_id, "type": "billing_contact"})
        raw["associations"] = {"companies": {"results": rows}}
    return raw


def v4_targets(record: ContactRecord) -> list[dict[str, Any]]:
    targets = []
    for link in record.companies:
        types = [{"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}]
        if link.billing_contact:
            types.append({"category": "USER_DEFINED", "typeId": 8, "label": "Billing contact"})
        targets.append({"toObjectId": link.company_id, "associationTypes": types})
    return targets


def _envelope(
    external_id: str, properties: dict[str, Any], modified: str | None, archived: bool
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": external_id,
        "properties": properties,
        "createdAt": "2020-01-01T00:00:00.000Z",
        "updatedAt": modified,
        "archived": archived,
    }
    if archived:
        raw["archivedAt"] = modified
    return raw


def render_bad(sample: BadSample, modified_property: str) -> Any:
    if sample.kind is BadKind.MISSING_ID:
        return {"properties": {modified_property: "2026-01-01T00:00:00.000Z"}, "archived": False}
    if sample.kind is BadKind.BAD_TIMESTAMP:
        return _envelope(sample.external_id or "?", {modified_property: "yesterday"}, None, False)
    return {"id": sample.external_id, "properties": "{truncated", "archived": False}


class DatasetHubSpot:
    """A HubSpot account holding ``dataset``; ``router`` answers the connector's requests."""

    def __init__(self, dataset: Dataset, *, rate_limited: bool = False) -> None:
        self.dataset = dataset
        self.rate_limited = rate_limited
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()
        self.router = respx.Router(base_url=BASE, assert_all_mocked=True, assert_all_called=False)
        for name in ("companies", "contacts"):
            self.router.get(f"/crm/v3/objects/{name}").mock(side_effect=self._list)
            self.router.post(f"/crm/v3/objects/{name}/search").mock(side_effect=self._search)
            self.router.post(f"/crm/v3/objects/{name}/batch/read").mock(
                side_effect=self._batch_read
            )
        self.router.post("/crm/v4/associations/contacts/companies/batch/read").mock(
            side_effect=self._associations
        )

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.router.handler)

    # -- data ------------------------------------------------------------------------------

    def _stream(self, request: httpx.Request) -> ObjectType:
        return ObjectType.COMPANY if "/companies" in request.url.path else ObjectType.CONTACT

    def _rendered(self, stream: ObjectType) -> list[tuple[str, dict[str, Any], Any]]:
        """(id, record, raw JSON) of the stream's good records, in id order."""
        rows: list[tuple[str, dict[str, Any], Any]] = []
        if stream is ObjectType.COMPANY:
            for company in self.dataset.companies:
                rows.append((company.external_id, {"record": company}, render_company(company)))
        else:
            for contact in self.dataset.contacts:
                rows.append((contact.external_id, {"record": contact}, render_contact(contact)))
        return sorted(rows, key=lambda row: row[0])

    def _modified_property(self, stream: ObjectType) -> str:
        return "hs_lastmodifieddate" if stream is ObjectType.COMPANY else "lastmodifieddate"

    # -- endpoints -------------------------------------------------------------------------

    def _admit(self, request: httpx.Request) -> httpx.Response | None:
        with self._lock:
            self.requests.append(request)
            count = len(self.requests)
        if self.rate_limited and count % 3 == 1:
            return httpx.Response(
                429,
                json={"status": "error", "errorType": "RATE_LIMIT",
                      "policyName": "TEN_SECONDLY_ROLLING", "message": "slow down"},
                headers={**_RATE_HEADERS, "X-HubSpot-RateLimit-Remaining": "0"},
            )  # fmt: skip
        return None

    def _answer(self, payload: Any, status: int = 200) -> httpx.Response:
        return httpx.Response(
            status, json=payload, headers={**_RATE_HEADERS, "X-HubSpot-RateLimit-Remaining": "90"}
        )

    def _list(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._admit(request)) is not None:
            return refused
        stream = self._stream(request)
        params = request.url.params
        archived = params.get("archived") == "true"
        items: list[Any] = [
            raw for _, _, raw in self._rendered(stream) if raw["archived"] == archived
        ]
        if not archived:
            modified = self._modified_property(stream)
            bad = [render_bad(s, modified) for s in self.dataset.bad_samples(stream)]
            middle = len(items) // 2
            items = items[:middle] + bad + items[middle:]
        if params.get("associations") != "companies":
            items = [{k: v for k, v in raw.items() if k != "associations"}
                     if isinstance(raw, dict) else raw for raw in items]  # fmt: skip
        start = int(params.get("after", "0"))
        limit = int(params["limit"])
        payload: dict[str, Any] = {"results": items[start : start + limit]}
        if start + limit < len(items):
            payload["paging"] = {"next": {"after": str(start + limit), "link": "?"}}
        return self._answer(payload)

    def _search(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._admit(request)) is not None:
            return refused
        stream = self._stream(request)
        body = json.loads(request.content)
        assert len(request.content) <= 3_000, "a search body over 3,000 characters"
        assert body["sorts"] == [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
        checks: list[Callable[[str, dict[str, Any]], bool]] = []
        for spec in body["filterGroups"][0]["filters"]:
            checks.append(_compile(spec, self._modified_property(stream)))
        matches = [
            raw for ext_id, row, raw in self._rendered(stream)
            if not raw["archived"] and all(check(ext_id, row) for check in checks)
        ]  # fmt: skip
        limit = int(body["limit"])
        assert "after" not in body, "the connector pages search by id, never by offset"
        payload: dict[str, Any] = {"total": len(matches), "results": []}
        for raw in matches[:limit]:
            payload["results"].append({k: v for k, v in raw.items() if k != "associations"})
        if len(matches) > limit:
            payload["paging"] = {"next": {"after": str(limit)}}
        return self._answer(payload)

    def _batch_read(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._admit(request)) is not None:
            return refused
        stream = self._stream(request)
        archived = request.url.params.get("archived") == "true"
        wanted = [item["id"] for item in json.loads(request.content)["inputs"]]
        by_id = {ext_id: raw for ext_id, _, raw in self._rendered(stream)}
        results = [
            {k: v for k, v in by_id[i].items() if k != "associations"}
            for i in wanted
            if i in by_id and by_id[i]["archived"] == archived
        ]
        missing = [i for i in wanted if i not in {r["id"] for r in results}]
        payload: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            payload["errors"] = [{"category": "OBJECT_NOT_FOUND", "context": {"ids": missing}}]
        return self._answer(payload, 207 if missing else 200)

    def _associations(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._admit(request)) is not None:
            return refused
        contacts = {c.external_id: c for c in self.dataset.contacts}
        results = []
        for item in json.loads(request.content)["inputs"]:
            contact = contacts.get(item["id"])
            if contact is not None and contact.companies:
                results.append({"from": {"id": item["id"]}, "to": v4_targets(contact)})
        return self._answer({"status": "COMPLETE", "results": results})


def _compile(spec: dict[str, str], modified: str) -> Callable[[str, dict[str, Any]], bool]:
    name, operator, value = spec["propertyName"], spec["operator"], spec["value"]
    if name == "hs_object_id":
        assert operator == "GT"
        return lambda ext_id, row: ext_id > value
    assert name == modified, f"a filter on {name}"
    bound = int(value)

    def check(ext_id: str, row: dict[str, Any]) -> bool:
        at = row["record"].modified_at
        if at is None:
            return False
        ms = epoch_ms(at)
        return ms >= bound if operator == "GTE" else ms <= bound

    assert operator in ("GTE", "LTE")
    return check
