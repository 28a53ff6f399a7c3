"""The rules of the webhook inbox, as pure functions: which records a batch of events
asks for, in which imports, and what a failed attempt leads to.

Events name records as (object type, external id) with the object type as its value
(``company``, ``contact``); nothing here touches a store or a CRM.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "EventStatus",
    "Failure",
    "PlannedImport",
    "QueuedEvent",
    "after_failure",
    "plan_imports",
    "retry_delay",
]

COMPANY, CONTACT = "company", "contact"
_OTHER_SIDE = {COMPANY: CONTACT, CONTACT: COMPANY}


class EventStatus(StrEnum):
    """Where an inbox event stands."""

    PENDING = "pending"
    """Waiting to be applied, from ``next_attempt_at`` on."""
    DONE = "done"
    """Applied: the records it named were fetched from the CRM after it arrived."""
    FAILED = "failed"
    """Set aside after too many attempts, with the last reason; ``webhooks replay`` retries."""


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """What the planning needs of a claimed event."""

    id: int
    action: str
    object_type: str
    external_id: str
    related_ids: tuple[str, ...] = ()
    attempts: int = 1
    """Attempts including the one about to be made."""


@dataclass(frozen=True, slots=True)
class PlannedImport:
    """One import: the records to fetch per object type, and the events it settles."""

    wanted: Mapping[str, tuple[str, ...]]
    event_ids: tuple[int, ...]


def _records(event: QueuedEvent) -> list[tuple[str, str]]:
    """The records an event asks to fetch: its own and, for an association, the other
    side's (a merge fetches only the survivor, whose record names what folded into it)."""
    found = [(event.object_type, event.external_id)]
    other = _OTHER_SIDE.get(event.object_type)
    if other is not None:
        found += [(other, related) for related in event.related_ids]
    return found


def _wanted(events: Iterable[QueuedEvent]) -> dict[str, tuple[str, ...]]:
    by_type: dict[str, dict[str, None]] = {}
    for event in events:
        for kind, external_id in _records(event):
            by_type.setdefault(kind, {})[external_id] = None
    return {kind: tuple(ids) for kind, ids in by_type.items()}


def plan_imports(events: Sequence[QueuedEvent]) -> list[PlannedImport]:
    """Coalesce claimed events into imports: each record is fetched once however many
    events name it.

    Events on their first attempt go together in one import. An event that failed
    before is imported with only the other events on the same record, so that one
    record the CRM refuses cannot keep a whole batch from landing.
    """
    fresh = [e for e in events if e.attempts <= 1]
    groups: dict[tuple[str, str], list[QueuedEvent]] = {}
    for event in events:
        if event.attempts > 1:
            groups.setdefault((event.object_type, event.external_id), []).append(event)
    planned = []
    if fresh:
        planned.append(PlannedImport(_wanted(fresh), tuple(e.id for e in fresh)))
    for group in groups.values():
        planned.append(PlannedImport(_wanted(group), tuple(e.id for e in group)))
    return planned


def retry_delay(attempts: int, *, first: timedelta, cap: timedelta) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt: ``first``, doubling
    with each attempt, never more than ``cap``."""
    if attempts < 1:
        return timedelta(0)
    exponent = min(attempts - 1, 40)  # 2**40 x any positive wait is past every cap
    wait: timedelta = first * (2**exponent)
    return min(cap, wait)


@dataclass(frozen=True, slots=True)
class Failure:
    """What a failed attempt leads to."""

    status: EventStatus
    next_attempt_at: datetime


def after_failure(
    attempts: int,
    now: datetime,
    *,
    max_attempts: int,
    first: timedelta,
    cap: timedelta,
) -> Failure:
    """An event whose ``attempts``-th attempt failed: retried after the backoff, or set
    aside once it has had ``max_attempts``."""
    if attempts >= max_attempts:
        return Failure(EventStatus.FAILED, now)
    return Failure(EventStatus.PENDING, now + retry_delay(attempts, first=first, cap=cap))
