"""A client for Sequence's Customers, Customer Aliases, Billing Schedules and Invoices APIs.

Only what a push, the invoice mirror and the archive cascade need (``openapi.json``
beside this module is the contract; https://docs.sequencehq.com/ the prose):

============================================  ==========================================
``find_customer_by_alias``                    ``GET /customers/by-alias/{alias}`` (404: None)
``list_customers``                            ``GET /customers`` (``alias``, ``legalName``,
                                              ``email``, ``includeArchived``; paged)
``get_customer`` / ``update_customer``        ``GET`` / ``PUT /customers/{id}``
``create_customer``                           ``POST /customers`` (see below)
``archive_customer``                          ``POST /customers/{id}/archive``
``create_alias``                              ``POST /customer-aliases`` + ``Idempotency-Key``
``list_aliases``                              ``GET /customers/{id}/aliases``
``list_billing_schedules``                    ``GET /billing-schedules?customerId=`` (paged)
``archive_billing_schedule``                  ``POST /billing-schedules/{id}/archive``
``list_invoices``                             ``GET /invoices?customerId=&invoiceStatus=``
``void_invoice``                              ``POST /invoices/{id}/void``
============================================  ==========================================

Every request carries HTTP Basic credentials and ``Sequence-Version: 2024-07-30``, waits
for the :class:`~crmsync.sdk.pacing.Pacer` (``requests_per_minute`` in any 60 s), and
is retried with tenacity (``max_attempts`` in all) on 429, 5xx, timeouts, connection
errors and malformed JSON, waiting what ``Retry-After`` asks or a jittered exponential
backoff. A 429 pauses every thread sharing the client. Any other 4xx raises a
:class:`~crmsync.billing.errors.BillingApiError` carrying the API's own message.

Writes that are not safe to repeat (``POST /customers``, ``POST /invoices/{id}/void``)
are retried only when the request cannot have reached the API (a 429, a refused
connection); after a timeout or a 5xx they raise
:class:`~crmsync.billing.errors.BillingOutcomeUnknown`, except that
:meth:`SequenceClient.create_customer` recovers by itself: it looks the customer up by
its first alias and returns it if the first attempt did create it, and sends the create
again only if not. Aliases are globally unique, so a second create can never make a
second customer with the same alias.

Pagination: list endpoints take ``limit`` (1-100) and ``after``, and answer
``pagination.after`` while more pages follow; a cursor that repeats is a
:class:`~crmsync.billing.errors.BillingProtocolError`, not an endless loop.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from crmsync.billing.config import BillingConfig
from crmsync.billing.errors import (
    AliasTaken,
    BillingApiError,
    BillingAuthError,
    BillingNotFound,
    BillingOutcomeUnknown,
    BillingProtocolError,
    BillingRateLimited,
    BillingTransientError,
)
from crmsync.billing.models import (
    AliasedCustomer,
    AliasEntry,
    AliasRequest,
    BillingSchedule,
    Customer,
    CustomerAlias,
    CustomerRequest,
    CustomerSummary,
    Invoice,
    InvoiceStatus,
    Page,
)
from crmsync.sdk.pacing import Pacer, parse_retry_after

__all__ = ["API_VERSION", "PAGE_SIZE", "SequenceClient", "alias_idempotency_key"]

logger = logging.getLogger(__name__)

API_VERSION = "2024-07-30"
PAGE_SIZE = 100
_MESSAGE_CHARS = 300
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
#: Failures after which the API may have carried the request out.
#: What the API answers a request it refuses for its content (an alias taken among them).
_REFUSALS = frozenset({400, 409, 422})
_AMBIGUOUS = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
    httpx.DecodingError,
)

M = TypeVar("M", bound=BaseModel)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def alias_idempotency_key(customer_id: str, value: str) -> str:
    """The ``Idempotency-Key`` of giving ``customer_id`` the alias ``value``: the same
    for the same pair, so a repeat within 24 h (after a crash) replays the first answer."""
    digest = hashlib.sha256(f"{customer_id}\x00{value}".encode()).hexdigest()
    return f"crm-sync-alias-{digest}"


class _Retry(Exception):
    """One attempt failed in a way worth another."""

    def __init__(self, message: str, *, wait: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.wait = wait


class SequenceClient:
    """Thread-safe client of Sequence's API; build one per process from a BillingConfig.

    ``transport`` replaces the network (respx, tests); ``sleep``, ``clock`` (monotonic
    seconds) and ``wall_clock`` (aware UTC, for an HTTP-date ``Retry-After``) replace
    time, and a fake ``sleep`` must advance a fake ``clock``. ``pacer`` may be shared.
    """

    def __init__(
        self,
        config: BillingConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._config = config
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._pacer = pacer or Pacer(config.requests_per_minute, 60.0, clock=clock, sleep=sleep)
        username, password = config.username.get_secret_value(), config.password.get_secret_value()
        auth = httpx.BasicAuth(username, password)
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        secrets = (password, username)
        #: Values never echoed in a message: longest first, so a longer one is masked whole.
        self._secrets = sorted({credentials, *(s for s in secrets if s)}, key=len, reverse=True)
        self._client = httpx.Client(
            base_url=config.base_url,
            auth=auth,
            headers={
                "Accept": "application/json",
                "Sequence-Version": API_VERSION,
                "User-Agent": "crm-sync",
            },
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            transport=transport,
        )
        self._counts = threading.Lock()
        #: HTTP attempts sent (retries included) and 429 answers seen.
        self.requests_sent = 0
        self.rate_limited = 0

    # ---- customers ---------------------------------------------------------------------

    def find_customer_by_alias(self, alias: str) -> AliasedCustomer | None:
        """The customer holding ``alias`` exactly, or ``None`` (the API answers 404)."""
        try:
            body = self._call("GET", f"customers/by-alias/{_segment(alias)}")
        except BillingNotFound:
            return None
        return _read(AliasedCustomer, body, "GET /customers/by-alias/{alias}")

    def list_customers(
        self,
        *,
        alias: str | None = None,
        legal_name: str | None = None,
        email: str | None = None,
        include_archived: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[CustomerSummary]:
        """Every customer matching the filters, page by page (without contacts)."""
        params: dict[str, str] = {"includeArchived": "true" if include_archived else "false"}
        for name, value in (("alias", alias), ("legalName", legal_name), ("email", email)):
            if value is not None:
                params[name] = value
        return self._pages("customers", params, CustomerSummary, page_size)

    def get_customer(self, customer_id: str) -> Customer:
        body = self._call("GET", f"customers/{_segment(customer_id)}")
        return _read(Customer, body, "GET /customers/{id}")

    def create_customer(self, request: CustomerRequest) -> Customer:
        """Create a customer, once, even when an attempt times out or fails with a 5xx.

        After such a failure the customer is looked up by its first alias: found, it is
        returned; not found, the create is sent again (at most ``max_attempts`` times). A
        request without an alias cannot be recovered: it raises BillingOutcomeUnknown.
        A create refused while another customer holds the first alias raises
        :class:`AliasTaken` naming that customer.
        """
        alias = request.customer_aliases[0] if request.customer_aliases else None
        unknown: BillingOutcomeUnknown | None = None
        for attempt in range(1, self._config.max_attempts + 1):
            if unknown is not None:
                self._sleep(self._backoff(attempt - 1))
            try:
                body = self._call("POST", "customers", json=request.to_json(), repeatable=False)
                return _read(Customer, body, "POST /customers")
            except BillingOutcomeUnknown as failure:
                if alias is None:
                    raise
                unknown = failure
                found = self.find_customer_by_alias(alias)
            except BillingApiError as refused:
                if alias is None or refused.status not in _REFUSALS:
                    raise
                found = self.find_customer_by_alias(alias)
                if found is None:
                    raise
                if unknown is None:
                    raise AliasTaken(
                        refused.what,
                        refused.status,
                        refused.api_message,
                        alias=alias,
                        customer_id=None,
                        owner_id=found.id,
                    ) from refused
            if found is not None:
                logger.info("a create that got no clear answer did happen: customer %s", found.id)
                return self.get_customer(found.id)
        if unknown is not None:
            raise unknown
        raise BillingTransientError("POST /customers: no attempt left")  # max_attempts >= 1

    def update_customer(self, customer_id: str, request: CustomerRequest) -> Customer:
        """``PUT`` the whole customer: it replaces every contact (and the custom
        properties when given), so read, merge and send all of them."""
        body = self._call("PUT", f"customers/{_segment(customer_id)}", json=request.to_json())
        return _read(Customer, body, "PUT /customers/{id}")

    def archive_customer(self, customer_id: str) -> Customer:
        """Archive a customer; Sequence archives its schedules and voids its drafts."""
        body = self._call("POST", f"customers/{_segment(customer_id)}/archive")
        return _read(Customer, body, "POST /customers/{id}/archive")

    # ---- aliases -------------------------------------------------------------------------

    def create_alias(
        self,
        customer_id: str,
        value: str,
        *,
        label: str | None = None,
        idempotency_key: str | None = None,
    ) -> CustomerAlias:
        """Give ``customer_id`` the alias ``value`` (safe to repeat: Idempotency-Key).

        If the API refuses it, the alias's holder is looked up: the same customer means
        the alias is already there (returned); another raises :class:`AliasTaken` naming
        both customers.
        """
        request = AliasRequest(customer_id=customer_id, value=value, label=label)
        key = idempotency_key or alias_idempotency_key(customer_id, value)
        try:
            body = self._call(
                "POST", "customer-aliases", json=request.to_json(), headers={"Idempotency-Key": key}
            )
        except BillingApiError as refused:
            if isinstance(refused, BillingAuthError):
                raise
            return self._existing_alias(refused, customer_id, value)
        return _read(CustomerAlias, body, "POST /customer-aliases")

    def list_aliases(self, customer_id: str) -> list[AliasEntry]:
        """The customer's aliases (without labels: this endpoint has none)."""
        body = self._call("GET", f"customers/{_segment(customer_id)}/aliases")
        return _read(Page[AliasEntry], body, "GET /customers/{id}/aliases").items

    def _existing_alias(
        self, refused: BillingApiError, customer_id: str, value: str
    ) -> CustomerAlias:
        owner = self.find_customer_by_alias(value)
        if owner is not None and owner.id == customer_id:
            for alias in self.list_aliases(customer_id):
                if alias.value == value:
                    return CustomerAlias.model_validate(alias.model_dump())
        if owner is None or owner.id == customer_id or refused.status not in _REFUSALS:
            raise refused
        raise AliasTaken(
            refused.what,
            refused.status,
            refused.api_message,
            alias=value,
            customer_id=customer_id,
            owner_id=owner.id,
        ) from refused

    # ---- billing schedules and invoices --------------------------------------------------

    def list_billing_schedules(
        self, customer_id: str, *, include_archived: bool = True, page_size: int = PAGE_SIZE
    ) -> Iterator[BillingSchedule]:
        params = {
            "customerId": customer_id,
            "includeArchivedSchedules": "true" if include_archived else "false",
        }
        return self._pages("billing-schedules", params, BillingSchedule, page_size)

    def archive_billing_schedule(self, schedule_id: str) -> BillingSchedule:
        body = self._call("POST", f"billing-schedules/{_segment(schedule_id)}/archive")
        return _read(BillingSchedule, body, "POST /billing-schedules/{id}/archive")

    def list_invoices(
        self,
        customer_id: str,
        *,
        statuses: Sequence[InvoiceStatus] = (),
        page_size: int = PAGE_SIZE,
    ) -> Iterator[Invoice]:
        """The customer's invoices, only those in ``statuses`` when given."""
        params = {"customerId": customer_id}
        if statuses:
            params["invoiceStatus"] = ",".join(statuses)
        return self._pages("invoices", params, Invoice, page_size)

    def void_invoice(self, invoice_id: str) -> Invoice:
        """Void a DRAFT, FINAL or unpaid SENT invoice (not repeated after a timeout)."""
        body = self._call("POST", f"invoices/{_segment(invoice_id)}/void", repeatable=False)
        return _read(Invoice, body, "POST /invoices/{id}/void")

    # ---- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- internals -----------------------------------------------------------------------

    def _pages(
        self, path: str, params: Mapping[str, str], model: type[M], page_size: int
    ) -> Iterator[M]:
        if not 1 <= page_size <= PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {PAGE_SIZE}")
        seen: set[str] = set()
        after: str | None = None
        while True:
            query: dict[str, str | int] = {**params, "limit": page_size}
            if after is not None:
                query["after"] = after
            page = _read(Page[model], self._call("GET", path, params=query), f"GET /{path}")  # type: ignore[valid-type]
            yield from page.items
            after = page.pagination.after
            if not after or not page.items:
                return
            if after in seen:
                raise BillingProtocolError(f"GET /{path}: the cursor repeats; stopped paging")
            seen.add(after)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool = True,
    ) -> Any:
        """Send with pacing and retries; return the parsed JSON body."""
        request = self._client.build_request(
            method, path, params=params, json=json, headers=headers
        )
        what = f"{method} {_mask_emails(request.url.path)}"
        retrying = Retrying(
            sleep=self._sleep,
            stop=stop_after_attempt(self._config.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, what, request, repeatable)
        except _Retry as failure:
            raise BillingTransientError(
                f"{failure.message} (gave up after {self._config.max_attempts} attempts)"
            ) from None

    def _attempt(self, what: str, request: httpx.Request, repeatable: bool) -> Any:
        self._pacer.acquire()
        with self._counts:
            self.requests_sent += 1
        started = self._clock()
        try:
            response = self._client.send(request)
        except httpx.HTTPError as exc:
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
            failure = f"{what}: {kind} ({type(exc).__name__})"
            logger.debug("%s after %.0f ms", failure, (self._clock() - started) * 1000)
            if not repeatable and isinstance(exc, _AMBIGUOUS):
                raise BillingOutcomeUnknown(failure) from None
            raise _Retry(failure) from None
        logger.debug(
            "%s -> %d in %.0f ms", what, response.status_code, (self._clock() - started) * 1000
        )
        return self._judge(what, response, repeatable)

    def _judge(self, what: str, response: httpx.Response, repeatable: bool) -> Any:
        status = response.status_code
        if status < 400:
            try:
                return response.json() if response.content else None
            except ValueError:
                failure = f"{what} -> {status}: malformed JSON"
                if not repeatable:
                    raise BillingOutcomeUnknown(failure) from None
                raise _Retry(failure) from None
        message = self._api_message(response)
        detail = f"{what} -> {status}: {message}"
        if status == 429:
            with self._counts:
                self.rate_limited += 1
            wait = parse_retry_after(response.headers.get("Retry-After"), self._wall_clock())
            if wait is not None and wait > self._config.backoff_max_seconds:
                raise BillingRateLimited(
                    f"{detail} (asked to wait {wait:.0f} s)", retry_after_seconds=wait
                )
            if wait is not None:
                self._pacer.pause_until(self._clock() + wait)
            raise _Retry(detail, wait=wait)
        if status >= 500 or status == 408:
            if not repeatable:
                raise BillingOutcomeUnknown(detail)
            raise _Retry(detail)
        error = {401: BillingAuthError, 403: BillingAuthError, 404: BillingNotFound}.get(
            status, BillingApiError
        )
        raise error(what, status, message)

    def _api_message(self, response: httpx.Response) -> str:
        """The API's own words about a failure, bounded, with secrets and emails masked."""
        try:
            text = response.text
        except (httpx.DecodingError, UnicodeDecodeError, LookupError):
            return "(undecodable body)"
        message = _message_of(text)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        message = _mask_emails(" ".join(message.split()))
        if not message:
            return "(empty body)"
        return message if len(message) <= _MESSAGE_CHARS else message[: _MESSAGE_CHARS - 3] + "..."

    def _backoff(self, attempt: int) -> float:
        ceiling = self._config.backoff_initial_seconds * 2 ** max(0, attempt - 1)
        return random.uniform(0, min(self._config.backoff_max_seconds, ceiling))

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Retry) and failure.wait is not None:
            return failure.wait
        return self._backoff(state.attempt_number)

    def _before_sleep(self, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        logger.info(
            "%s; attempt %d of %d, next in %.2f s",
            failure,
            state.attempt_number,
            self._config.max_attempts,
            pause,
        )


def _mask_emails(text: str) -> str:
    return _EMAIL.sub(r"\1***@\2", text)


def _segment(value: str) -> str:
    """``value`` as one path segment: every reserved character escaped (``:`` and ``/`` too)."""
    return quote(value, safe="")


def _message_of(text: str) -> str:
    """``message`` (or ``error``/``errors``) of a JSON error body; else the text itself."""
    try:
        body = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return str(body[key])
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(
                str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors[:5]
            )
    return text


def _read(model: type[M], body: Any, what: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:3]
        )
        raise BillingProtocolError(f"{what}: unexpected answer ({problems})") from None
