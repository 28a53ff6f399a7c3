"""The SDK's HTTP client: what it retries, how long it waits, what it refuses, what it hides."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pydantic
import pytest
import respx

from crmsync.errors import (
    AuthenticationError,
    FatalConnectorError,
    RateLimitExhausted,
    TransientError,
)
from crmsync.sdk.http import HttpClient, HttpConfig
from crmsync.sdk.pacing import (
    Exhausted,
    RateLimitBudget,
    RateLimitDecision,
    RetryAfter,
)
from crmsync.sdk.testing import FakeTime

BASE = "https://crm.example.test/api"
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
TOKEN = "pat-na1-7f3c9e2b-41d8-4a6f-b0c5-9d2e8a1f6b34"
QUERY_SECRET = "hk_4Qz8Wm2Rt6Yp0Lx3"


class FixedPolicy:
    """A connector's policy that answers every 429 with one fixed decision."""

    def __init__(self, decision: RateLimitDecision) -> None:
        self.decision = decision

    def on_response(self, response: httpx.Response) -> RateLimitDecision | None:
        return self.decision if response.status_code == 429 else None

    def budget(self, response: httpx.Response) -> RateLimitBudget | None:
        return None


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def crm() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_mocked=True, assert_all_called=True) as router:
        yield router


def make_client(fake: FakeTime, *, policy: Any = None, **settings: Any) -> HttpClient:
    config = HttpConfig(base_url=BASE, **settings)
    return HttpClient(
        config,
        headers={"Authorization": f"Bearer {TOKEN}"},
        rate_limit_policy=policy,
        sleep=fake.sleep,
        clock=fake.clock,
        wall_clock=lambda: NOW,
    )


def test_a_503_is_retried_and_the_next_success_returned(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    crm.get("/things").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json={"ok": True})]
    )

    with make_client(fake) as client:
        assert client.get_json("/things") == {"ok": True}

    assert client.stats.requests == 2
    assert client.stats.retries == 1
    assert len(fake.sleeps) == 1


def test_retry_after_in_seconds_is_the_wait_the_client_sleeps(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    crm.get("/things").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "7"}),
            httpx.Response(200, json=[]),
        ]
    )

    with make_client(fake) as client:
        client.get_json("/things")

    assert fake.sleeps == [7.0]


def test_retry_after_as_an_http_date_is_the_wait_the_client_sleeps(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    when = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    crm.get("/things").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": when}),
            httpx.Response(200, json=[]),
        ]
    )

    with make_client(fake) as client:
        client.get_json("/things")

    assert fake.sleeps == [30.0]
    assert client.stats.rate_limited == 1


