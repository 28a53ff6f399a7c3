"""The pacer keeps a run under its budget; the standard policy reads rate-limit headers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from crmsync.sdk.pacing import (
    Pacer,
    RateLimitBudget,
    RetryAfter,
    StandardRateLimitPolicy,
    parse_retry_after,
)
from crmsync.sdk.testing import FakeTime

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _most_in_any_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    most = 0
    for i, start in enumerate(ordered):
        inside = [t for t in ordered[i:] if t < start + window]
        most = max(most, len(inside))
    return most


def test_the_pacer_never_lets_more_than_n_requests_into_any_window() -> None:
    fake = FakeTime()
    pacer = Pacer(5, 2.0, clock=fake.clock, sleep=fake.sleep)

    times = [pacer.acquire() for _ in range(40)]

    assert _most_in_any_window(times, 2.0) == 5
    assert times[-1] - times[0] >= 7 * 2.0


def test_the_pacer_holds_its_budget_across_many_threads() -> None:
    fake = FakeTime()
    pacer = Pacer(5, 2.0, clock=fake.clock, sleep=fake.sleep)
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(30):
            admitted = pacer.acquire()
            with lock:
                times.append(admitted)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(times) == 240
    assert _most_in_any_window(times, 2.0) <= 5


def test_an_unlimited_pacer_never_waits() -> None:
    fake = FakeTime()
    pacer = Pacer(None, clock=fake.clock, sleep=fake.sleep)

    for _ in range(1000):
        pacer.acquire()

    assert fake.sleeps == []


def test_a_pause_holds_every_caller_until_it_ends() -> None:
    fake = FakeTime()
    pacer = Pacer(None, clock=fake.clock, sleep=fake.sleep)

    pacer.pause_until(fake.now + 10.0)
    pacer.pause_until(fake.now + 3.0)

    assert pacer.acquire() == 1010.0
    assert pacer.acquire() == 1010.0
    assert fake.sleeps == [10.0]


def test_observed_headers_stop_requests_once_the_remaining_ones_are_used() -> None:
    fake = FakeTime()
    pacer = Pacer(100, 10.0, headroom=1, clock=fake.clock, sleep=fake.sleep)

    pacer.observe(remaining=3, interval_seconds=4.0)
    first = [pacer.acquire() for _ in range(2)]
    after_interval = pacer.acquire()

    assert first == [1000.0, 1000.0]
    assert after_interval == 1004.0


def test_an_observation_without_a_remaining_count_changes_nothing() -> None:
    fake = FakeTime()
    pacer = Pacer(None, clock=fake.clock, sleep=fake.sleep)

    pacer.observe(remaining=None, interval_seconds=5.0)
    pacer.acquire()

    assert fake.sleeps == []


@pytest.mark.parametrize("limit", [0, -1])
def test_a_pacer_refuses_a_limit_below_one(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        Pacer(limit, 1.0)


def test_retry_after_in_seconds_is_read() -> None:
    assert parse_retry_after(" 7 ", NOW) == 7.0


def test_retry_after_as_an_http_date_is_read_against_the_wall_clock() -> None:
    value = format_datetime(NOW + timedelta(seconds=30), usegmt=True)

    assert parse_retry_after(value, NOW) == 30.0


def test_retry_after_in_the_past_means_no_wait() -> None:
    value = format_datetime(NOW - timedelta(minutes=5), usegmt=True)

    assert parse_retry_after(value, NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "nan", "inf"])
def test_an_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def _response(status: int, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def test_the_standard_policy_reads_remaining_and_reset_headers() -> None:
    policy = StandardRateLimitPolicy(wall_clock=lambda: NOW)
    response = _response(200, {"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": "8"})

    assert policy.budget(response) == RateLimitBudget(12, 8.0)
    assert policy.on_response(response) is None


def test_the_standard_policy_reads_an_epoch_reset_against_the_wall_clock() -> None:
    policy = StandardRateLimitPolicy(wall_clock=lambda: NOW)
    reset = str(int(NOW.timestamp()) + 40)
    response = _response(200, {"RateLimit-Remaining": "0", "RateLimit-Reset": reset})

    assert policy.budget(response) == RateLimitBudget(0, 40.0)


def test_the_standard_policy_waits_for_the_reset_on_a_429_with_nothing_left() -> None:
    policy = StandardRateLimitPolicy(wall_clock=lambda: NOW)
    response = _response(429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "6"})

    decision = policy.on_response(response)

    assert isinstance(decision, RetryAfter)
    assert decision.seconds == 6.0


def test_the_standard_policy_leaves_a_bare_429_to_the_client() -> None:
    policy = StandardRateLimitPolicy(wall_clock=lambda: NOW)

    assert policy.on_response(_response(429, {})) is None
    assert policy.budget(_response(429, {})) is None


def test_an_exhausted_rolling_budget_frees_when_the_oldest_request_leaves_the_window() -> None:
    fake = FakeTime(start=1000.0)
    pacer = Pacer(None, 10.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(10):  # ten requests spread over nine seconds, the last one uses the budget
        pacer.acquire()
        fake.now += 1.0
    fake.now = 1009.5
    pacer.observe(remaining=0, interval_seconds=10.0)

    admitted = pacer.acquire()

    # the first request (t=1000) leaves the server's rolling window at 1010, not 10 s from now
    assert admitted == pytest.approx(1010.0)


def test_a_pacer_counting_until_answered_keeps_any_server_stamps_within_the_limit() -> None:
    fake = FakeTime()
    pacer = Pacer(5, 1.0, until_answered=True, clock=fake.clock, sleep=fake.sleep)
    spans: list[tuple[float, float]] = []
    for n in range(30):
        admitted = pacer.acquire()
        fake.sleep(0.05 + (n % 4) * 0.1)  # the request's way there and back
        pacer.release()
        spans.append((admitted, fake.clock()))

    # A server stamps each request somewhere between its start and its answer; even
    # the latest stamp of one and the earliest of the fifth after it are a window apart.
    assert all(spans[k + 5][0] >= spans[k][1] + 1.0 for k in range(len(spans) - 5))


def test_a_pacer_counting_until_answered_lets_no_more_than_the_limit_fly_at_once() -> None:
    fake = FakeTime()
    pacer = Pacer(2, 1.0, until_answered=True, clock=fake.clock, sleep=fake.sleep)
    pacer.acquire()
    pacer.acquire()
    fake.sleep(3.0)  # both still in flight, long past the window

    answered = threading.Event()

    def answer() -> None:
        answered.set()
        pacer.release()

    timer = threading.Timer(0.05, answer)
    timer.start()
    pacer.acquire()  # waits for an answer, not for the window
    let_through_after_an_answer = answered.is_set()
    timer.join()

    assert let_through_after_an_answer


def test_a_stated_budget_replaces_the_configured_fallback_under_the_ceiling() -> None:
    pacer = Pacer(100, 10.0, ceiling=150)

    pacer.adopt(190, 10.0)
    assert pacer.limit == 150
    pacer.adopt(60, 10.0)
    assert pacer.limit == 60


def test_a_pacer_that_keeps_its_own_budget_ignores_stated_ones() -> None:
    pacer = Pacer(5, 1.05, adopt_stated=False)

    pacer.adopt(190, 10.0)

    assert pacer.limit == 5
