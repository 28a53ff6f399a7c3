"""The one HTTP client every connector uses: explicit timeouts, bounded retries, rate limits.

A connector builds one :class:`HttpClient` from its :class:`HttpConfig` and calls
:meth:`HttpClient.get_json`, :meth:`~HttpClient.post_json`,
:meth:`~HttpClient.request_json` or :meth:`~HttpClient.request`. Retries live here and
nowhere else (tenacity, with the injected ``sleep``), at most ``max_attempts`` attempts
in all:

- retried: connection errors and timeouts; 408, 423 (at least 2 s apart), 425, 429,
  500, 502, 503, 504; a 2xx whose JSON body cannot be parsed (the ``*_json`` methods);
  any response the :class:`~crmsync.sdk.pacing.RateLimitPolicy` answers with
  :class:`~crmsync.sdk.pacing.RetryAfter`.
- the wait: exactly what ``Retry-After`` (seconds or HTTP-date) or the policy asks,
  whichever is longer; otherwise exponential backoff with full jitter, capped at
  ``backoff_max_seconds``. A server asking for more than ``backoff_max_seconds`` ends
  the retries at once: :class:`~crmsync.errors.RateLimitExhausted` for a rate limit
  (a 429 or a policy wait), :class:`~crmsync.errors.TransientError` otherwise.
- never retried: 401 -> :class:`~crmsync.errors.AuthenticationError`; any other 4xx ->
  :class:`~crmsync.errors.FatalConnectorError`; another 5xx ->
  :class:`~crmsync.errors.TransientError` at once; the policy's
  :class:`~crmsync.sdk.pacing.Exhausted` -> :class:`~crmsync.errors.RateLimitExhausted`.
- attempts used up -> :class:`~crmsync.errors.TransientError`.

Error messages and log lines name the method, the status and the URL path, never the
query string or a header; body excerpts are cut to 300 characters with the request's
credentials, query values and email addresses masked. Token refresh belongs in the
``httpx.Auth`` flow: a 401 that reaches this client is final.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Annotated, Any, Self, TypeVar

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from crmsync.errors import (
    AuthenticationError,
    FatalConnectorError,
    RateLimitExhausted,
    TransientError,
)
from crmsync.sdk.pacing import (
    Exhausted,
    Pacer,
    RateLimitPolicy,
    RetryAfter,
    StandardRateLimitPolicy,
    parse_retry_after,
)

__all__ = ["BaseUrl", "HttpClient", "HttpConfig", "HttpStats", "QueryParams"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

QueryParams = Mapping[str, str | int | float | bool | Sequence[str | int | float | bool]]

_RETRY_STATUSES = frozenset({408, 423, 425, 429, 500, 502, 503, 504})
_MIN_WAIT_SECONDS = {423: 2.0}
_EXCERPT_CHARS = 300
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "x-api-token", "api-key"}
)
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_MASKED_EMAIL = r"\1***@\2"
_DEFAULT_HEADERS = {"Accept": "application/json", "User-Agent": "crm-sync"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_base_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        raise ValueError("not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    if url.userinfo:
        raise ValueError("must not carry credentials; configure them as the connector's auth")
    if url.query or url.fragment:
        raise ValueError("must not carry a query string or fragment")
    return str(url)


BaseUrl = Annotated[str, AfterValidator(_check_base_url)]
"""An absolute http(s) URL without credentials, query or fragment; reuse it when overriding."""


class HttpConfig(BaseModel):
    """How a connector talks HTTP; embed it or inherit from it in the connector's config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: BaseUrl = Field(
        description="the API's root (http or https); request paths are relative to it"
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="longest wait for a read, a write or a free connection"
    )
    connect_timeout_seconds: float = Field(
        default=10.0, gt=0, description="longest wait to open a connection"
    )
    max_attempts: int = Field(
        default=6, ge=1, le=20, description="attempts per request in all, the first included"
    )
    backoff_initial_seconds: float = Field(
        default=0.5, gt=0, description="upper bound of the first jittered wait between attempts"
    )
    backoff_max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="longest wait between attempts; a server asking for longer ends the retries",
    )
    requests_per_window: int | None = Field(
        default=None, ge=1, description="at most this many requests per window; none: unlimited"
    )
    window_seconds: float = Field(
        default=10.0, gt=0, description="the sliding window requests_per_window applies to"
    )
    max_concurrency: int = Field(
        default=4, ge=1, le=64, description="requests in flight at once, across threads"
    )

    @model_validator(mode="after")
    def _backoff_in_order(self) -> Self:
        if self.backoff_max_seconds < self.backoff_initial_seconds:
            raise ValueError("backoff_max_seconds must not be below backoff_initial_seconds")
        return self


