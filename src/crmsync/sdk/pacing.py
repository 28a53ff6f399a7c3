"""How fast a connector may call its CRM, and what the CRM's answers say about that.

:class:`Pacer` keeps a run under a budget of N requests per W seconds (a sliding
window), tightens itself when response headers say few requests are left, and holds
every thread during a server-imposed pause. A :class:`RateLimitPolicy` reads a
vendor's rate-limit headers and bodies; :class:`StandardRateLimitPolicy` reads the
common ``X-RateLimit-*`` / ``RateLimit-*`` headers, and a connector adds its vendor's
rules (for example HubSpot's ``DAILY`` 429, which must end the run) on top of it.
``Retry-After`` needs no policy: the HTTP client honours it on every retried response.

pyrate-limiter (4.5) was not used because its blocking acquire sleeps with
``time.sleep`` and times out with ``time.monotonic`` (neither can be injected), its
clock is a private bucket attribute and its rates are fixed once built, so the
header-driven tightening and shared pauses would have had to be written around it anyway.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx

__all__ = [
    "Exhausted",
    "Pacer",
    "RateLimitBudget",
    "RateLimitDecision",
    "RateLimitPolicy",
    "RetryAfter",
    "StandardRateLimitPolicy",
    "parse_retry_after",
]

_EPOCH_THRESHOLD = 1_000_000_000.0
"""A reset header above this is an epoch timestamp (seconds), not a delay."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Pacer:
    """Blocks callers so that at most ``limit`` requests start in any ``window_seconds``.

    Thread-safe. ``limit=None`` sets no budget of its own; the pacer then only applies
    what :meth:`observe` and :meth:`pause_until` tell it. ``clock`` (monotonic seconds)
    and ``sleep`` are injectable and must agree: a fake ``sleep`` must advance the fake
    ``clock``, or :meth:`acquire` waits forever.

    ``until_answered`` counts each request in the window from when its answer came
    back (:meth:`release`) instead of from when it was let through, and counts
    requests still in flight as just made. A server stamps a request somewhere between
    the two, so however late a request reaches it (a busy network, a busy server),
    it never sees more than ``limit`` in a window: for tight per-second limits, where
    a few milliseconds of jitter would otherwise cost a 429.
    """

    def __init__(
        self,
        limit: int | None = None,
        window_seconds: float = 10.0,
        *,
        headroom: int = 0,
        ceiling: int | None = None,
        adopt_stated: bool = True,
        until_answered: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1 (or None for no limit)")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if headroom < 0:
            raise ValueError("headroom must not be negative")
        if ceiling is not None and ceiling < 1:
            raise ValueError("ceiling must be at least 1 (or None for none)")
        self._limit = limit if limit is None or ceiling is None else min(limit, ceiling)
        self._ceiling = ceiling
        self._adopt_stated = adopt_stated
        self._window = window_seconds
        self._headroom = headroom
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._started: deque[float] = deque()
        self._paused_until = -math.inf
        self._budget_until = -math.inf
        self._budget_left = 0
        self._horizon = 0.0  # how long starts are remembered (the longest interval seen)
        self._until_answered = until_answered
        self._in_flight = 0

    def acquire(self) -> float:
        """Block until a request may start; return the clock time it was let through."""
        while True:
            with self._lock:
                now = self._clock()
                wait = self._wait_at(now)
                if wait <= 0:
                    self._admit(now)
                    return now
            self._sleep(wait)

    def release(self) -> None:
        """Say that a request let through by :meth:`acquire` got its answer (or failed)."""
        if not self._until_answered:
            return
        with self._lock:
            self._in_flight -= 1
            self._started.append(self._clock())

    def observe(self, remaining: int | None, interval_seconds: float | None) -> None:
        """Take the server's word: ``remaining`` requests are left in the next ``interval``.

        Without an interval the pacer's own window is assumed. ``headroom`` of them are
        kept back for requests already in flight; once the rest are used, callers wait
        until the interval has passed.
        """
        if remaining is None:
            return
        interval = interval_seconds if interval_seconds and interval_seconds > 0 else self._window
        with self._lock:
            now = self._clock()
            self._horizon = max(self._horizon, interval)
            # The server's window is rolling: its next slot frees when the oldest request
            # it still counts (the oldest we started within the interval) falls out.
            oldest = next((t for t in self._started if t > now - interval), now)
            self._budget_until = oldest + interval
            self._budget_left = remaining - self._headroom

    def adopt(self, limit: int, window_seconds: float | None = None) -> None:
        """Take the budget the server states (``limit`` requests per ``window_seconds``).

        The configured ``limit`` is only the fallback for servers that state nothing;
        a stated budget replaces it, capped at ``ceiling`` when one was configured. A
        pacer built with ``adopt_stated=False`` keeps its own budget: one that paces a
        stricter, separate limit (a search endpoint's) behind a client whose answers
        state the account's general budget.
        """
        if limit < 1 or not self._adopt_stated:
            return
        with self._lock:
            self._limit = limit if self._ceiling is None else min(limit, self._ceiling)
            if window_seconds is not None and window_seconds > 0:
                self._window = window_seconds

    @property
    def limit(self) -> int | None:
        """The budget in force: requests per window (``None``: no budget of its own)."""
        return self._limit

    def pause_until(self, deadline: float) -> None:
        """Let no request start before ``deadline`` (clock time), on any thread."""
        with self._lock:
            self._paused_until = max(self._paused_until, deadline)

    def _wait_at(self, now: float) -> float:
        waits = [self._paused_until - now]
        if now < self._budget_until and self._budget_left <= 0:
            waits.append(self._budget_until - now)
        horizon = max(self._window, self._horizon)
        while self._started and self._started[0] + horizon <= now:
            self._started.popleft()
        if self._limit is not None:
            in_window = [t for t in self._started if t + self._window > now]
            free = self._limit - self._in_flight
            if free <= 0:  # every slot is a request still waiting for its answer
                waits.append(min(self._window / self._limit, 0.01))
            elif len(in_window) >= free:
                waits.append(in_window[-free] + self._window - now)
        return max(waits)

    def _admit(self, now: float) -> None:
        if self._until_answered:
            self._in_flight += 1
        else:
            self._started.append(now)
        if now < self._budget_until:
            self._budget_left -= 1


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Wait ``seconds`` (every thread), then send the request again."""

    seconds: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Exhausted:
    """The budget is spent for this run: raise :class:`~crmsync.errors.RateLimitExhausted`."""

    reason: str
    retry_after_seconds: float | None = None


RateLimitDecision = RetryAfter | Exhausted


@dataclass(frozen=True, slots=True)
class RateLimitBudget:
    """What a response says is left: ``remaining`` requests in the next ``interval_seconds``.

    ``limit`` is the whole budget per ``interval_seconds`` when the server states it
    (HubSpot's ``X-HubSpot-RateLimit-Max``, ``X-RateLimit-Limit``): the pacer adopts it
    in place of its configured fallback, under its ceiling.
    """

    remaining: int
    interval_seconds: float | None = None
    limit: int | None = None


class RateLimitPolicy(Protocol):
    """A vendor's rate-limit rules, consulted by the HTTP client on every response."""

    def on_response(self, response: httpx.Response) -> RateLimitDecision | None:
        """Say whether to wait and retry, or to stop the run; ``None`` leaves it to the status."""
        ...

    def budget(self, response: httpx.Response) -> RateLimitBudget | None:
        """Read the remaining budget from the response, if it tells; the pacer slows down on it."""
        ...


class StandardRateLimitPolicy:
    """Reads ``X-RateLimit-Remaining``/``-Reset`` (or the IETF draft ``RateLimit-*`` names).

    A reset value is taken as seconds from now, or as an epoch timestamp when it is
    that large. On a 429 with nothing remaining, it waits for the reset.
    """

    def __init__(self, *, wall_clock: Callable[[], datetime] = _utc_now) -> None:
        self._wall_clock = wall_clock

    def on_response(self, response: httpx.Response) -> RateLimitDecision | None:
        if response.status_code != httpx.codes.TOO_MANY_REQUESTS:
            return None
        budget = self.budget(response)
        if budget is None or budget.remaining > 0 or budget.interval_seconds is None:
            return None
        return RetryAfter(budget.interval_seconds, "rate-limit window resets")

    def budget(self, response: httpx.Response) -> RateLimitBudget | None:
        headers = response.headers
        remaining = _number(headers, "X-RateLimit-Remaining", "RateLimit-Remaining")
        if remaining is None:
            return None
        reset = _number(headers, "X-RateLimit-Reset", "RateLimit-Reset")
        if reset is not None and reset > _EPOCH_THRESHOLD:
            reset -= self._wall_clock().timestamp()
        interval = reset if reset is not None and reset > 0 else None
        return RateLimitBudget(max(0, int(remaining)), interval)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date).

    ``None`` when the value is absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _number(headers: httpx.Headers, *names: str) -> float | None:
    for name in names:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw.strip())
        except ValueError:
            continue
        if math.isfinite(value):
            return value
    return None