def test_a_429_without_retry_after_is_retried_after_a_jittered_backoff(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    crm.get("/things").mock(side_effect=[httpx.Response(429), httpx.Response(200, json=[])])

    with make_client(fake, backoff_initial_seconds=0.5) as client:
        client.get_json("/things")

    assert client.stats.rate_limited == 1
    assert client.stats.requests == 2
    assert len(fake.sleeps) == 1
    assert 0.0 <= fake.sleeps[0] <= 0.5


def test_a_423_waits_at_least_two_seconds(crm: respx.MockRouter, fake: FakeTime) -> None:
    crm.get("/things").mock(side_effect=[httpx.Response(423), httpx.Response(200, json=[])])

    with make_client(fake, backoff_initial_seconds=0.5) as client:
        client.get_json("/things")

    assert fake.sleeps == [2.0]


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_a_plain_4xx_is_never_retried_and_is_fatal(
    crm: respx.MockRouter, fake: FakeTime, status: int
) -> None:
    route = crm.get("/things").respond(status, json={"message": "no"})

    with make_client(fake) as client, pytest.raises(FatalConnectorError) as caught:
        client.get_json("/things")

    assert route.call_count == 1
    assert client.stats.requests == 1
    assert fake.sleeps == []
    assert f"GET /api/things -> {status}" in str(caught.value)


def test_a_401_raises_authentication_error_without_retrying(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    route = crm.get("/things").respond(401, json={"message": "expired"})

    with make_client(fake) as client, pytest.raises(AuthenticationError):
        client.get_json("/things")

    assert route.call_count == 1


def test_an_unlisted_5xx_is_transient_but_not_retried(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    route = crm.get("/things").respond(501)

    with make_client(fake) as client, pytest.raises(TransientError):
        client.get_json("/things")

    assert route.call_count == 1


def test_timeouts_are_retried_until_attempts_run_out_then_raise_transient_error(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    crm.get("/things").mock(side_effect=httpx.ReadTimeout("timed out"))

    with make_client(fake, max_attempts=4) as client, pytest.raises(TransientError) as caught:
        client.get_json("/things")

    assert client.stats.requests == 4
    assert client.stats.retries == 3
    assert len(fake.sleeps) == 3
    assert "ReadTimeout" in str(caught.value)
    assert "4 attempts" in str(caught.value)


def test_connection_errors_are_retried(crm: respx.MockRouter, fake: FakeTime) -> None:
    crm.get("/things").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=[1])]
    )

    with make_client(fake) as client:
        assert client.get_json("/things") == [1]


def test_a_200_with_malformed_json_is_retried(crm: respx.MockRouter, fake: FakeTime) -> None:
    crm.get("/things").mock(
        side_effect=[
            httpx.Response(200, text='{"results": [', headers={"Content-Type": "application/json"}),
            httpx.Response(200, json={"results": []}),
        ]
    )

    with make_client(fake) as client:
        assert client.get_json("/things") == {"results": []}

    assert client.stats.retries == 1


def test_errors_and_logs_carry_no_query_string_token_or_email(
    crm: respx.MockRouter, fake: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    echo = f"token {TOKEN} key {QUERY_SECRET} for jane.doe@example.com rejected"
    crm.get("/things").mock(
        side_effect=[httpx.Response(503, text=echo), httpx.Response(400, text=echo)]
    )
    caplog.set_level(logging.DEBUG, logger="crmsync")

    with make_client(fake) as client, pytest.raises(FatalConnectorError) as caught:
        client.get_json("/things", params={"hapikey": QUERY_SECRET, "limit": 100})

    message = str(caught.value)
    assert "GET /api/things -> 503" in caplog.text
    assert message.startswith("GET /api/things -> 400: ")
    for text in (message, caplog.text):
        assert TOKEN not in text
        assert QUERY_SECRET not in text
        assert "hapikey" not in text
        assert "?" not in text
        assert "jane.doe@example.com" not in text
    assert "j***@example.com" in message


def test_long_bodies_are_cut_to_a_short_excerpt(crm: respx.MockRouter, fake: FakeTime) -> None:
    crm.get("/things").respond(400, text="x" * 5000)

    with make_client(fake) as client, pytest.raises(FatalConnectorError) as caught:
        client.get_json("/things")

    assert len(str(caught.value)) < 400


def test_a_policy_saying_exhausted_raises_rate_limit_exhausted_without_retrying(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    route = crm.get("/things").respond(429, json={"policyName": "DAILY"})
    policy = FixedPolicy(Exhausted("daily limit", retry_after_seconds=3600.0))

    with make_client(fake, policy=policy) as client, pytest.raises(RateLimitExhausted) as caught:
        client.get_json("/things")

    assert route.call_count == 1
    assert fake.sleeps == []
    assert caught.value.retry_after_seconds == 3600.0


def test_a_policy_wait_is_slept_before_the_retry(crm: respx.MockRouter, fake: FakeTime) -> None:
    crm.get("/things").mock(side_effect=[httpx.Response(429), httpx.Response(200, json=[])])
    policy = FixedPolicy(RetryAfter(10.0, "ten-secondly window"))

    with make_client(fake, policy=policy) as client:
        client.get_json("/things")

    assert fake.sleeps == [10.0]


def test_a_429_asking_for_longer_than_the_cap_ends_the_run_cleanly(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    route = crm.get("/things").respond(429, headers={"Retry-After": "3600"})

    with make_client(fake) as client, pytest.raises(RateLimitExhausted) as caught:
        client.get_json("/things")

    assert route.call_count == 1
    assert fake.sleeps == []
    assert caught.value.retry_after_seconds == 3600.0


def test_backoff_waits_are_jittered_and_bounded(crm: respx.MockRouter, fake: FakeTime) -> None:
    crm.get("/things").respond(502)

    config = {"max_attempts": 12, "backoff_initial_seconds": 0.5, "backoff_max_seconds": 4.0}
    with make_client(fake, **config) as client, pytest.raises(TransientError):
        client.get_json("/things")

    assert len(fake.sleeps) == 11
    for attempt, wait in enumerate(fake.sleeps, start=1):
        assert 0.0 <= wait <= min(0.5 * 2 ** (attempt - 1), 4.0)
    assert len(set(fake.sleeps)) > 1


def test_rate_limit_headers_slow_the_client_before_the_server_says_429(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "6"}
    crm.get("/things").mock(
        side_effect=[
            httpx.Response(200, json=[], headers=headers),
            httpx.Response(200, json=[]),
        ]
    )

    with make_client(fake, max_concurrency=1) as client:
        client.get_json("/things")
        client.get_json("/things")

    assert fake.sleeps == [6.0]


def test_the_configured_budget_paces_requests(crm: respx.MockRouter, fake: FakeTime) -> None:
    crm.get("/things").respond(200, json=[])

    with make_client(fake, requests_per_window=2, window_seconds=5.0) as client:
        for _ in range(3):
            client.get_json("/things")

    assert fake.sleeps == [5.0]


def test_one_client_serves_a_thread_pool_and_counts_every_request(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    crm.get("/things").mock(side_effect=[httpx.Response(503)] + [httpx.Response(200, json=[])] * 40)

    with make_client(fake) as client, ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: client.get_json("/things"), range(40)))

    assert answers == [[]] * 40
    assert client.stats.requests == 41
    assert client.stats.retries == 1


def test_post_json_sends_the_body_and_returns_the_parsed_answer(
    crm: respx.MockRouter, fake: FakeTime
) -> None:
    route = crm.post("/search", json={"limit": 100}).respond(200, json={"total": 0})

    with make_client(fake) as client:
        assert client.post_json("/search", json={"limit": 100}) == {"total": 0}

    assert route.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_form_data_is_sent_url_encoded(crm: respx.MockRouter, fake: FakeTime) -> None:
    route = crm.post("/oauth/token").respond(200, json={"ok": True})

    with make_client(fake) as client:
        assert client.post_json("/oauth/token", data={"grant_type": "refresh_token"}) == {
            "ok": True
        }

    sent = route.calls.last.request
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sent.content == b"grant_type=refresh_token"


def test_a_json_body_and_form_data_together_are_refused(fake: FakeTime) -> None:
    with make_client(fake) as client, pytest.raises(ValueError, match="not both"):
        client.post_json("/x", json={"a": 1}, data={"b": "2"})


def test_a_204_answer_parses_as_none(crm: respx.MockRouter, fake: FakeTime) -> None:
    crm.patch("/things/1").respond(204)

    with make_client(fake) as client:
        assert client.request_json("PATCH", "/things/1", json={"a": 1}) is None


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://crm.example.test",
        "crm.example.test/api",
        "https://user:pw@crm.example.test",
        f"{BASE}?key=1",
    ],
)
def test_the_config_refuses_a_base_url_that_is_not_a_plain_http_url(base_url: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        HttpConfig(base_url=base_url)


def test_the_config_refuses_unknown_keys() -> None:
    with pytest.raises(pydantic.ValidationError):
        HttpConfig.model_validate({"base_url": BASE, "retries": 3})