@dataclass(slots=True)
class HttpStats:
    """Counters of one client (updated under its lock)."""

    requests: int = 0
    """HTTP attempts sent, retries included."""
    retries: int = 0
    """Attempts that were repeated after a retriable failure."""
    rate_limited: int = 0
    """429 responses seen."""


class _Retriable(Exception):
    """One attempt failed in a way worth another; says what to report if none is left."""

    def __init__(self, message: str, *, wait: float | None = None, floor: float = 0.0) -> None:
        super().__init__(message)
        self.message = message
        self.wait = wait
        self.floor = floor


def _body(json: Any, data: Mapping[str, str] | None) -> dict[str, Any]:
    if json is not None and data is not None:
        raise ValueError("send a JSON body or form data, not both")
    if data is not None:
        return {"data": dict(data)}
    return {"json": json} if json is not None else {}


class HttpClient:
    """A thread-safe JSON-over-HTTP client with timeouts, retries and pacing.

    ``transport`` replaces the network (``httpx.MockTransport``, respx); ``sleep``,
    ``clock`` (monotonic seconds) and ``wall_clock`` (aware UTC, for HTTP-date
    ``Retry-After``) replace time, and a fake ``sleep`` must advance the fake ``clock``.
    ``pacer`` may be shared by clients that spend one budget. The client owns its
    ``httpx.Client`` and the transport: :meth:`close` closes both.
    """

    def __init__(
        self,
        config: HttpConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limit_policy: RateLimitPolicy | None = None,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._config = config
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._policy: RateLimitPolicy = (
            rate_limit_policy
            if rate_limit_policy is not None
            else StandardRateLimitPolicy(wall_clock=wall_clock)
        )
        self._pacer = pacer or Pacer(
            config.requests_per_window,
            config.window_seconds,
            headroom=config.max_concurrency - 1,
            clock=clock,
            sleep=sleep,
        )
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._lock = threading.Lock()
        self._backoff = wait_random_exponential(
            multiplier=config.backoff_initial_seconds, max=config.backoff_max_seconds
        )
        self.stats = HttpStats()
        self._client = httpx.Client(
            base_url=config.base_url,
            auth=auth,
            headers={**_DEFAULT_HEADERS, **(headers or {})},
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            limits=httpx.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=config.max_concurrency,
            ),
            transport=transport,
        )

    def request(
        self,
        method: str,
        url: str,
        *,
        params: QueryParams | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request with retries; return the final response (status below 400).

        The body is ``json`` (sent as JSON) or ``data`` (sent as a form), not both.
        """
        body = _body(json, data)
        return self._with_retries(method, url, params, body, headers, lambda _what, r: r)

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: QueryParams | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send a request with retries and return its parsed JSON body (``None`` for a 204)."""
        body = _body(json, data)
        return self._with_retries(method, url, params, body, headers, self._read_json)

    def get_json(
        self,
        url: str,
        *,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``GET`` ``url`` and return its parsed JSON body."""
        return self.request_json("GET", url, params=params, headers=headers)

    def post_json(
        self,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        params: QueryParams | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """``POST`` ``json`` (or the form ``data``) and return the parsed JSON answer."""
        return self.request_json("POST", url, params=params, json=json, data=data, headers=headers)

    def close(self) -> None:
        """Close the connections (and the transport)."""
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

    def _with_retries(
        self,
        method: str,
        url: str,
        params: QueryParams | None,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None,
        read: Callable[[str, httpx.Response], T],
    ) -> T:
        retrying = Retrying(
            sleep=self._sleep,
            stop=stop_after_attempt(self._config.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retriable),
            before_sleep=self._before_sleep,
            reraise=True,
        )

        def attempt() -> T:
            return self._attempt(method, url, params, body, headers, read)

        try:
            return retrying(attempt)
        except _Retriable as failure:
            attempts = self._config.max_attempts
            raise TransientError(f"{failure.message} (gave up after {attempts} attempts)") from (
                failure.__cause__
            )

    def _attempt(
        self,
        method: str,
        url: str,
        params: QueryParams | None,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None,
        read: Callable[[str, httpx.Response], T],
    ) -> T:
        request = self._client.build_request(method, url, params=params, headers=headers, **body)
        what = f"{request.method} {_EMAIL.sub(_MASKED_EMAIL, request.url.path)}"
        with self._slots:
            self._pacer.acquire()
            self._count(requests=1)
            started = self._clock()
            try:
                response = self._client.send(request)
            except (httpx.TransportError, httpx.DecodingError) as exc:
                failure = f"{what}: {type(exc).__name__}"
                logger.debug("%s after %.0f ms", failure, (self._clock() - started) * 1000)
                if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
                    raise FatalConnectorError(failure) from exc
                raise _Retriable(failure) from exc
            except httpx.HTTPError as exc:
                raise FatalConnectorError(f"{what}: {type(exc).__name__}") from exc
            finally:
                self._pacer.release()
        logger.debug(
            "%s -> %d in %.0f ms", what, response.status_code, (self._clock() - started) * 1000
        )
        return self._judge(what, response, read)

    def _judge(
        self, what: str, response: httpx.Response, read: Callable[[str, httpx.Response], T]
    ) -> T:
        status = response.status_code
        if status == httpx.codes.TOO_MANY_REQUESTS:
            self._count(rate_limited=1)
        budget = self._policy.budget(response)
        if budget is not None:
            if budget.limit is not None:
                self._pacer.adopt(budget.limit, budget.interval_seconds)
            self._pacer.observe(budget.remaining, budget.interval_seconds)
        decision = self._policy.on_response(response)
        policy_wait = decision.seconds if isinstance(decision, RetryAfter) else None
        if decision is None and status < 400:
            return read(what, response)
        detail = f"{what} -> {status}: {_excerpt(response)}"
        if isinstance(decision, Exhausted):
            raise RateLimitExhausted(
                f"{detail} (rate limit exhausted: {decision.reason})",
                retry_after_seconds=decision.retry_after_seconds,
            )
        if policy_wait is None and status not in _RETRY_STATUSES:
            if status == httpx.codes.UNAUTHORIZED:
                raise AuthenticationError(detail)
            if status < 500:
                raise FatalConnectorError(detail)
            raise TransientError(detail)

        floor = _MIN_WAIT_SECONDS.get(status, 0.0)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._wall_clock())
        asked = [wait for wait in (retry_after, policy_wait) if wait is not None]
        wait = max(*asked, floor) if asked else None
        rate_limited = status == httpx.codes.TOO_MANY_REQUESTS or policy_wait is not None
        if wait is not None and wait > self._config.backoff_max_seconds:
            detail = f"{detail} (asked to wait {wait:.0f} s)"
            if rate_limited:
                raise RateLimitExhausted(detail, retry_after_seconds=wait)
            raise TransientError(detail)
        if wait is not None and rate_limited:
            self._pacer.pause_until(self._clock() + wait)
        raise _Retriable(detail, wait=wait, floor=floor)

    def _read_json(self, what: str, response: httpx.Response) -> Any:
        if response.status_code == httpx.codes.NO_CONTENT:
            return None
        if not response.is_success:
            raise FatalConnectorError(f"{what} -> {response.status_code}: expected a JSON body")
        try:
            return response.json()
        except ValueError as exc:
            raise _Retriable(
                f"{what} -> {response.status_code}: malformed JSON: {_excerpt(response)}"
            ) from exc

    def _wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Retriable) and failure.wait is not None:
            return failure.wait
        floor = failure.floor if isinstance(failure, _Retriable) else 0.0
        return max(floor, self._backoff(state))

    def _before_sleep(self, state: RetryCallState) -> None:
        self._count(retries=1)
        failure = state.outcome.exception() if state.outcome else None
        pause = state.next_action.sleep if state.next_action else 0.0
        logger.info(
            "%s; attempt %d of %d, next in %.2f s",
            failure,
            state.attempt_number,
            self._config.max_attempts,
            pause,
        )

    def _count(self, *, requests: int = 0, retries: int = 0, rate_limited: int = 0) -> None:
        with self._lock:
            self.stats.requests += requests
            self.stats.retries += retries
            self.stats.rate_limited += rate_limited


def _excerpt(response: httpx.Response) -> str:
    """At most 300 characters of the body, with the request's secrets and emails masked."""
    try:
        text = " ".join(response.text.split())
    except (httpx.DecodingError, UnicodeDecodeError, LookupError):
        return "(undecodable body)"
    if not text:
        return "(empty body)"
    for secret in _secrets_of(response.request):
        text = text.replace(secret, "***")
    text = _EMAIL.sub(_MASKED_EMAIL, text)
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 3] + "..."


def _secrets_of(request: httpx.Request) -> list[str]:
    """Values that must not be echoed: credential headers and query values, longest first."""
    found: set[str] = set()
    for name, value in request.headers.items():
        if name.lower() in _SECRET_HEADERS:
            found.add(value)
            found.update(part for part in value.split() if len(part) >= 8)
    found.update(value for _, value in request.url.params.multi_items() if len(value) >= 4)
    return sorted(found, key=len, reverse=True)
