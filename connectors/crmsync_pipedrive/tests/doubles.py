"""Test doubles: a Pipedrive company account serving a Dataset through respx (no network).

:class:`DatasetPipedrive` renders the contract kit's neutral :class:`Dataset` in
Pipedrive's API v2 shapes and answers the connector's endpoints: the organization and
person lists (``limit``, an opaque ``cursor``, ``sort_by``, ``updated_since`` inclusive,
``updated_until``, ``ids``), the fields endpoints (a tax status and an alias custom
field keyed by hashes, the person labels) and ``PATCH`` of an organization. Deleted
records stay in the lists with ``is_deleted`` (Pipedrive keeps them for 30 days).
Raw records can be added as they are (``extra``), to serve shapes a Dataset cannot say:
id-only deletions, merged records.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import respx

from crmsync.sdk.connector import ConnectorContext
from crmsync.sdk.records import CompanyRecord, ContactRecord, ObjectType
from crmsync.sdk.testing import BadKind, BadSample, Dataset, FakeTime
from crmsync_pipedrive.config import PipedriveConfig
from crmsync_pipedrive.connector import PipedriveConnector

BASE = "https://api.pipedrive.test"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TAX_KEY = "d4de1c1518b4531717c676029a45911c340390a6"
ALIAS_KEY = "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b"
CUSTOMER_ID_KEY = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"
BILLING_FIELD_KEY = "aa11bb22cc33dd44ee55ff66aa77bb88cc99dd00"
BILLING_LABEL_ID = 7
RATE_HEADERS = {"x-ratelimit-limit": "40", "x-ratelimit-remaining": "39", "x-ratelimit-reset": "2"}

ORGANIZATION_FIELDS: list[dict[str, Any]] = [
    {"field_code": "name", "field_name": "Name", "field_type": "varchar"},
    {"field_code": "address", "field_name": "Address", "field_type": "address"},
    {"field_code": TAX_KEY, "field_name": "Tax status", "field_type": "varchar"},
    {"field_code": ALIAS_KEY, "field_name": "Account IDs", "field_type": "varchar"},
    {"field_code": CUSTOMER_ID_KEY, "field_name": "Billing customer ID", "field_type": "varchar"},
]
PERSON_FIELDS: list[dict[str, Any]] = [
    {"field_code": "name", "field_name": "Name", "field_type": "varchar"},
    {
        "field_code": "label_ids",
        "field_name": "Labels",
        "field_type": "set",
        "options": [
            {"id": BILLING_LABEL_ID, "label": "Billing contact"},
            {"id": 8, "label": "VIP"},
        ],
    },
    {
        "field_code": BILLING_FIELD_KEY,
        "field_name": "Bills to",
        "field_type": "enum",
        "options": [{"id": 31, "label": "Yes"}, {"id": 32, "label": "No"}],
    },
]


def rfc3339(moment: datetime) -> str:
    """Pipedrive's v2 timestamps (milliseconds shown when there are any)."""
    moment = moment.astimezone(UTC)
    millis = f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + millis + "Z"


def make_config(**overrides: Any) -> PipedriveConfig:
    """A config for the doubles: the test base URL, a token, the test field names, and
    street number first (the kit's line 1 is ``12 Example Street``)."""
    settings: dict[str, Any] = {
        "type": "pipedrive",
        "base_url": BASE,
        "api_token": TOKEN,
        "organizations": {
            "tax_status_field": "Tax status",
            "alias_fields": ["Account IDs"],
            "street_number_first": True,
        },
        "page_size": 100,
    }
    settings.update(overrides)
    return PipedriveConfig.model_validate(settings)


def make_connector(
    config: PipedriveConfig | None = None,
    *,
    time: FakeTime | None = None,
    transport: httpx.BaseTransport | None = None,
    clock: Callable[[], datetime] = lambda: NOW,
) -> PipedriveConnector:
    time = time or FakeTime()
    return PipedriveConnector(
        config or make_config(),
        ConnectorContext(name="pipedrive", clock=clock),
        transport=transport,
        sleep=time.sleep,
        monotonic=time.clock,
    )


def render_organization(record: CompanyRecord) -> dict[str, Any]:
    number, _, route = (record.line1 or "").partition(" ")
    custom: dict[str, Any] = {
        TAX_KEY: record.tax_status.value if record.tax_status else None,
        ALIAS_KEY: ";".join(record.aliases) or None,
        CUSTOMER_ID_KEY: None,
    }
    return {
        "id": record.external_id,
        "name": record.name,
        "owner_id": 1,
        "address": {
            "value": None,
            "street_number": number or None,
            "route": route or None,
            "subpremise": record.line2,
            "locality": record.city,
            "admin_area_level_1": record.state,
            "postal_code": record.postal_code,
            "country": record.country,
        },
        "custom_fields": custom,
        "add_time": "2020-01-01T00:00:00Z",
        "update_time": rfc3339(record.modified_at) if record.modified_at else None,
        "is_deleted": record.deleted,
    }


