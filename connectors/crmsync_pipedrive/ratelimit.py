"""Pipedrive's rate-limit rules, read from its ``x-ratelimit-*`` headers.

Every answer carries ``x-ratelimit-limit`` (requests per 2-second window for this
token), ``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (seconds until the window
resets). The pacer adopts the stated limit (under its configured ceiling) and slows down
on the remaining budget. A 429 is one of two things:

- the burst window is spent: wait ``x-ratelimit-reset`` seconds (or ``Retry-After``,
  which the HTTP client honours on top), every thread, then retry;
- the company's daily token budget is spent: the run ends cleanly with its cursor saved
  (:class:`~crmsync.sdk.pacing.Exhausted`, exit 75) and a later run resumes. Assumption
  (Pipedrive documents no single marker): a 429 says so when a daily header
  (``x-daily-requests-left``, ``x-daily-tokens-left``) is 0, when its reset is further off
  than any burst window (over a minute), or when its error names the daily budget.
"""

from __future__ import annotations

import json
import math

import httpx

from crmsync.sdk.pacing import Exhausted, RateLimitBudget, RateLimitDecision, RetryAfter
from crmsync_pipedrive.settings import RATE_WINDOW_SECONDS

__all__ = ["DAILY_HEADERS", "PipedriveRateLimitPolicy"]

DAILY_HEADERS = ("x-daily-requests-left", "x-daily-tokens-left")
_LONGEST_BURST_RESET_SECONDS = 60.0
_MAX_STATED_LIMIT = 100_000
"""A stated window budget at or above this is not believed (Pipedrive's largest is 480)."""


def _number(response: httpx.Response, name: str) -> float | None:
    raw = response.headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _names_daily_budget(response: httpx.Response) -> bool:
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    text = " ".join(str(body.get(key) or "") for key in ("error", "error_info", "code"))
    return "daily" in text.lower()


class PipedriveRateLimitPolicy:
    """The :class:`~crmsync.sdk.pacing.RateLimitPolicy` of Pipedrive's API."""

    def on_response(self, response: httpx.Response) -> RateLimitDecision | None:
        if response.status_code != httpx.codes.TOO_MANY_REQUESTS:
            return None
        reset = _number(response, "x-ratelimit-reset")
        daily_left = [
            left for name in DAILY_HEADERS if (left := _number(response, name)) is not None
        ]
        if (
            any(left <= 0 for left in daily_left)
            or (reset is not None and reset > _LONGEST_BURST_RESET_SECONDS)
            or _names_daily_budget(response)
        ):
            return Exhausted(
                "Pipedrive's daily API budget is spent; the next run resumes",
                retry_after_seconds=reset,
            )
        wait = reset if reset is not None and reset > 0 else RATE_WINDOW_SECONDS
        return RetryAfter(wait, "Pipedrive's burst window")

    def budget(self, response: httpx.Response) -> RateLimitBudget | None:
        remaining = _number(response, "x-ratelimit-remaining")
        if remaining is None:
            return None
        limit = _number(response, "x-ratelimit-limit")
        return RateLimitBudget(
            max(0, int(remaining)),
            RATE_WINDOW_SECONDS,
            limit=int(limit) if limit is not None and 1 <= limit < _MAX_STATED_LIMIT else None,
        )
