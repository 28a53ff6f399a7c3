"""Salesforce's rate-limit rules, read from ``Sforce-Limit-Info`` and error bodies.

Every REST answer carries ``Sforce-Limit-Info: api-usage=USED/MAX``: the org's API
requests in the last 24 hours and its daily budget. The policy reports that budget to
the pacer (:class:`~crmsync.sdk.pacing.RateLimitBudget` with ``limit=MAX`` per 24 hours,
``remaining=MAX-USED``) and decides:

- fewer than ``reserve`` requests left: stop the run cleanly
  (:class:`~crmsync.sdk.pacing.Exhausted`; exit 75, cursor saved) so that the org's
  other integrations keep working;
- 403 ``REQUEST_LIMIT_EXCEEDED`` ("TotalRequests Limit exceeded"): the daily budget is
  spent: stop the run cleanly the same way;
- 403 ``REQUEST_LIMIT_EXCEEDED`` for concurrent long-running requests
  ("ConcurrentPerOrgLongTxn Limit exceeded"): wait a few seconds and retry.

Errors are a JSON array ``[{"message", "errorCode", "fields"}]``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from crmsync.sdk.pacing import Exhausted, RateLimitBudget, RateLimitDecision, RetryAfter
from crmsync_salesforce.settings import DAILY_SECONDS

__all__ = ["SalesforceRateLimitPolicy", "api_usage", "error_codes"]

_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
_CONCURRENCY_WAIT_SECONDS = 5.0


def api_usage(response: httpx.Response) -> tuple[int, int] | None:
    """``(used, max)`` from ``Sforce-Limit-Info``, or ``None`` when absent or unreadable."""
    header = response.headers.get("Sforce-Limit-Info")
    match = _USAGE.search(header) if header else None
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def error_codes(response: httpx.Response) -> list[tuple[str, str]]:
    """``(errorCode, message)`` of each error in a Salesforce error body (may be empty)."""
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return []
    items = body if isinstance(body, list) else [body]
    found = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("errorCode"), str):
            found.append((item["errorCode"], str(item.get("message") or "")))
    return found


class SalesforceRateLimitPolicy:
    """The :class:`~crmsync.sdk.pacing.RateLimitPolicy` of Salesforce's REST API.

    ``reserve``: stop when fewer requests than this are left of the daily budget.
    ``state_limit``: report the daily budget as the pacer's limit (off when the user
    configured a budget of their own in another window).
    """

    def __init__(self, *, reserve: int = 0, state_limit: bool = True) -> None:
        self._reserve = reserve
        self._state_limit = state_limit

    def on_response(self, response: httpx.Response) -> RateLimitDecision | None:
        if response.status_code == httpx.codes.FORBIDDEN:
            for code, message in error_codes(response):
                if code != "REQUEST_LIMIT_EXCEEDED":
                    continue
                if "concurrent" in message.casefold():
                    return RetryAfter(_CONCURRENCY_WAIT_SECONDS, "Salesforce's concurrency limit")
                return Exhausted(
                    "Salesforce's daily API request limit is spent; the next run resumes"
                )
            return None
        usage = api_usage(response)
        if usage is not None and response.is_success:
            used, limit = usage
            if limit - used < self._reserve:
                return Exhausted(
                    f"only {limit - used} of the org's {limit} daily API requests are left "
                    f"(the reserve is {self._reserve}); the next run resumes"
                )
        return None

    def budget(self, response: httpx.Response) -> RateLimitBudget | None:
        usage = api_usage(response)
        if usage is None:
            return None
        used, limit = usage
        return RateLimitBudget(
            max(0, limit - used), DAILY_SECONDS, limit=limit if self._state_limit else None
        )
