"""The request budget: the account's stated budget replaces the configured fallback.

HubSpot states the account's budget on every answer but search
(``X-HubSpot-RateLimit-Max`` per ``-Interval-Milliseconds``): 100 or 190 per 10 s for a
private app, 110 for an OAuth app. The connector paces at ``requests_per_window`` only
until an answer states it, and never above ``max_requests_per_window``. Time is fake:
a request's time is the fake clock's when the server saw it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from crmsync.sdk.testing import FakeTime
from crmsync_hubspot.tests.doubles import BASE, make_config, make_connector

WINDOW = 10.0


@pytest.fixture
def hubspot() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as router:
        yield router


def stated(maximum: int) -> dict[str, str]:
    return {
        "X-HubSpot-RateLimit-Max": str(maximum),
        "X-HubSpot-RateLimit-Remaining": str(maximum),
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(WINDOW * 1000)),
    }


def request_times(
    hubspot: respx.MockRouter, headers: dict[str, str], requests: int, **config: Any
) -> list[float]:
    """When each of ``requests`` property reads reached HubSpot (fake seconds from 0)."""
    time = FakeTime(start=0.0)
    seen: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(time.clock())
        return httpx.Response(200, json={"results": []}, headers=headers)

    hubspot.get("/crm/v3/properties/companies").mock(side_effect=answer)
    connector = make_connector(make_config(**config), time=time)
    for _ in range(requests):
        connector.api.property_names("companies")
    return seen


def busiest_window(times: list[float]) -> int:
    """The most requests any WINDOW-second span saw."""
    return max(sum(1 for t in times if start <= t < start + WINDOW) for start in times)


def test_after_hubspot_states_190_the_connector_sends_190_per_window(
    hubspot: respx.MockRouter,
) -> None:
    times = request_times(hubspot, stated(190), 500)

    assert sum(1 for t in times if t < WINDOW) == 190
    assert busiest_window(times) == 190
    assert times[-1] < 3 * WINDOW  # 500 requests in three windows, not five


def test_a_ceiling_caps_the_stated_budget(hubspot: respx.MockRouter) -> None:
    times = request_times(hubspot, stated(190), 400, max_requests_per_window=150)

    assert sum(1 for t in times if t < WINDOW) == 150
    assert busiest_window(times) == 150


def test_a_stated_budget_below_the_configured_one_is_obeyed(hubspot: respx.MockRouter) -> None:
    times = request_times(hubspot, stated(60), 200, requests_per_window=100)

    assert busiest_window(times) == 60


def test_without_rate_limit_headers_the_configured_100_per_window_holds(
    hubspot: respx.MockRouter,
) -> None:
    times = request_times(hubspot, {}, 300)

    assert sum(1 for t in times if t < WINDOW) == 100
    assert busiest_window(times) == 100


def test_search_keeps_its_five_per_second_whatever_the_account_budget(
    hubspot: respx.MockRouter,
) -> None:
    time = FakeTime(start=0.0)
    seen: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(time.clock())
        return httpx.Response(200, json={"results": []}, headers=stated(190))

    hubspot.post("/crm/v3/objects/companies/search").mock(side_effect=answer)
    connector = make_connector(time=time)
    for _ in range(20):
        connector.api.search_page(
            "companies", filters=[], sort_property="hs_object_id", properties=[], limit=200
        )

    assert sum(1 for t in seen if t < 1.0) == 5
