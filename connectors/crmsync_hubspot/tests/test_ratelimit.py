"""HubSpot's rate-limit policy: what each 429 means and what the headers leave."""

from __future__ import annotations

import httpx
import pytest

from crmsync.sdk.pacing import Exhausted, RateLimitBudget, RetryAfter
from crmsync_hubspot.ratelimit import HubSpotRateLimitPolicy

POLICY = HubSpotRateLimitPolicy()


def limited(policy: str | None, **headers: str) -> httpx.Response:
    body = {"status": "error", "errorType": "RATE_LIMIT", "message": "limit"}
    if policy is not None:
        body["policyName"] = policy
    return httpx.Response(429, json=body, headers=headers)


def test_a_daily_429_exhausts_the_run() -> None:
    decision = POLICY.on_response(limited("DAILY"))

    assert isinstance(decision, Exhausted)
    assert "daily" in decision.reason


def test_a_rolling_window_429_waits_out_the_window_the_headers_name() -> None:
    ten = POLICY.on_response(limited("TEN_SECONDLY_ROLLING"))
    one = POLICY.on_response(
        limited("TEN_SECONDLY_ROLLING", **{"X-HubSpot-RateLimit-Interval-Milliseconds": "1000"})
    )

    assert ten == RetryAfter(10.0, "HubSpot's rolling window")
    assert one == RetryAfter(1.0, "HubSpot's rolling window")


def test_a_per_second_429_waits_one_second() -> None:
    assert POLICY.on_response(limited("SECONDLY")) == RetryAfter(1.0, "HubSpot's per-second limit")


def test_other_answers_are_left_to_the_client() -> None:
    assert POLICY.on_response(limited(None)) is None
    assert POLICY.on_response(httpx.Response(429, text="<html>busy</html>")) is None
    assert POLICY.on_response(httpx.Response(200, json={})) is None


def test_the_budget_is_the_rolling_windows_remaining_requests() -> None:
    response = httpx.Response(
        200,
        headers={
            "X-HubSpot-RateLimit-Remaining": "37",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            "X-HubSpot-RateLimit-Daily-Remaining": "0",
        },
    )

    assert POLICY.budget(response) == RateLimitBudget(37, 10.0)
    assert POLICY.budget(httpx.Response(200)) is None


def test_the_budget_reports_the_accounts_stated_maximum_as_its_limit() -> None:
    response = httpx.Response(
        200,
        headers={
            "X-HubSpot-RateLimit-Max": "190",
            "X-HubSpot-RateLimit-Remaining": "189",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        },
    )

    assert POLICY.budget(response) == RateLimitBudget(189, 10.0, limit=190)


@pytest.mark.parametrize("stated", ["0", "-1", "many", "nan", "inf", "1e12"])
def test_a_stated_maximum_that_makes_no_sense_is_not_reported(stated: str) -> None:
    response = httpx.Response(
        200, headers={"X-HubSpot-RateLimit-Max": stated, "X-HubSpot-RateLimit-Remaining": "5"}
    )

    assert POLICY.budget(response) == RateLimitBudget(5, 10.0)


def test_a_policy_for_another_budget_leaves_the_stated_maximum_out() -> None:
    response = httpx.Response(
        200, headers={"X-HubSpot-RateLimit-Max": "190", "X-HubSpot-RateLimit-Remaining": "5"}
    )

    assert HubSpotRateLimitPolicy(report_limit=False).budget(response) == RateLimitBudget(5, 10.0)


@pytest.mark.parametrize("remaining", ["inf", "nan"])
def test_an_unreadable_remaining_count_states_no_budget(remaining: str) -> None:
    response = httpx.Response(200, headers={"X-HubSpot-RateLimit-Remaining": remaining})

    assert POLICY.budget(response) is None