def render_person(record: ContactRecord) -> dict[str, Any]:
    link = record.companies[0] if record.companies else None
    emails = [{"value": record.email, "primary": True, "label": "work"}] if record.email else []
    return {
        "id": record.external_id,
        "name": record.name,
        "first_name": None,
        "last_name": None,
        "emails": emails,
        "phones": [],
        "org_id": link.company_id if link else None,
        "label_ids": [BILLING_LABEL_ID] if link and link.billing_contact else [],
        "custom_fields": {},
        "add_time": "2020-01-01T00:00:00Z",
        "update_time": rfc3339(record.modified_at) if record.modified_at else None,
        "is_deleted": record.deleted,
    }


def render_bad(sample: BadSample) -> dict[str, Any]:
    if sample.kind is BadKind.MISSING_ID:
        return {"name": "No id", "update_time": "2026-01-01T00:00:00Z", "is_deleted": False}
    if sample.kind is BadKind.BAD_TIMESTAMP:
        return {"id": sample.external_id, "name": "Bad time", "update_time": "yesterday"}
    field = "address" if sample.object_type is ObjectType.COMPANY else "emails"
    return {"id": sample.external_id, "name": "Broken", field: "{truncated", "is_deleted": False}


def _time(raw: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(raw.get("update_time")))
    except ValueError:
        return None


class DatasetPipedrive:
    """A Pipedrive account holding ``dataset`` (and ``extra`` raw records per stream)."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        rate_limited: bool = False,
        extra: dict[ObjectType, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.rate_limited = rate_limited
        self.requests: list[httpx.Request] = []
        self.patches: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._count = 0
        self.raws: dict[ObjectType, list[dict[str, Any]]] = {
            ObjectType.COMPANY: [render_organization(c) for c in dataset.companies],
            ObjectType.CONTACT: [render_person(p) for p in dataset.contacts],
        }
        for sample in dataset.bad:
            self.raws[sample.object_type].append(render_bad(sample))
        for stream, raws in (extra or {}).items():
            self.raws[stream].extend(raws)
        self.router = respx.Router(base_url=BASE, assert_all_mocked=True, assert_all_called=False)
        self.router.get("/api/v2/organizations").mock(side_effect=self._list)
        self.router.get("/api/v2/persons").mock(side_effect=self._list)
        self.router.patch(path__regex=r"^/api/v2/organizations/(?P<oid>[^/]+)$").mock(
            side_effect=self._patch
        )
        self.router.get("/api/v2/organizationFields").mock(
            side_effect=lambda request: self._answer(request, ORGANIZATION_FIELDS, None)
        )
        self.router.get("/api/v2/personFields").mock(
            side_effect=lambda request: self._answer(request, PERSON_FIELDS, None)
        )

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.router.handler)

    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]

    def _answer(self, request: httpx.Request, data: Any, cursor: str | None) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            self._count += 1
            throttled = self.rate_limited and self._count % 3 == 1
        if request.headers.get("x-api-token") != TOKEN:
            return httpx.Response(401, json={"success": False, "error": "unauthorized"})
        if throttled:
            headers = {**RATE_HEADERS, "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}
            return httpx.Response(429, headers=headers, json={"success": False, "error": "slow"})
        body = {"success": True, "data": data, "additional_data": {"next_cursor": cursor}}
        return httpx.Response(200, headers=RATE_HEADERS, json=body)

    def _list(self, request: httpx.Request) -> httpx.Response:
        stream = ObjectType.COMPANY if "organizations" in request.url.path else ObjectType.CONTACT
        params = request.url.params
        rows = list(self.raws[stream])
        if "ids" in params:
            wanted = set(params["ids"].split(","))
            rows = [raw for raw in rows if str(raw.get("id")) in wanted]
        since, until = params.get("updated_since"), params.get("updated_until")
        if since is not None:
            low = datetime.fromisoformat(since)
            rows = [raw for raw in rows if (t := _time(raw)) is None or t >= low]
        if until is not None:
            high = datetime.fromisoformat(until)
            rows = [raw for raw in rows if (t := _time(raw)) is None or t <= high]
        if params.get("sort_by", "id") == "update_time":
            floor = datetime.min.replace(tzinfo=UTC)
            rows.sort(key=lambda raw: (_time(raw) or floor, str(raw.get("id", ""))))
        else:
            rows.sort(key=lambda raw: str(raw.get("id", "")))
        limit = min(int(params.get("limit", "100")), 500)
        start = int(params["cursor"].removeprefix("c:")) if "cursor" in params else 0
        chunk = rows[start : start + limit]
        following = f"c:{start + limit}" if start + limit < len(rows) else None
        return self._answer(request, chunk, following)

    def _patch(self, request: httpx.Request, oid: str) -> httpx.Response:
        body = json.loads(request.content)
        known = {str(raw.get("id")) for raw in self.raws[ObjectType.COMPANY]}
        if oid not in known:
            with self._lock:
                self.requests.append(request)
            return httpx.Response(404, json={"success": False, "error": "Organization not found"})
        with self._lock:
            self.patches.append((oid, body))
        return self._answer(request, {"id": oid}, None)
