"""Pipedrive's x-ratelimit headers and 429s, as pacing decisions."""

from __future__ import annotations

import httpx
import pytest

from crmsync.sdk.pacing import Exhausted, RateLimitBudget, RetryAfter
from crmsync_pipedrive.ratelimit import PipedriveRateLimitPolicy


def response(status: int, headers: dict[str, str], body: object = None) -> httpx.Response:
    request = httpx.Request("GET", "https://api.pipedrive.test/api/v2/persons")
    return httpx.Response(status, headers=headers, json=body or {}, request=request)


POLICY = PipedriveRateLimitPolicy()


def test_the_budget_states_the_limit_and_what_remains_of_the_two_second_window() -> None:
    answer = response(200, {"x-ratelimit-limit": "80", "x-ratelimit-remaining": "12"})

    assert POLICY.budget(answer) == RateLimitBudget(12, 2.0, limit=80)
    assert POLICY.on_response(answer) is None


def test_an_answer_without_rate_limit_headers_states_no_budget() -> None:
    assert POLICY.budget(response(200, {})) is None


def test_a_burst_429_waits_for_the_window_reset() -> None:
    answer = response(429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1.5"})

    assert POLICY.on_response(answer) == RetryAfter(1.5, "Pipedrive's burst window")


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-daily-requests-left": "0", "x-ratelimit-reset": "2"}, None),
        ({"x-daily-tokens-left": "0"}, None),
        ({"x-ratelimit-reset": "43200"}, None),
        ({}, {"success": False, "error": "Daily API token budget exceeded"}),
    ],
    ids=["daily-requests-header", "daily-tokens-header", "reset-hours-away", "error-text"],
)
def test_a_429_for_the_spent_daily_budget_ends_the_run(
    headers: dict[str, str], body: object
) -> None:
    decision = POLICY.on_response(response(429, headers, body))

    assert isinstance(decision, Exhausted)
    assert "daily" in decision.reason


@pytest.mark.parametrize("stated", ["nan", "inf", "1e12", "0", "lots"])
def test_a_stated_limit_that_cannot_be_true_is_not_adopted(stated: str) -> None:
    answer = response(200, {"x-ratelimit-limit": stated, "x-ratelimit-remaining": "5"})

    assert POLICY.budget(answer) == RateLimitBudget(5, 2.0, limit=None)
