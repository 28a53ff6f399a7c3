"""Scheduled syncs: each connector's ``schedule`` (incremental) and ``full_schedule`` (full
passes), cron in UTC, fired by an APScheduler 3 ``BackgroundScheduler``.

The jobs are built from the config at start-up and kept in memory: an APScheduler job
store is never shared between processes (APScheduler 3 does not support that), so each
process that schedules fires on its own. A fired job runs nothing itself: it enqueues a
sync on the :class:`~crmsync.service.jobs.JobQueue`, and the run takes the connector's
lease (:mod:`crmsync.adapters.leases`); however many schedulers fire, one run of a
connector syncs at a time and the others are skipped with a log line.

At start-up, a connector whose schedule fired while no scheduler ran gets ONE catch-up
run, full when its full schedule was missed (:func:`crmsync.domain.schedule.catch_up`).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING

from crmsync.adapters import runs
from crmsync.domain.schedule import CUT_SHORT, CatchUp, catch_up, cron_trigger
from crmsync.sdk.connector import Clock, utc_now

if TYPE_CHECKING:
    from crmsync.bootstrap import App
    from crmsync.service.jobs import JobQueue

__all__ = ["MISFIRE_GRACE_SECONDS", "ScheduledJob", "SyncScheduler"]

log = logging.getLogger(__name__)

MISFIRE_GRACE_SECONDS = 300
"""A fire the scheduler's thread reaches this late still runs (once, coalesced); later
than that it is dropped and the next fire time counts."""


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    """One cron job of one connector."""

    connector: str
    full: bool
    cron: str

    @property
    def id(self) -> str:
        return f"{self.connector}:{'full' if self.full else 'incremental'}"


class SyncScheduler:
    """Fires each connector's schedules in this process and enqueues the syncs."""

    def __init__(self, app: App, jobs: JobQueue, *, clock: Clock = utc_now) -> None:
        self.app = app
        self.jobs = jobs
        self.clock = clock
        self._scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(max_workers=2)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": MISFIRE_GRACE_SECONDS,
            },
            timezone=UTC,
        )

    def planned(self) -> list[ScheduledJob]:
        """The jobs the config asks for."""
        planned = []
        for name, config in self.app.settings.connectors.items():
            if config.schedule is not None:
                planned.append(ScheduledJob(name, False, config.schedule))
            if config.full_schedule is not None:
                planned.append(ScheduledJob(name, True, config.full_schedule))
        return planned

    def start(self) -> None:
        """Enqueue the catch-up runs start-up owes, then fire the schedules until
        :meth:`shutdown`."""
        planned = self.planned()
        for job in planned:
            self._scheduler.add_job(
                self._fire,
                trigger=cron_trigger(job.cron),
                args=(job.connector, job.full),
                id=job.id,
                name=f"{'full' if job.full else 'incremental'} sync of {job.connector}",
                replace_existing=True,
            )
        self.catch_up()
        self._scheduler.start()
        log.info("scheduler started: %d scheduled job(s)", len(planned))

    def catch_up(self) -> dict[str, CatchUp]:
        """Enqueue one run for each connector whose schedule fired since its last run
        started (a connector never synced is synced now); returns what was enqueued."""
        scheduled = {
            name: config
            for name, config in self.app.settings.connectors.items()
            if config.schedule is not None or config.full_schedule is not None
        }
        if not scheduled:
            return {}
        now = self.clock()
        with self.app.open_store().read() as conn:
            starts = runs.last_sync_starts(conn, list(scheduled), excluding=CUT_SHORT)
        owed: dict[str, CatchUp] = {}
        for name, config in scheduled.items():
            by_mode = starts.get(name, {})
            decision = catch_up(
                schedule=config.schedule,
                full_schedule=config.full_schedule,
                last_run=max(by_mode.values(), default=None),
                last_full_run=by_mode.get("full"),
                now=now,
            )
            if decision is None:
                continue
            log.info("%s missed a scheduled run: one %s catch-up run", name, decision.value)
            self.jobs.enqueue_sync(name, full=decision is CatchUp.FULL)
            owed[name] = decision
        return owed

    def _fire(self, connector: str, full: bool) -> None:
        log.debug("schedule of %s fired (%s)", connector, "full" if full else "incremental")
        try:
            self.jobs.enqueue_sync(connector, full=full)
        except Exception:  # the next fire tries again; a job never stops the scheduler
            log.exception("could not enqueue the scheduled sync of %s", connector)

    def shutdown(self, wait: bool = True) -> None:
        """Stop firing; with ``wait``, until the fires in progress have enqueued. Safe to
        call more than once, and before :meth:`start`."""
        with contextlib.suppress(SchedulerNotRunningError):
            self._scheduler.shutdown(wait=wait)

    def alive(self) -> bool:
        """Whether the scheduler is firing (false before start and after shutdown)."""
        return bool(self._scheduler.state == STATE_RUNNING)
