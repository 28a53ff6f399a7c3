"""A fake Sequence billing API, served over real HTTP on 127.0.0.1, for tests and benchmarks.

Test infrastructure only: no production code imports this module.

Usage::

    with run_fake_sequence() as fake:
        config = BillingConfig(base_url=fake.url, username=SecretStr(fake.username),
                               password=SecretStr(fake.password))
        with SequenceClient(config) as client:
            ...
        assert fake.invalid_requests == []

Every request is validated against Sequence's OpenAPI document (the copy shipped in
``crmsync.billing``) with openapi-core: path, query, headers (``Authorization`` is a
required header there) and body. A request that does not conform is answered 400 with
the validation error and kept in :attr:`FakeSequence.invalid_requests`, so any test that
talks to the fake proves the requests it sends are valid. The rules the document states
in prose are enforced too: at least one ``PRIMARY`` contact, a ``state`` for US and CA
addresses, ``limit`` 1-100, an ``Idempotency-Key`` of at most 255 characters. With
``validate_responses`` (the default) the fake checks its own answers against the
document as well and answers 500 if one does not conform (a bug in the fake).

State: :class:`SequenceData` keeps customers, aliases, billing schedules and invoices
in memory, as the API's JSON. Aliases are globally unique, exact strings (a customer's
id is always one of its aliases); a second holder is refused with
``alias_conflict_status`` (400 by default: the document lists no 409 for these
endpoints). ``POST /customer-aliases`` honours ``Idempotency-Key`` (24 h): the same key
with the same body replays the first answer without acting again.

Endpoints: ``GET|POST /customers``, ``GET|PUT /customers/{id}``,
``GET /customers/by-alias/{alias}``, ``POST /customers/{id}/archive`` (archives the
customer's billing schedules and voids its DRAFT invoices), ``GET /customers/{id}/aliases``,
``GET|POST /customer-aliases``, ``DELETE /customer-aliases/{id}``,
``GET /billing-schedules``, ``POST /billing-schedules/{id}/archive``, ``GET /invoices``,
``POST /invoices/{id}/void``. Other documented endpoints answer 501.

Faults: :meth:`FakeSequence.fail_next` (any status, 429 with ``Retry-After``),
:meth:`~FakeSequence.malformed_next`, :meth:`~FakeSequence.slow_next` (answer late; by
default the write is done before the wait, as when a client times out on a request the
API carried out), and a rolling ``rate_limit`` answering 429 with ``Retry-After``.

Choices where Sequence's documentation is silent are marked "Assumption" in the code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, unquote

import uvicorn
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

from crmsync.billing.spec import openapi_document

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "FakeSequence",
    "SequenceData",
    "SequenceRequest",
    "run_fake_sequence",
]

DEFAULT_USERNAME = "fake-sequence-client-id"
DEFAULT_PASSWORD = "fake-sequence-client-secret-0f3a"
ACCOUNT_ID = "683fe518-60c8-429f-9320-8aa7efc20bcc"
#: The host and base path of the document's server: validated requests are placed there.
_DOCUMENT_HOST = "https://sandbox.sequencehq.com"
_BASE_PATH = "/api"
IDEMPOTENCY_SECONDS = 24 * 3600
MAX_LIMIT = 100
#: "State or province (required for USA and Canada)" (the document's Address.state).
STATE_REQUIRED_COUNTRIES = frozenset({"US", "CA"})
_BILLING_CONTACT = {
    "name": "Billing",
    "email": "billing@example.com",
    "billingPreference": "PRIMARY",
}


@cache
def _openapi() -> OpenAPI:
    # The document is Sequence's own: validating the document itself (0.8 s) adds nothing.
    return OpenAPI.from_dict(openapi_document(), config=Config(spec_validator_cls=None))


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# The data
# --------------------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class SequenceData:
    """The billing account: objects kept as the API's JSON, keyed by id."""

    clock: Callable[[], float] = time.time
    alias_conflict_status: int = 400
    #: Assumption: aliases compare as exact strings (undocumented); ``False`` makes
    #: values differing only by case collide, to test the other possibility.
    aliases_case_sensitive: bool = True
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # ---- helpers for tests ------------------------------------------------------------------

    def add_customer(
        self,
        legal_name: str = "Existing Ltd",
        *,
        aliases: Iterable[str] = (),
        contacts: list[dict[str, str]] | None = None,
        country: str = "GB",
    ) -> dict[str, Any]:
        """A customer made on the billing side (``contacts``: name, email, billingPreference)."""
        body: dict[str, Any] = {
            "legalName": legal_name,
            "address": {"line1": "1 High Street", "town": "Leeds", "postcode": "LS1 1AA"}
            | {"country": country}
            | ({"state": "NY"} if country == "US" else {}),
            "contacts": contacts
            or [
                {"name": "Billing", "email": "billing@example.com", "billingPreference": "PRIMARY"}
            ],
            "taxStatus": "TAXED",
            "customerAliases": list(aliases),
        }
        with self.lock:
            return self.create_customer(body)

    def add_billing_schedule(self, customer_id: str, status: str = "ACTIVE") -> dict[str, Any]:
        now = _iso(self.clock())
        schedule: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "customerId": customer_id,
            "status": status,
            "startDate": "2026-01-01",
            "autoIssueInvoices": False,
            "prices": [],
            "phases": [],
            "rollUpBilling": False,
            "integrationIds": [],
            "attachmentAssets": [],
            "customFields": {},
            "createdAt": now,
            "updatedAt": now,
        }
        with self.lock:
            self.schedules[schedule["id"]] = schedule
        return schedule

    def add_invoice(
        self,
        customer_id: str,
        status: str = "DRAFT",
        *,
        payment_status: str = "UNPAID",
        billing_schedule_id: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            customer = self.customers[customer_id]
            now = _iso(self.clock())
            invoice = {
                "id": str(uuid.uuid4()),
                "sequenceAccountId": ACCOUNT_ID,
                "status": status,
                "paymentStatus": payment_status,
                "currency": "EUR",
                "customerId": customer_id,
                "customerEmails": [c["email"] for c in customer["contacts"]],
                "customerLegalCompanyName": customer["legalName"],
                "customerBillingAddress": customer["address"],
                "customerShippingAddress": customer["address"],
                "netTotal": "100.00",
                "totalTax": "20.00",
                "grossTotal": "120.00",
                "metadata": [],
                "creditNoteIds": [],
                "linkedServices": [],
                "renderSettings": {"paymentLinkDisplay": "SHOW_PAYMENT_LINK"},
                "isCustomerArchived": customer.get("archivedAt") is not None,
                "accountingDate": "2026-01-31",
                "createdAt": now,
                "updatedAt": now,
            }
            if billing_schedule_id is not None:
                invoice["billingScheduleId"] = billing_schedule_id
            self.invoices[invoice["id"]] = invoice
        return invoice

    def alias_owner(self, value: str) -> str | None:
        """The id of the customer holding ``value`` (an alias or its own id), if any."""

        def same(stored: str) -> bool:
            return stored == value or (
                not self.aliases_case_sensitive and stored.casefold() == value.casefold()
            )

        with self.lock:
            if value in self.customers:
                return value
            for alias in self.aliases.values():
                if same(alias["value"]):
                    return str(alias["customerId"])
        return None

    def customer_aliases(self, customer_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for a in self.aliases.values() if a["customerId"] == customer_id]

    # ---- the API's operations (called under the lock) ----------------------------------------

    def create_customer(self, body: dict[str, Any]) -> dict[str, Any]:
        values = list(dict.fromkeys(body.get("customerAliases") or []))
        for value in values:
            self._check_alias_free(value, None)
        now = self.clock()
        customer_id = str(uuid.uuid4())
        customer = {
            "id": customer_id,
            "createdAt": _iso(now),
            "organizations": [],
            "legalName": body["legalName"],
            "address": body["address"],
            "integrationIds": _integration_ids(body.get("integrationIds") or []),
            "taxStatus": body["taxStatus"],
            "contacts": _contacts(body["contacts"], [], now),
            "status": body.get("status", "ACTIVE"),
            "customProperties": body.get("customProperties") or {},
        }
        for key in ("url", "label"):
            if key in body:
                customer[key] = body[key]
        self.customers[customer_id] = customer
        for value in values:
            self._add_alias(customer_id, value, "CRM ID")
        return customer

    def update_customer(self, customer_id: str, body: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(customer_id)
        new_aliases = [
            v for v in dict.fromkeys(body.get("customerAliases") or []) if v != customer_id
        ]
        for value in new_aliases:
            self._check_alias_free(value, customer_id)
        customer.update(
            legalName=body["legalName"],
            address=body["address"],
            taxStatus=body["taxStatus"],
            # PUT replaces every contact (documented); Assumption: a contact whose email
            # is unchanged keeps its id and creation time.
            contacts=_contacts(body["contacts"], customer["contacts"], self.clock()),
        )
        for key in ("url", "label", "status"):
            if key in body:
                customer[key] = body[key]
        if "customProperties" in body:  # documented: given replaces all, omitted keeps
            customer["customProperties"] = body["customProperties"]
        if "integrationIds" in body:  # Assumption: given replaces the list
            customer["integrationIds"] = _integration_ids(body["integrationIds"])
        for value in new_aliases:  # Assumption: listed aliases are added, none removed
            if self.alias_owner(value) is None:
                self._add_alias(customer_id, value, "CRM ID")
        return customer

    def archive_customer(self, customer_id: str) -> dict[str, Any]:
        customer = self._customer(customer_id)
        if customer.get("archivedAt") is None:  # Assumption: archiving again is a no-op
            now = _iso(self.clock())
            customer["archivedAt"] = now
            for schedule in self.schedules.values():
                if schedule["customerId"] == customer_id and "archivedAt" not in schedule:
                    schedule["archivedAt"] = schedule["updatedAt"] = now
            for invoice in self.invoices.values():
                if invoice["customerId"] == customer_id:
                    invoice["isCustomerArchived"] = True
                    if invoice["status"] == "DRAFT":
                        invoice["status"], invoice["updatedAt"] = "VOIDED", now
        return customer

    def create_alias(self, body: dict[str, Any]) -> dict[str, Any]:
        customer_id = str(body["customerId"])
        self._customer(customer_id)
        self._check_alias_free(str(body["value"]), None)
        return self._add_alias(customer_id, str(body["value"]), body.get("label"))

    def void_invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise _Refused(404, f"Invoice {invoice_id} not found")
        voidable = invoice["status"] in ("DRAFT", "FINAL") or (
            invoice["status"] == "SENT" and invoice["paymentStatus"] in ("UNPAID", "UNCOLLECTIBLE")
        )
        if not voidable:
            raise _Refused(
                400,
                f"Invoice with status {invoice['status']} and payment status "
                f"{invoice['paymentStatus']} cannot be voided",
            )
        invoice["status"], invoice["updatedAt"] = "VOIDED", _iso(self.clock())
        return invoice

    def archive_schedule(self, schedule_id: str) -> dict[str, Any]:
        schedule = self.schedules.get(schedule_id)
        if schedule is None:
            raise _Refused(404, f"Billing schedule {schedule_id} not found")
        if "archivedAt" not in schedule:
            schedule["archivedAt"] = schedule["updatedAt"] = _iso(self.clock())
        return schedule

    def by_alias(self, value: str) -> dict[str, Any]:
        owner = self.alias_owner(value)
        if owner is None:
            # Assumption: 404 (the document lists only 400, 401 and 500 here).
            raise _Refused(404, f"No customer with alias {value}")
        customer = self.customers[owner]
        billing = [c for c in customer["contacts"] if c["billingPreference"] != "NONE"]
        primary = next((c for c in billing if c["billingPreference"] == "PRIMARY"), None)
        shape = {
            key: customer[key]
            for key in ("id", "createdAt", "legalName", "address", "integrationIds", "taxStatus")
        }
        shape["email"] = primary["email"] if primary else ""
        shape["billingEmails"] = [c["email"] for c in billing]
        for key in ("url", "label", "archivedAt"):
            if key in customer:
                shape[key] = customer[key]
        if primary is not None:
            shape["contactName"] = primary["name"]
        return shape

    def _customer(self, customer_id: str) -> dict[str, Any]:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise _Refused(404, f"Customer {customer_id} not found")
        return customer

    def _check_alias_free(self, value: str, customer_id: str | None) -> None:
        owner = self.alias_owner(value)
        if owner is not None and owner != customer_id:
            raise _Refused(
                self.alias_conflict_status,
                f"Customer alias '{value}' is already in use by customer {owner}",
            )

    def _add_alias(self, customer_id: str, value: str, label: object) -> dict[str, Any]:
        alias = {
            "id": str(uuid.uuid4()),
            "sequenceAccountId": ACCOUNT_ID,
            "customerId": customer_id,
            "value": value,
            "createdAt": _iso(self.clock()),
        }
        if isinstance(label, str):
            alias["label"] = label
        self.aliases[alias["id"]] = alias
        return alias


def _contacts(
    wanted: list[dict[str, Any]], existing: list[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    by_email = {c["email"]: c for c in existing}
    contacts = []
    for contact in wanted:
        before = by_email.get(contact["email"])
        contacts.append(
            {
                "id": before["id"] if before else str(uuid.uuid4()),
                "name": contact["name"],
                "email": contact["email"],
                "billingPreference": contact["billingPreference"],
                "createdAt": before["createdAt"] if before else _iso(now),
                "updatedAt": _iso(now),
            }
        )
    return contacts


def _integration_ids(given: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"service": i["service"], "id": i["id"], "isPending": False} for i in given]


def _summary(customer: dict[str, Any]) -> dict[str, Any]:
    """A customer as ``GET /customers`` lists it (ListCustomerResponseModel)."""
    return {k: v for k, v in customer.items() if k not in ("contacts", "status")}


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
_JSON = "application/json"


@dataclass
class _Response:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _json(status: int, payload: object) -> _Response:
    return _Response(status, json.dumps(payload, separators=(",", ":")).encode())


def _error(status: int, message: str) -> _Response:
    # Assumption: errors come back as {"message": ...}; the document gives them no body.
    return _json(status, {"message": message})


@dataclass
class _OpenApiRequest:
    """A request as openapi-core reads it (its ``Request`` protocol)."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters


@dataclass
class _OpenApiResponse:
    status_code: int
    data: bytes | None
    headers: Headers
    content_type: str = _JSON


@dataclass
class SequenceRequest:
    """One request the fake received, and what it answered (``status`` 0: not yet)."""

    method: str
    path: str
    endpoint: str
    status: int
    body: Any = None
    idempotency_key: str | None = None
    problem: str | None = None
    fault: str | None = None


@dataclass
class _Fault:
    kind: Literal["fail", "malformed", "slow"]
    remaining: int
    path_prefix: str | None
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    act_first: bool = True


_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/customers", "list_customers"),
    ("POST", "/customers", "create_customer"),
    ("GET", "/customers/by-alias/{alias}", "by_alias"),
    ("GET", "/customers/{id}", "get_customer"),
    ("PUT", "/customers/{id}", "update_customer"),
    ("POST", "/customers/{id}/archive", "archive_customer"),
    ("GET", "/customers/{id}/aliases", "customer_aliases"),
    ("GET", "/customer-aliases", "list_aliases"),
    ("POST", "/customer-aliases", "create_alias"),
    ("DELETE", "/customer-aliases/{id}", "delete_alias"),
    ("GET", "/billing-schedules", "list_schedules"),
    ("POST", "/billing-schedules/{id}/archive", "archive_schedule"),
    ("GET", "/invoices", "list_invoices"),
    ("POST", "/invoices/{id}/void", "void_invoice"),
)


def _route(method: str, segments: list[str]) -> tuple[str | None, str, dict[str, str]]:
    """(handler name, endpoint template, path parameters) for decoded path segments."""
    for route_method, template, name in _ROUTES:
        parts = template.strip("/").split("/")
        if route_method != method or len(parts) != len(segments):
            continue
        params: dict[str, str] = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                params[part[1:-1]] = segment
            elif part != segment:
                break
        else:
            return name, f"{method} {template}", params
    return None, f"{method} /{'/'.join(segments)}", {}


class _RollingWindow:
    def __init__(self, limit: int, seconds: float) -> None:
        self.limit, self.seconds = limit, seconds
        self.hits: deque[float] = deque()

    def wait(self, now: float) -> float:
        """0 and count the hit if one more fits; else seconds until one does."""
        while self.hits and self.hits[0] <= now - self.seconds:
            self.hits.popleft()
        if len(self.hits) < self.limit:
            self.hits.append(now)
            return 0.0
        return self.hits[0] + self.seconds - now


class _Server(uvicorn.Server):
    """uvicorn's server, stopped at once by ``request_exit``."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request_exit(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(wake.set)

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        ticks = 0
        while not await self.on_tick(ticks):
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            ticks += 10


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class FakeSequence:
    """A running fake Sequence. Settings are plain attributes and may change while it runs."""

    def __init__(
        self,
        data: SequenceData,
        *,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        rate_limit: tuple[int, float] | None = None,
        latency: float = 0.0,
        validate_responses: bool = True,
        require_version: bool = True,
    ) -> None:
        self.data = data
        self.username = username
        self.password = password
        self.latency = latency
        self.validate_responses = validate_responses
        self.require_version = require_version
        self.requests: list[SequenceRequest] = []
        self.url = ""
        self._window = _RollingWindow(*rate_limit) if rate_limit else None
        self._faults: list[_Fault] = []
        self._idempotency: dict[str, tuple[float, str, _Response]] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> FakeSequence:
        if self._thread is not None:
            raise RuntimeError("already started")
        _openapi()  # parse the document before the first request, not during it
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{_BASE_PATH}"
        config = uvicorn.Config(
            _App(self),
            host="127.0.0.1",
            port=port,
            loop="asyncio",
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
        )
        server = _Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fake-sequence", daemon=True
        )
        self._server, self._thread, self._socket = server, thread, sock
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake Sequence server did not start")
            time.sleep(0.001)
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping = True
        server.request_exit()
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeSequence:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- test controls -----------------------------------------------------------------------

    @property
    def invalid_requests(self) -> list[SequenceRequest]:
        """Requests that did not conform to the OpenAPI document (answered 400)."""
        with self._lock:
            return [r for r in self.requests if r.problem is not None]

    @property
    def by_endpoint(self) -> Counter[str]:
        """How many requests each endpoint got, e.g. ``"POST /customers"``."""
        with self._lock:
            return Counter(r.endpoint for r in self.requests)

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        retry_after: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Answer the next ``n`` requests (whose path starts with ``path_prefix``, e.g.
        ``"/customers"``) with ``status``, doing nothing (``retry_after``: its header)."""
        self._add(_Fault("fail", n, path_prefix, status=status, retry_after=retry_after))

    def malformed_next(self, n: int = 1, *, path_prefix: str | None = None) -> None:
        """Act on the next ``n`` requests but cut their answers' JSON in half."""
        self._add(_Fault("malformed", n, path_prefix))

    def slow_next(
        self,
        n: int = 1,
        seconds: float = 30.0,
        *,
        path_prefix: str | None = None,
        act_first: bool = True,
    ) -> None:
        """Answer the next ``n`` requests ``seconds`` late; with ``act_first`` (default) the
        request is carried out before the wait, as by an API a client timed out on."""
        self._add(_Fault("slow", n, path_prefix, seconds=seconds, act_first=act_first))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def auth_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"

    # ---- internals ---------------------------------------------------------------------------

    def _add(self, fault: _Fault) -> None:
        if fault.remaining > 0:
            with self._lock:
                self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path_prefix is None or path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, record: SequenceRequest) -> None:
        with self._lock:
            self.requests.append(record)


def run_fake_sequence(
    data: SequenceData | None = None,
    *,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    rate_limit: tuple[int, float] | None = None,
    latency: float = 0.0,
    validate_responses: bool = True,
    require_version: bool = True,
) -> FakeSequence:
    """Start a fake Sequence on 127.0.0.1 (free port) and return it, running.

    ``rate_limit=(requests, window_seconds)`` answers 429 with ``Retry-After`` past a
    rolling window (Sequence documents 100 per minute); ``latency`` delays every answer;
    ``require_version`` refuses requests without ``Sequence-Version`` (400).
    """
    fake = FakeSequence(
        data if data is not None else SequenceData(),
        username=username,
        password=password,
        rate_limit=rate_limit,
        latency=latency,
        validate_responses=validate_responses,
        require_version=require_version,
    )
    return fake.start()


class _App:
    """The raw ASGI application behind :class:`FakeSequence`."""

    def __init__(self, fake: FakeSequence) -> None:
        self.fake = fake
        self.data = fake.data

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        response, _ = await self.handle(scope, b"".join(chunks))
        headers = [
            (b"content-type", _JSON.encode()),
            (b"content-length", str(len(response.body)).encode()),
            *response.headers,
        ]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def handle(self, scope: Scope, body: bytes) -> tuple[_Response, SequenceRequest]:
        fake = self.fake
        method: str = scope["method"]
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        path = raw_path.removeprefix(_BASE_PATH) if raw_path.startswith(_BASE_PATH) else raw_path
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        name, endpoint, params = _route(method, segments)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        record = SequenceRequest(
            method, path, endpoint, 0, _parsed(body), headers.get("idempotency-key")
        )
        fake._record(record)  # on arrival (status 0 until answered): a client may check at once
        fault = fake._take_fault(path)
        if fake.latency > 0:
            await asyncio.sleep(fake.latency)
        if fault is not None and fault.kind == "slow" and not fault.act_first:
            await self._wait(fault.seconds)
        if fault is not None and fault.kind == "fail":
            record.fault = "fail"
            response = _error(fault.status, "Injected failure")
            if fault.retry_after is not None:
                response.headers.append((b"retry-after", fault.retry_after.encode()))
        else:
            response = self.serve(scope, raw_path, body, headers, name, params, record)
        if fault is not None and fault.kind == "slow":
            record.fault = "slow"
            if fault.act_first:
                await self._wait(fault.seconds)
        if fault is not None and fault.kind == "malformed":
            record.fault = "malformed"
            response.body = response.body[: max(1, len(response.body) // 2)]
        record.status = response.status
        return response, record

    async def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.fake._stopping and time.monotonic() < deadline:
            await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def serve(
        self,
        scope: Scope,
        raw_path: str,
        body: bytes,
        headers: dict[str, str],
        name: str | None,
        params: dict[str, str],
        record: SequenceRequest,
    ) -> _Response:
        fake = self.fake
        if fake._window is not None:
            with fake._lock:
                wait = fake._window.wait(time.monotonic())
            if wait > 0:
                response = _error(429, "Too many requests")
                response.headers.append((b"retry-after", str(max(1, round(wait))).encode()))
                return response
        if headers.get("authorization") != fake.auth_header:
            return _error(401, "Unauthorized")
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        request = _OpenApiRequest(
            host_url=_DOCUMENT_HOST,
            path=raw_path if raw_path.startswith(_BASE_PATH) else _BASE_PATH + raw_path,
            method=scope["method"].lower(),
            body=body or None,
            content_type=headers.get("content-type", ""),
            parameters=RequestParameters(
                query=ImmutableMultiDict([(k, v) for k, vs in query.items() for v in vs]),
                header=Headers(list(headers.items())),
                cookie=ImmutableMultiDict(),
                path={},
            ),
        )
        problem = self.validate(request, headers, query)
        if problem is not None:
            record.problem = problem
            status = 404 if problem.startswith("Path not found") else 400
            return _error(405 if problem.startswith("Operation") else status, problem)
        if name is None:
            return _error(501, f"The fake does not serve {record.endpoint}")
        response = self.dispatch(name, params, query, _parsed(body), record.idempotency_key)
        if fake.validate_responses and response.status < 300:
            off_spec = self.validate_response(request, response)
            if off_spec is not None:
                return _error(500, f"The fake answered off the document: {off_spec}")
        return response

    def validate(
        self, request: _OpenApiRequest, headers: dict[str, str], query: dict[str, list[str]]
    ) -> str | None:
        try:
            _openapi().validate_request(request)
        except (PathNotFound, OperationNotFound) as exc:
            return str(exc)
        except Exception as exc:  # openapi-core's validation errors share no public base
            return _describe(exc)
        if self.fake.require_version and "sequence-version" not in headers:
            return "Missing header parameter: Sequence-Version (API version 2024-07-30)"
        limit = query.get("limit")
        if limit and not 1 <= int(limit[-1]) <= MAX_LIMIT:
            return f"limit must be between 1 and {MAX_LIMIT} (inclusive), got {limit[-1]}"
        key = headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 255:
            return "Idempotency-Key must be 1 to 255 characters"
        body = _parsed(request.body or b"")
        if isinstance(body, dict) and "contacts" in body and "legalName" in body:
            return _customer_rules(body)
        return None

    def validate_response(self, request: _OpenApiRequest, response: _Response) -> str | None:
        answer = _OpenApiResponse(response.status, response.body, Headers())
        try:
            _openapi().validate_response(request, answer)
        except Exception as exc:  # as above
            return _describe(exc)
        return None

    def dispatch(
        self,
        name: str,
        params: dict[str, str],
        query: dict[str, list[str]],
        body: Any,
        key: str | None,
    ) -> _Response:
        data = self.data
        if name == "create_alias" and key is not None:
            return self._idempotent(
                key, body, lambda: self.dispatch(name, params, query, body, None)
            )
        try:
            with data.lock:
                return self._call(name, params, query, body)
        except _Refused as refused:
            return _error(refused.status, refused.message)

    def _call(
        self, name: str, params: dict[str, str], query: dict[str, list[str]], body: Any
    ) -> _Response:
        data, page = self.data, self._page
        arg = {k: v[-1] for k, v in query.items()}
        the_id = params.get("id", "")
        handlers: dict[str, Callable[[], tuple[int, Any]]] = {
            "list_customers": lambda: (200, page(self._customers(arg), arg)),
            "create_customer": lambda: (201, data.create_customer(body)),
            "by_alias": lambda: (200, data.by_alias(params["alias"])),
            "get_customer": lambda: (200, data._customer(the_id)),
            "update_customer": lambda: (200, data.update_customer(the_id, body)),
            "archive_customer": lambda: (200, data.archive_customer(the_id)),
            "customer_aliases": lambda: (200, self._aliases_of(the_id)),
            "list_aliases": lambda: (200, page(self._aliases(arg), arg)),
            "create_alias": lambda: (201, data.create_alias(body)),
            "delete_alias": lambda: (200, self._delete_alias(the_id)),
            "list_schedules": lambda: (200, page(self._schedules(arg), arg)),
            "archive_schedule": lambda: (200, data.archive_schedule(the_id)),
            "list_invoices": lambda: (200, page(self._invoices(arg), arg)),
            "void_invoice": lambda: (200, data.void_invoice(the_id)),
        }
        handler = handlers.get(name)
        if handler is None:
            raise _Refused(501, f"no handler {name}")
        return _json(*handler())

    def _aliases_of(self, customer_id: str) -> dict[str, Any]:
        """``GET /customers/{id}/aliases``: the shorter ``CustomerAlias`` shape, no labels."""
        self.data._customer(customer_id)
        keys = ("id", "sequenceAccountId", "customerId", "value", "createdAt")
        return {"items": [{k: a[k] for k in keys} for a in self.data.customer_aliases(customer_id)]}

    def _aliases(self, arg: dict[str, str]) -> list[dict[str, Any]]:
        value = arg.get("value")
        return [a for a in self.data.aliases.values() if value in (None, a["value"])]

    def _delete_alias(self, alias_id: str) -> dict[str, Any]:
        alias = self.data.aliases.pop(alias_id, None)
        if alias is None:
            raise _Refused(404, f"Customer alias {alias_id} not found")
        return alias | {"deletedAt": _iso(self.data.clock())}

    def _idempotent(self, key: str, body: Any, act: Callable[[], _Response]) -> _Response:
        fake = self.fake
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        now = self.data.clock()
        with self.data.lock:
            kept = fake._idempotency.get(key)
            if kept is not None and now - kept[0] < IDEMPOTENCY_SECONDS:
                if kept[1] != fingerprint:
                    # Assumption (as Stripe): a key reused for another request is refused.
                    return _error(400, "Idempotency-Key was used with a different request")
                return _Response(kept[2].status, kept[2].body, list(kept[2].headers))
            response = act()
            if response.status < 500:
                fake._idempotency[key] = (now, fingerprint, response)
            return response

    def _customers(self, arg: dict[str, str]) -> list[dict[str, Any]]:
        data = self.data
        customers = list(data.customers.values())
        if arg.get("includeArchived") != "true":
            customers = [c for c in customers if c.get("archivedAt") is None]
        if "alias" in arg:
            owner = data.alias_owner(arg["alias"])
            customers = [c for c in customers if c["id"] == owner]
        if "legalName" in arg:  # Assumption: exact match, ignoring case
            customers = [c for c in customers if c["legalName"].lower() == arg["legalName"].lower()]
        if "email" in arg:
            customers = [
                c for c in customers if any(k["email"] == arg["email"] for k in c["contacts"])
            ]
        return [_summary(c) for c in customers]

    def _schedules(self, arg: dict[str, str]) -> list[dict[str, Any]]:
        schedules = list(self.data.schedules.values())
        if "customerId" in arg:
            schedules = [s for s in schedules if s["customerId"] == arg["customerId"]]
        if arg.get("includeArchivedSchedules") != "true":  # Assumption: archived left out
            schedules = [s for s in schedules if "archivedAt" not in s]
        return schedules

    def _invoices(self, arg: dict[str, str]) -> list[dict[str, Any]]:
        invoices = list(self.data.invoices.values())
        if "customerId" in arg:
            invoices = [i for i in invoices if i["customerId"] == arg["customerId"]]
        if "invoiceStatus" in arg:  # Assumption: a comma-separated list, like the exclusions
            wanted = set(arg["invoiceStatus"].split(","))
            invoices = [i for i in invoices if i["status"] in wanted]
        return invoices

    def _page(self, items: list[dict[str, Any]], arg: dict[str, str]) -> dict[str, Any]:
        limit = int(arg.get("limit", "20"))  # Assumption: the default page size
        start = 0
        if "after" in arg:
            try:
                start = int(base64.urlsafe_b64decode(arg["after"].encode()).decode())
            except ValueError:
                raise _Refused(400, "Invalid pagination cursor") from None
        page = items[start : start + limit]
        pagination: dict[str, Any] = {"totalResultSize": len(items)}
        if start + limit < len(items):
            pagination["after"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        if start > 0:
            pagination["before"] = base64.urlsafe_b64encode(str(start).encode()).decode()
        return {"items": page, "pagination": pagination}


def _parsed(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _customer_rules(body: dict[str, Any]) -> str | None:
    """The document's prose rules on a customer body (its schema cannot say them)."""
    contacts = body.get("contacts") or []
    if not any(isinstance(c, dict) and c.get("billingPreference") == "PRIMARY" for c in contacts):
        return "contacts: needs at least one contact with a billing preference of PRIMARY"
    address = body.get("address") or {}
    if address.get("country") in STATE_REQUIRED_COUNTRIES and not address.get("state"):
        return f"address.state: required for country {address.get('country')}"
    return None


def _describe(exc: Exception) -> str:
    """openapi-core's error, with the schema errors that caused it (bounded)."""
    parts = [str(exc)]
    cause = exc.__cause__
    for error in getattr(cause, "schema_errors", ()) or ():
        where = "/".join(str(p) for p in getattr(error, "absolute_path", ()))
        parts.append(f"{where or 'body'}: {getattr(error, 'message', error)}")
    if cause is not None and not getattr(cause, "schema_errors", None):
        parts.append(str(cause))
    text = "; ".join(parts)
    return text if len(text) <= 2000 else text[:1997] + "..."
