"""When scheduled syncs run, and whether start-up owes a connector a catch-up run.

A schedule is a cron expression, always in UTC: the five crontab fields (``minute hour
day month weekday``) or six with seconds first (``second minute hour day month
weekday``). Weekdays count as in crontab: ``0`` and ``7`` are Sunday, ``1`` is Monday,
or names (``mon-fri``). When both the day of the month and the weekday are restricted,
a time must match both (APScheduler's rule; classic cron takes either).

A service that was down missed the runs its schedules would have started: at start-up
each connector gets at most ONE catch-up run (:func:`catch_up`), full when its full
schedule was missed, else incremental. A schedule was missed when it fired after the
last run that counts started (a connector never synced missed it too). Runs cut short
because their process stopped (``interrupted``, ``abandoned``) do not count: the
catch-up resumes them from their cursor.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from apscheduler.triggers.cron import CronTrigger

__all__ = [
    "CUT_SHORT",
    "CatchUp",
    "catch_up",
    "cron_trigger",
    "missed",
    "next_fire_after",
]

CUT_SHORT = frozenset({"interrupted", "abandoned"})
"""Run statuses that do not count as a schedule having run: the run's process stopped."""

_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_TICK = timedelta(microseconds=1)


class CatchUp(StrEnum):
    """The one run a connector is owed at start-up."""

    FULL = "full"
    INCREMENTAL = "incremental"


def cron_trigger(expression: str) -> CronTrigger:
    """The UTC trigger of a 5- or 6-field cron expression; ``ValueError`` saying what is
    wrong otherwise."""
    values = expression.split()
    if len(values) not in (5, 6):
        raise ValueError(
            "a cron expression has 5 fields (minute hour day month weekday) or 6 (second"
            f" first), not {len(values)}"
        )
    names = (("second",) if len(values) == 6 else ()) + _FIELDS
    fields = dict(zip(names, values, strict=True))
    fields["day_of_week"] = _crontab_weekdays(fields["day_of_week"])
    return CronTrigger(timezone=UTC, **fields)


def _crontab_weekdays(field: str) -> str:
    """A crontab weekday field (0 and 7 are Sunday) as APScheduler 3 reads it (0 is
    Monday there): the days spelled out by name."""
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        step = _number(step_text, "step") if slash else 1
        if step < 1:
            raise ValueError(f"weekday step must be at least 1: {part!r}")
        start, dash, end = base.partition("-")
        if base == "*":
            first, last = 0, 6
        else:
            first = _weekday(start)
            last = _weekday(end) if dash else (6 if slash else first)
        if last < first:
            raise ValueError(f"weekday range runs backwards: {part!r}")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _weekday(text: str) -> int:
    name = text.strip().lower()
    if name in _WEEKDAYS:
        return _WEEKDAYS.index(name)
    day = _number(text, "weekday")
    if not 0 <= day <= 7:
        raise ValueError(f"weekday out of range (0-7, 0 and 7 are Sunday): {text!r}")
    return day


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"not a {what}: {text!r}")
    return int(text)


def next_fire_after(expression: str, moment: datetime) -> datetime | None:
    """The schedule's first fire time strictly after ``moment`` (aware), if any."""
    fire: datetime | None = cron_trigger(expression).get_next_fire_time(None, moment + _TICK)
    return fire


def missed(expression: str | None, last_started: datetime | None, now: datetime) -> bool:
    """Whether the schedule fired after the last counted run started and up to ``now``
    (its previous fire time before ``now`` is after that start). Without a schedule,
    nothing is missed; without a run, it was."""
    if expression is None:
        return False
    if last_started is None:
        return True
    fire = next_fire_after(expression, last_started)
    return fire is not None and fire <= now


def catch_up(
    *,
    schedule: str | None,
    full_schedule: str | None,
    last_run: datetime | None,
    last_full_run: datetime | None,
    now: datetime,
) -> CatchUp | None:
    """The one run a connector is owed at start-up, if any.

    ``last_run`` is when its latest counted run of either kind started (a full run also
    brings increments in), ``last_full_run`` its latest counted full run.
    """
    if missed(full_schedule, last_full_run, now):
        return CatchUp.FULL
    if missed(schedule, _latest(last_run, last_full_run), now):
        return CatchUp.INCREMENTAL
    return None


def _latest(*moments: datetime | None) -> datetime | None:
    known = [m for m in moments if m is not None]
    return max(known) if known else None
