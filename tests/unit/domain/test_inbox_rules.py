"""The webhook inbox's rules: which imports a batch of events makes, and what a failed
attempt leads to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crmsync.domain.inbox import (
    EventStatus,
    QueuedEvent,
    after_failure,
    plan_imports,
    retry_delay,
)

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
FIRST, CAP = timedelta(seconds=30), timedelta(hours=1)


def event(
    i: int, kind: str, rid: str, *, attempts: int = 1, related: tuple[str, ...] = ()
) -> QueuedEvent:
    return QueuedEvent(i, "upsert", kind, rid, related, attempts)


def test_events_on_one_record_fetch_it_once_in_one_import() -> None:
    plans = plan_imports(
        [event(1, "contact", "7"), event(2, "contact", "7"), event(3, "company", "9")]
    )

    assert len(plans) == 1
    assert plans[0].wanted == {"contact": ("7",), "company": ("9",)}
    assert plans[0].event_ids == (1, 2, 3)


def test_an_association_change_fetches_the_other_side_too() -> None:
    plans = plan_imports([event(1, "contact", "7", related=("9",))])

    assert plans[0].wanted == {"contact": ("7",), "company": ("9",)}


def test_a_merge_fetches_only_the_survivor() -> None:
    merge = QueuedEvent(1, "merge", "company", "9", (), 1)

    assert plan_imports([merge])[0].wanted == {"company": ("9",)}


def test_an_event_that_failed_before_is_imported_apart_with_its_record_only() -> None:
    plans = plan_imports(
        [
            event(1, "company", "1"),
            event(2, "company", "2", attempts=2),
            event(3, "company", "2", attempts=3),
            event(4, "company", "3", attempts=2),
        ]
    )

    assert [(p.wanted, p.event_ids) for p in plans] == [
        ({"company": ("1",)}, (1,)),
        ({"company": ("2",)}, (2, 3)),
        ({"company": ("3",)}, (4,)),
    ]


def test_nothing_claimed_plans_nothing() -> None:
    assert plan_imports([]) == []


def test_the_wait_doubles_with_each_attempt_up_to_the_cap() -> None:
    waits = [retry_delay(n, first=FIRST, cap=CAP).total_seconds() for n in range(1, 10)]

    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert retry_delay(10_000, first=FIRST, cap=CAP) == CAP


def test_a_failed_attempt_is_retried_after_the_backoff() -> None:
    outcome = after_failure(2, NOW, max_attempts=5, first=FIRST, cap=CAP)

    assert outcome.status is EventStatus.PENDING
    assert outcome.next_attempt_at == NOW + timedelta(seconds=60)


def test_the_last_allowed_attempt_failing_sets_the_event_aside() -> None:
    outcome = after_failure(5, NOW, max_attempts=5, first=FIRST, cap=CAP)

    assert outcome.status is EventStatus.FAILED
