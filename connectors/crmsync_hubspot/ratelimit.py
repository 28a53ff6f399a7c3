"""HubSpot's rate-limit rules, read from its headers and 429 bodies.

Every ``/crm`` answer except search carries ``X-HubSpot-RateLimit-Max``, ``-Remaining``,
``-Interval-Milliseconds`` (the rolling window), ``-Daily`` and ``-Daily-Remaining``;
the pacer slows down on the window's remaining budget, and takes ``-Max`` per interval
as the account's whole budget in place of the configured fallback (under the configured
ceiling; :meth:`crmsync.sdk.pacing.Pacer.adopt`). A 429 names its policy in the body
(``policyName``; https://developers.hubspot.com/docs/api/usage-details):

- ``TEN_SECONDLY_ROLLING``: wait out the window (every thread), then retry;
- ``SECONDLY`` (search, 5 requests per second; also the token endpoint): wait a second;
- ``DAILY``: the account's daily budget is spent; the run ends cleanly with its cursor
  saved (:class:`~crmsync.errors.RateLimitExhausted`) and resumes on a later run.

Any other 429 is left to the HTTP client's backoff. ``Retry-After``, when HubSpot sends
one, is honoured by the client on top of these waits.
"""

from __future__ import annotations

import json
import math

import httpx

from crmsync.sdk.pacing import Exhausted, RateLimitBudget, RateLimitDecision, RetryAfter

__all__ = ["HubSpotRateLimitPolicy"]

_DEFAULT_WINDOW_SECONDS = 10.0
_SECONDLY_WAIT_SECONDS = 1.0
_MAX_STATED_LIMIT = 1_000_000
"""A stated budget at or above this is not believed (HubSpot's largest is 190 per 10 s)."""


def _policy_name(response: httpx.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    name = body.get("policyName") if isinstance(body, dict) else None
    return name.upper() if isinstance(name, str) else None


def _header_number(response: httpx.Response, name: str) -> float | None:
    raw = response.headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class HubSpotRateLimitPolicy:
    """The :class:`~crmsync.sdk.pacing.RateLimitPolicy` of HubSpot's API.

    ``report_limit=False`` keeps ``X-HubSpot-RateLimit-Max`` out of the budget: for a
    client whose pacer spends another budget (search's 5 per second, the token endpoint),
    which the account's 10-second budget must never replace.
    """

    def __init__(self, *, report_limit: bool = True) -> None:
        self._report_limit = report_limit

    def on_response(self, response: httpx.Response) -> RateLimitDecision | None:
        if response.status_code != httpx.codes.TOO_MANY_REQUESTS:
            return None
        policy = _policy_name(response)
        if policy == "DAILY":
            return Exhausted("HubSpot's daily request limit is spent; the next run resumes")
        if policy == "SECONDLY":
            return RetryAfter(_SECONDLY_WAIT_SECONDS, "HubSpot's per-second limit")
        if policy == "TEN_SECONDLY_ROLLING":
            return RetryAfter(self._window_seconds(response), "HubSpot's rolling window")
        return None

    def budget(self, response: httpx.Response) -> RateLimitBudget | None:
        remaining = _header_number(response, "X-HubSpot-RateLimit-Remaining")
        if remaining is None:
            return None
        stated = _header_number(response, "X-HubSpot-RateLimit-Max") if self._report_limit else None
        limit = int(stated) if stated is not None and 1 <= stated < _MAX_STATED_LIMIT else None
        return RateLimitBudget(max(0, int(remaining)), self._window_seconds(response), limit)

    @staticmethod
    def _window_seconds(response: httpx.Response) -> float:
        millis = _header_number(response, "X-HubSpot-RateLimit-Interval-Milliseconds")
        return millis / 1000 if millis is not None and millis > 0 else _DEFAULT_WINDOW_SECONDS
