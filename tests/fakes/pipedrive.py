"""A fake Pipedrive API v2, served over real HTTP on 127.0.0.1, for tests and benchmarks.

Test infrastructure only: no production code imports this module.

Usage::

    data = PipedriveData.generate(organizations=1_000, persons=10_000, seed=7)
    with run_fake_pipedrive(data) as fake:
        client = httpx.Client(base_url=fake.url, headers={"x-api-token": fake.token})
        ...
        assert fake.requests.by_endpoint["GET /api/v2/persons"] == 21

Two parts:

* :class:`PipedriveData` - the in-memory company account: organizations and persons.
  Generated records are computed from their index on read (ids ``1..n`` in creation
  order, update times one second apart in that order); persons are spread over random
  organizations, the first ``organizations`` persons one per organization, some of them
  labelled ``Billing contact``. Changes (``update``, ``add``, ``delete``, ``merge``) are
  kept as overrides, so a million persons fit in little memory.
* :class:`FakePipedrive` - a raw ASGI app served by uvicorn in a background thread on a
  free port, with Pipedrive's auth (``x-api-token``, or OAuth bearer tokens from
  ``POST /oauth/token``), the ``x-ratelimit-*`` headers of a 2-second window (enforced
  when ``rate_limit`` is set), a daily budget (``daily_limit``: over it, 429 with
  ``x-daily-requests-left: 0``) and a per-request ``latency``.

Endpoints (shapes from developers.pipedrive.com, API v2, late 2026):

* ``GET /api/v2/organizations`` and ``/api/v2/persons``: ``limit`` (default 100, at most
  500, more is a 400), ``cursor`` (``additional_data.next_cursor``), ``sort_by`` ``id`` or
  ``update_time``, ``sort_direction``, ``updated_since`` (inclusive), ``updated_until``,
  ``ids`` (at most 100). Deleted records stay listed with ``is_deleted`` (Pipedrive keeps
  them 30 days); a merged-away one carries ``merged_to_id`` (Assumption: v2 lists say
  nothing of merges; the webhooks do).
* ``GET /api/v2/organizationFields`` and ``/api/v2/personFields`` (custom fields keyed by
  40-character hashes; the person labels are the options of ``label_ids``).
* ``PATCH /api/v2/organizations/{id}`` (``custom_fields`` written, ``update_time`` moved).
* ``POST /oauth/token`` (``grant_type=refresh_token``, client id and secret as Basic
  auth); the answer's ``api_domain`` is the fake's own URL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs

import uvicorn

__all__ = [
    "ALIAS_KEY",
    "BILLING_LABEL_ID",
    "CUSTOMER_ID_KEY",
    "DEFAULT_TOKEN",
    "TAX_KEY",
    "Entity",
    "FakePipedrive",
    "OAuthConfig",
    "PipedriveData",
    "RequestStats",
    "run_fake_pipedrive",
]

Entity = Literal["organizations", "persons"]
ENTITIES: tuple[Entity, ...] = ("organizations", "persons")
DEFAULT_TOKEN = "fake-pipedrive-api-token-0123456789abcdef"
TAX_KEY = "d4de1c1518b4531717c676029a45911c340390a6"
ALIAS_KEY = "5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b"
CUSTOMER_ID_KEY = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"
BILLING_LABEL_ID = 7
LIST_MAX_LIMIT = 500
IDS_MAX = 100
WINDOW_SECONDS = 2.0
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)

ORGANIZATION_FIELDS: list[dict[str, Any]] = [
    {"field_code": "name", "field_name": "Name", "field_type": "varchar", "options": None},
    {"field_code": "address", "field_name": "Address", "field_type": "address", "options": None},
    {"field_code": TAX_KEY, "field_name": "Tax status", "field_type": "varchar", "options": None},
    {"field_code": ALIAS_KEY, "field_name": "Account ID", "field_type": "varchar", "options": None},
    {
        "field_code": CUSTOMER_ID_KEY,
        "field_name": "Billing customer ID",
        "field_type": "varchar",
        "options": None,
    },
]
PERSON_FIELDS: list[dict[str, Any]] = [
    {"field_code": "name", "field_name": "Name", "field_type": "varchar", "options": None},
    {
        "field_code": "label_ids",
        "field_name": "Labels",
        "field_type": "set",
        "options": [
            {"id": BILLING_LABEL_ID, "label": "Billing contact", "color": "green"},
            {"id": 8, "label": "VIP", "color": "red"},
        ],
    },
]

_PLACES = (
    ("Hauptstraße", "Berlin", None, "10115", "Germany"),
    ("Maria-Theresien-Straße", "Innsbruck", None, "6020", "Austria"),
    ("Rue de Rivoli", "Paris", None, "75001", "France"),
    ("Keizersgracht", "Amsterdam", None, "1015 CJ", "Netherlands"),
    ("Market Street", "San Francisco", "CA", "94103", "United States"),
)
_TAX = ("TAXED", "TAX_EXEMPT", "REVERSE_CHARGED")
_FIRST = ("Ada", "Zoë", "José", "Wiktoria", "Sam", "Lea", "Noah", "Mia")
_LAST = ("Example", "Ørsted", "Muñoz", "Żak", "Doe", "Żółtowska", "Berg", "Rossi")


def rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    millis = f".{moment.microsecond // 1000:03d}" if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + millis + "Z"


def _mix(index: int, seed: int) -> int:
    value = (index * 0x9E3779B1 + seed * 0x85EBCA77) & 0xFFFFFFFF
    value ^= value >> 15
    value = (value * 0x2C1B3C6D) & 0xFFFFFFFF
    return value ^ (value >> 12)


@dataclass
class _Table:
    """One entity: ``count`` generated records plus overrides (whole raw records)."""

    count: int
    generate: Callable[[int], dict[str, Any]]
    overrides: dict[int, dict[str, Any]] = field(default_factory=dict)

    def get(self, record_id: int) -> dict[str, Any] | None:
        if record_id in self.overrides:
            return self.overrides[record_id]
        return self.generate(record_id) if 1 <= record_id <= self.count else None


class PipedriveData:
    """The account's organizations and persons. Thread-safe; mutate it while the fake runs."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.seed = 0
        self.billing_share = 0.0
        self.tables: dict[Entity, _Table] = {
            "organizations": _Table(0, self._organization),
            "persons": _Table(0, self._person),
        }
        self.version = 0
        self._window_cache: tuple[tuple[Any, ...], list[int]] | None = None

    @classmethod
    def generate(
        cls,
        *,
        organizations: int,
        persons: int,
        seed: int = 1,
        billing_share: float = 0.8,
        clock: Callable[[], datetime] | None = None,
    ) -> PipedriveData:
        """``organizations`` and ``persons`` in creation order; a ``billing_share`` of the
        organizations have their first person labelled ``Billing contact``."""
        data = cls(clock=clock)
        data.seed, data.billing_share = seed, billing_share
        data.tables["organizations"].count = organizations
        data.tables["persons"].count = persons
        return data

    # -- generated records ------------------------------------------------------------------

    def _org_count(self) -> int:
        return self.tables["organizations"].count

    def _organization(self, record_id: int) -> dict[str, Any]:
        route, city, state, postal, country = _PLACES[record_id % len(_PLACES)]
        return {
            "id": record_id,
            "name": f"Organization {record_id} GmbH",
            "owner_id": 1,
            "address": {
                "value": f"{route} {record_id}, {postal} {city}, {country}",
                "street_number": str(record_id),
                "route": route,
                "subpremise": None,
                "sublocality": None,
                "locality": city,
                "admin_area_level_1": state,
                "admin_area_level_2": None,
                "postal_code": postal,
                "country": country,
                "formatted_address": f"{route} {record_id}, {postal} {city}, {country}",
            },
            "custom_fields": {
                TAX_KEY: _TAX[_mix(record_id, self.seed) % len(_TAX)],
                ALIAS_KEY: f"ACC-{record_id}",
                CUSTOMER_ID_KEY: None,
            },
            "label_ids": [],
            "visible_to": 3,
            "add_time": rfc3339(BASE_TIME + timedelta(seconds=record_id)),
            "update_time": rfc3339(BASE_TIME + timedelta(seconds=record_id)),
            "is_deleted": False,
        }

    def org_of(self, person_id: int) -> int | None:
        """The organization a generated person belongs to."""
        count = self._org_count()
        if count == 0:
            return None
        index = person_id - 1
        if index < count:  # a permutation: every organization gets one of the first persons
            return (index * 7919 + self.seed) % count + 1
        return _mix(index, self.seed) % count + 1

    def is_billing(self, person_id: int) -> bool:
        """Whether a generated person carries the ``Billing contact`` label."""
        if person_id > self._org_count():
            return False
        return _mix(person_id, self.seed + 1) % 1000 < self.billing_share * 1000

    def _person(self, record_id: int) -> dict[str, Any]:
        first = _FIRST[_mix(record_id, self.seed) % len(_FIRST)]
        last = _LAST[_mix(record_id, self.seed + 2) % len(_LAST)]
        created = rfc3339(BASE_TIME + timedelta(days=400, seconds=record_id))
        return {
            "id": record_id,
            "name": f"{first} {last}",
            "first_name": first,
            "last_name": last,
            "owner_id": 1,
            "org_id": self.org_of(record_id),
            "emails": [
                {"value": f"person{record_id}@example.com", "primary": True, "label": "work"},
                {"value": f"p{record_id}.home@example.org", "primary": False, "label": "home"},
            ],
            "phones": [{"value": f"+49 30 {record_id:07d}", "primary": True, "label": "work"}],
            "label_ids": [BILLING_LABEL_ID] if self.is_billing(record_id) else [],
            "custom_fields": {},
            "visible_to": 3,
            "add_time": created,
            "update_time": created,
            "is_deleted": False,
        }

    # -- reading ------------------------------------------------------------------------------

    def count(self, entity: Entity) -> int:
        with self._lock:
            table = self.tables[entity]
            return max([table.count, *table.overrides]) if table.overrides else table.count

    def get(self, entity: Entity, record_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self.tables[entity].get(record_id)
            return dict(found) if found is not None else None

    def billing_contacts(self, organization_id: int) -> list[int]:
        """The persons labelled ``Billing contact`` of an organization (generated or changed)."""
        found = []
        for person_id in range(1, self.count("persons") + 1):
            raw = self.get("persons", person_id)
            if (
                raw
                and raw.get("org_id") == organization_id
                and not raw.get("is_deleted")
                and BILLING_LABEL_ID in (raw.get("label_ids") or [])
            ):
                found.append(person_id)
        return found

    # -- changes ------------------------------------------------------------------------------

    def _now(self) -> str:
        return rfc3339(self._clock())

    def _put(self, entity: Entity, raw: dict[str, Any]) -> None:
        self.tables[entity].overrides[int(raw["id"])] = raw
        self.version += 1

    def update(self, entity: Entity, record_id: int, **fields: Any) -> dict[str, Any]:
        """Change fields (``custom_fields`` merged); ``update_time`` moves to now."""
        with self._lock:
            raw = self.get(entity, record_id)
            if raw is None:
                raise KeyError(f"no {entity} {record_id}")
            custom = {**raw.get("custom_fields", {}), **fields.pop("custom_fields", {})}
            raw.update(fields, custom_fields=custom, update_time=self._now())
            self._put(entity, raw)
            return raw

    def add(self, entity: Entity, **fields: Any) -> int:
        """A new record (the next id), created now."""
        with self._lock:
            record_id = self.count(entity) + 1
            raw = {
                "id": record_id,
                "custom_fields": {},
                "is_deleted": False,
                "add_time": self._now(),
            }
            raw.update(fields, update_time=self._now())
            self._put(entity, raw)
            return record_id

    def delete(self, entity: Entity, record_id: int, *, id_only: bool = False) -> None:
        """Deleted now; with ``id_only`` it is listed with its id and update time alone."""
        with self._lock:
            raw = self.get(entity, record_id)
            if raw is None:
                raise KeyError(f"no {entity} {record_id}")
            if id_only:
                raw = {"id": record_id}
            raw.update(is_deleted=True, update_time=self._now())
            self._put(entity, raw)

    def merge(self, entity: Entity, loser: int, survivor: int) -> None:
        """``loser`` merged into ``survivor``: the loser is deleted with ``merged_to_id``; a
        merged organization's persons move to the survivor."""
        with self._lock:
            self.delete(entity, loser)
            self.tables[entity].overrides[loser]["merged_to_id"] = survivor
            self.update(entity, survivor)
            if entity == "organizations":
                for person_id in range(1, self.count("persons") + 1):
                    raw = self.get("persons", person_id)
                    if raw is not None and raw.get("org_id") == loser:
                        self.update("persons", person_id, org_id=survivor)

    # -- queries ------------------------------------------------------------------------------

    def window(self, entity: Entity, since: str | None, until: str | None) -> list[int]:
        """Ids updated in ``[since, until]`` in update order (then id order); the answer is
        kept until the data changes, so paging through a window scans the records once."""
        key = (entity, since, until, self.version)
        with self._lock:
            if self._window_cache is not None and self._window_cache[0] == key:
                return self._window_cache[1]
            found = self._scan(entity, since, until)
            self._window_cache = (key, found)
            return found

    def _scan(self, entity: Entity, since: str | None, until: str | None) -> list[int]:
        low = datetime.fromisoformat(since) if since else None
        high = datetime.fromisoformat(until) if until else None
        found: list[tuple[datetime, int]] = []
        with self._lock:
            for record_id in range(1, self.count(entity) + 1):
                raw = self.tables[entity].get(record_id)
                if raw is None:
                    continue
                moment = datetime.fromisoformat(str(raw["update_time"]))
                if (low is None or moment >= low) and (high is None or moment <= high):
                    found.append((moment, record_id))
        found.sort()
        return [record_id for _, record_id in found]


@dataclass
class OAuthConfig:
    """The OAuth app the fake token endpoint accepts. Mutable while the server runs."""

    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    refresh_token: str = "fake-refresh-token"
    expires_in: int = 3599


class RequestStats:
    """What the fake served: ``count``, ``by_endpoint`` (``"GET /api/v2/persons"``) and
    ``by_status``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.queries: list[tuple[str, dict[str, list[str]]]] = []

    def record(self, endpoint: str, status: int, query: dict[str, list[str]]) -> None:
        with self._lock:
            self.count += 1
            self.by_endpoint[endpoint] += 1
            self.by_status[status] += 1
            if len(self.queries) < 10_000:
                self.queries.append((endpoint, query))

    def reset(self) -> None:
        with self._lock:
            self.count = 0
            self.by_endpoint.clear()
            self.by_status.clear()
            self.queries.clear()


@dataclass
class _Response:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return _Response(status, json.dumps(payload, ensure_ascii=False).encode(), extra)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Response:
    return _json(status, {"success": False, "error": message, "error_info": ""}, headers)


class _Server(uvicorn.Server):
    """uvicorn's server, stopped by ``should_exit`` without its 0.1 s polling delay on exit."""

    async def main_loop(self) -> None:
        while not await self.on_tick(0):
            await asyncio.sleep(0.01)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class FakePipedrive:
    """A running fake Pipedrive. Settings are plain attributes and may change while it runs."""

    def __init__(
        self,
        data: PipedriveData,
        *,
        latency: float = 0.0,
        rate_limit: int | None = None,
        daily_limit: int | None = None,
        token: str | None = DEFAULT_TOKEN,
        oauth: OAuthConfig | None = None,
    ) -> None:
        self.data = data
        self.latency = latency
        self.rate_limit = rate_limit
        """Requests per 2-second window, enforced (``None``: 80 stated, nothing enforced)."""
        self.daily_limit = daily_limit
        self.daily_used = 0
        self.token = token
        self.oauth = oauth
        self.requests = RequestStats()
        self.url = ""
        self.writes: list[tuple[int, dict[str, Any]]] = []
        self.expire_tokens_after: int | None = None
        """After this many requests, every OAuth access token handed out expires (once)."""
        self._window: deque[float] = deque()
        self._access_tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> FakePipedrive:
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=port,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            server_header=False,
        )
        server = _Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-pipedrive", daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake Pipedrive server did not start")
            time.sleep(0.001)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakePipedrive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def expire_access_tokens(self) -> None:
        """Every OAuth access token handed out so far is refused from now on (401)."""
        with self._lock:
            self._access_tokens.clear()

    # -- the ASGI app ------------------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        endpoint, response = self._handle(method, path, query, headers, b"".join(chunks))
        self.requests.record(endpoint, response.status, query)
        head = [(b"content-type", b"application/json"), *response.headers]
        head.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": head})
        await send({"type": "http.response.body", "body": response.body})

    def _handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[str, _Response]:
        if method == "POST" and path == "/oauth/token":
            return "POST /oauth/token", self._token(headers, body)
        parts = path.strip("/").split("/")
        entity = parts[2] if len(parts) >= 3 and parts[:2] == ["api", "v2"] else ""
        endpoint = f"{method} {path}" if len(parts) <= 3 else f"{method} /api/v2/{entity}/{{id}}"
        if self.expire_tokens_after is not None and self.requests.count >= self.expire_tokens_after:
            self.expire_tokens_after = None
            self.expire_access_tokens()
        if not self._authorized(headers):
            return endpoint, _error(401, "unauthorized access")
        limited = self._spend()
        if limited is not None:
            return endpoint, limited
        rate = self._rate_headers()
        if method == "GET" and entity in ENTITIES and len(parts) == 3:
            response = self._list(entity, query)
        elif method == "GET" and entity in ("organizationFields", "personFields"):
            fields = ORGANIZATION_FIELDS if entity == "organizationFields" else PERSON_FIELDS
            response = _json(200, {"success": True, "data": fields, "additional_data": {}})
        elif method == "PATCH" and entity == "organizations" and len(parts) == 4:
            response = self._patch(parts[3], body)
        else:
            response = _error(404, f"unknown route {method} {path}")
        response.headers += [(k.encode(), v.encode()) for k, v in rate.items()]
        return endpoint, response

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.token is not None and headers.get("x-api-token") == self.token:
            return True
        bearer = headers.get("authorization", "")
        if not bearer.startswith("Bearer "):
            return False
        with self._lock:
            expiry = self._access_tokens.get(bearer.removeprefix("Bearer "))
        return expiry is not None and expiry > time.monotonic()

    def _spend(self) -> _Response | None:
        """Count the request against the daily budget and the window; a 429 when over."""
        with self._lock:
            now = time.monotonic()
            if self.daily_limit is not None:
                if self.daily_used >= self.daily_limit:
                    midnight = 86_400 - int(time.time()) % 86_400
                    headers = {
                        "x-ratelimit-limit": str(self.rate_limit or 80),
                        "x-ratelimit-remaining": "0",
                        "x-ratelimit-reset": str(midnight),
                        "x-daily-requests-left": "0",
                    }
                    return _error(429, "Daily API token budget exceeded", headers)
                self.daily_used += 1
            while self._window and self._window[0] <= now - WINDOW_SECONDS:
                self._window.popleft()
            if self.rate_limit is not None and len(self._window) >= self.rate_limit:
                reset = self._window[0] + WINDOW_SECONDS - now
                headers = {
                    "x-ratelimit-limit": str(self.rate_limit),
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": f"{max(reset, 0.001):.3f}",
                }
                return _error(429, "Request over limit", headers)
            self._window.append(now)
        return None

    def _rate_headers(self) -> dict[str, str]:
        with self._lock:
            used = len(self._window)
            headers = {
                "x-ratelimit-limit": str(self.rate_limit or 80),
                "x-ratelimit-remaining": str(
                    max(0, self.rate_limit - used) if self.rate_limit else 80
                ),
                "x-ratelimit-reset": "2",
            }
            if self.daily_limit is not None:
                headers["x-daily-requests-left"] = str(self.daily_limit - self.daily_used)
        return headers

    def _token(self, headers: dict[str, str], body: bytes) -> _Response:
        oauth = self.oauth
        if oauth is None:
            return _error(404, "OAuth is not enabled on this fake")
        form = parse_qs(body.decode())
        basic = base64.b64encode(f"{oauth.client_id}:{oauth.client_secret}".encode()).decode()
        if headers.get("authorization") != f"Basic {basic}":
            return _json(401, {"error": "invalid_client"})
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token") != [
            oauth.refresh_token
        ]:
            return _json(400, {"error": "invalid_grant", "message": "Invalid refresh token"})
        token = f"access-{uuid.uuid4().hex}"
        with self._lock:
            self._access_tokens[token] = time.monotonic() + oauth.expires_in
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "refresh_token": oauth.refresh_token,
            "expires_in": oauth.expires_in,
            "scope": "base,contacts:full",
            "api_domain": self.url,
        }
        return _json(200, answer)

    def _list(self, entity: Entity, query: dict[str, list[str]]) -> _Response:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        try:
            limit = int(one("limit") or 100)
        except ValueError:
            return _error(400, "limit must be an integer")
        if not 1 <= limit <= LIST_MAX_LIMIT:
            return _error(400, f"limit must be between 1 and {LIST_MAX_LIMIT}")
        if (ids := one("ids")) is not None:
            wanted = [int(i) for i in ids.split(",") if i.strip().isdigit()]
            if len(wanted) > IDS_MAX:
                return _error(400, f"at most {IDS_MAX} ids")
            found = [r for r in (self.data.get(entity, i) for i in wanted) if r is not None]
            return _json(
                200, {"success": True, "data": found, "additional_data": {"next_cursor": None}}
            )
        try:
            start = int(base64.urlsafe_b64decode(one("cursor") or "MA==").decode())
        except ValueError:
            return _error(400, "invalid cursor")
        since, until = one("updated_since"), one("updated_until")
        if one("sort_by") == "update_time" or since or until:
            window = self.data.window(entity, since, until)
            chunk_ids = window[start : start + limit]
            more = start + limit < len(window)
        else:
            total = self.data.count(entity)
            chunk_ids = list(range(start + 1, min(start + limit, total) + 1))
            more = start + limit < total
        data = [r for r in (self.data.get(entity, i) for i in chunk_ids) if r is not None]
        following = base64.urlsafe_b64encode(str(start + limit).encode()).decode() if more else None
        return _json(
            200, {"success": True, "data": data, "additional_data": {"next_cursor": following}}
        )

    def _patch(self, raw_id: str, body: bytes) -> _Response:
        if not raw_id.isdigit() or self.data.get("organizations", int(raw_id)) is None:
            return _error(404, "Organization not found")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "the body is not JSON")
        custom = payload.get("custom_fields") if isinstance(payload, dict) else None
        if not isinstance(custom, dict) or not set(custom) <= {TAX_KEY, ALIAS_KEY, CUSTOMER_ID_KEY}:
            return _error(400, "unknown custom field")
        with self._lock:
            self.writes.append((int(raw_id), custom))
        updated = self.data.update("organizations", int(raw_id), custom_fields=custom)
        return _json(200, {"success": True, "data": updated})


def run_fake_pipedrive(
    data: PipedriveData | None = None,
    *,
    latency: float = 0.0,
    rate_limit: int | None = None,
    daily_limit: int | None = None,
    token: str | None = DEFAULT_TOKEN,
    oauth: OAuthConfig | None = None,
) -> FakePipedrive:
    """Start a fake Pipedrive on 127.0.0.1 (a free port) and return it, running.

    Use it as a context manager (``with run_fake_pipedrive(data) as fake:``) or call
    ``stop()``. ``rate_limit`` enforces that many requests per 2-second window;
    ``daily_limit`` a daily budget of requests; ``token`` is the API token (``None``: OAuth
    only); ``oauth`` enables ``POST /oauth/token``.
    """
    fake = FakePipedrive(
        data if data is not None else PipedriveData(),
        latency=latency,
        rate_limit=rate_limit,
        daily_limit=daily_limit,
        token=token,
        oauth=oauth,
    )
    return fake.start()
