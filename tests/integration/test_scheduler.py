"""The scheduler built from the config: short crons enqueue syncs, full schedules enqueue
full runs, start-up after downtime owes one catch-up per connector, shutdown stops
firing, and two schedulers firing at once never run one connector twice at once."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.support.stores import wait_until

from crmsync.adapters import leases, runs
from crmsync.adapters.tables import customer_changes, sync_runs
from crmsync.bootstrap import App, bootstrap
from crmsync.errors import ConfigError
from crmsync.sdk.connector import utc_now
from crmsync.service.jobs import AppJobs, InProcessJobQueue, JobQueue
from crmsync.service.scheduler import SyncScheduler
from crmsync.service.sync import ConnectorBusy, RunResult

ROOT = Path(__file__).resolve().parents[2]
EVERY_SECOND = "* * * * * *"
NOW = datetime(2026, 12, 4, 10, 20, tzinfo=UTC)


def connector_section(name: str, **schedules: str) -> str:
    lines = [f"  {name}:", "    type: file"]
    lines += [f'    {key}: "{cron}"' for key, cron in schedules.items()]
    lines += [
        f"    companies: {{path: {ROOT}/examples/companies.csv}}",
        f"    contacts: {{path: {ROOT}/examples/contacts.csv}}",
    ]
    return "\n".join(lines)


def make_app(tmp_path: Path, store_url: str, sections: dict[str, dict[str, str]]) -> App:
    config = tmp_path / "crm-sync.yaml"
    body = "\n".join(connector_section(name, **crons) for name, crons in sections.items())
    config.write_text(f"database_url: ${{DB_URL}}\nconnectors:\n{body}\n", encoding="utf-8")
    return bootstrap(config, environ={"DB_URL": store_url})


@dataclass
class RecordingQueue:
    """A job queue that only records what was enqueued."""

    syncs: list[tuple[str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enqueue_sync(self, connector: str, *, full: bool) -> None:
        with self.lock:
            self.syncs.append((connector, full))

    def enqueue_import(self, connector: str) -> None:
        raise AssertionError("the scheduler enqueues no imports")

    def count(self) -> int:
        with self.lock:
            return len(self.syncs)


def record_run(app: App, connector: str, mode: str, started: datetime, status: str) -> None:
    with app.open_store().begin() as conn:
        run_id = runs.start_run(conn, connector, mode, "earlier-worker", started)
        runs.finish_run(conn, run_id, status, runs.RunCounts(), started + timedelta(seconds=5))


@pytest.fixture
def apps() -> Iterator[list[App]]:
    made: list[App] = []
    yield made
    for app in made:
        app.close()


@pytest.fixture
def schedulers() -> Iterator[list[SyncScheduler]]:
    made: list[SyncScheduler] = []
    yield made
    for scheduler in made:
        scheduler.shutdown(wait=True)


def started(
    schedulers: list[SyncScheduler], app: App, jobs: JobQueue, *, now: datetime | None = None
) -> SyncScheduler:
    scheduler = SyncScheduler(app, jobs, clock=(lambda: now) if now is not None else utc_now)
    schedulers.append(scheduler)
    scheduler.start()
    return scheduler


def up_to_date(app: App, connector: str) -> datetime:
    """Record a run that started now, so start-up owes the connector nothing."""
    now = utc_now()
    record_run(app, connector, "full", now, "succeeded")
    return now


def test_a_short_cron_enqueues_incremental_syncs(
    tmp_path: Path, store_url: str, apps: list[App], schedulers: list[SyncScheduler]
) -> None:
    app = make_app(tmp_path, store_url, {"sample": {"schedule": EVERY_SECOND}})
    apps.append(app)
    now = up_to_date(app, "sample")
    jobs = RecordingQueue()

    scheduler = started(schedulers, app, jobs, now=now)
    wait_until(lambda: jobs.count() >= 2, "the schedule fires twice")

    assert scheduler.alive()
    assert set(jobs.syncs) == {("sample", False)}


def test_a_full_schedule_enqueues_full_runs(
    tmp_path: Path, store_url: str, apps: list[App], schedulers: list[SyncScheduler]
) -> None:
    app = make_app(
        tmp_path,
        store_url,
        {"sample": {"schedule": "0 0 1 1 *", "full_schedule": EVERY_SECOND}},
    )
    apps.append(app)
    now = up_to_date(app, "sample")
    jobs = RecordingQueue()

    started(schedulers, app, jobs, now=now)
    wait_until(lambda: jobs.count() >= 2, "the full schedule fires twice")

    assert set(jobs.syncs) == {("sample", True)}


def test_start_up_after_downtime_enqueues_one_catch_up_per_connector(
    tmp_path: Path, store_url: str, apps: list[App], schedulers: list[SyncScheduler]
) -> None:
    hourly, nightly = "0 * * * *", "0 3 * * *"
    app = make_app(
        tmp_path,
        store_url,
        {
            "down-for-hours": {"schedule": hourly},
            "missed-nightly": {"schedule": hourly, "full_schedule": nightly},
            "cut-short": {"schedule": hourly},
            "up-to-date": {"schedule": hourly, "full_schedule": nightly},
            "never-synced": {"schedule": hourly},
            "manual-only": {},
        },
    )
    apps.append(app)
    record_run(app, "down-for-hours", "incremental", NOW - timedelta(hours=7), "succeeded")
    record_run(app, "down-for-hours", "incremental", NOW - timedelta(hours=6), "failed")
    record_run(app, "missed-nightly", "full", NOW - timedelta(days=2), "succeeded")
    record_run(app, "missed-nightly", "incremental", NOW - timedelta(minutes=15), "succeeded")
    record_run(app, "cut-short", "incremental", NOW - timedelta(hours=3), "succeeded")
    record_run(app, "cut-short", "incremental", NOW - timedelta(minutes=19), "interrupted")
    record_run(app, "up-to-date", "full", NOW - timedelta(hours=7), "succeeded")
    record_run(app, "up-to-date", "incremental", NOW - timedelta(minutes=19), "succeeded")
    record_run(app, "manual-only", "incremental", NOW - timedelta(days=30), "succeeded")
    jobs = RecordingQueue()

    scheduler = SyncScheduler(app, jobs, clock=lambda: NOW)
    schedulers.append(scheduler)
    scheduler.start()
    enqueued_at_start = list(jobs.syncs)

    assert sorted(enqueued_at_start) == [
        ("cut-short", False),
        ("down-for-hours", False),
        ("missed-nightly", True),
        ("never-synced", False),
    ]


def test_shutdown_stops_firing(
    tmp_path: Path, store_url: str, apps: list[App], schedulers: list[SyncScheduler]
) -> None:
    app = make_app(tmp_path, store_url, {"sample": {"schedule": EVERY_SECOND}})
    apps.append(app)
    now = up_to_date(app, "sample")
    stopped_jobs, control_jobs = RecordingQueue(), RecordingQueue()
    stopped = started(schedulers, app, stopped_jobs, now=now)
    wait_until(lambda: stopped_jobs.count() >= 1, "the schedule fires")

    stopped.shutdown(wait=True)
    fired = stopped_jobs.count()
    started(schedulers, app, control_jobs, now=now)  # a clock for "seconds went by"
    wait_until(lambda: control_jobs.count() >= 2, "a scheduler still running fires twice")

    assert not stopped.alive()
    assert stopped_jobs.count() == fired


def test_a_scheduler_is_alive_only_between_start_and_shutdown(
    tmp_path: Path, store_url: str, apps: list[App]
) -> None:
    app = make_app(tmp_path, store_url, {"sample": {"schedule": "0 0 1 1 *"}})
    apps.append(app)
    scheduler = SyncScheduler(app, RecordingQueue())

    before = scheduler.alive()
    scheduler.start()
    running = scheduler.alive()
    scheduler.shutdown()
    scheduler.shutdown()  # twice is harmless

    assert (before, running, scheduler.alive()) == (False, True, False)


@pytest.mark.parametrize("key", ["schedule", "full_schedule"])
@pytest.mark.parametrize("cron", ["61 * * * *", "* * *", "* * * * 8", "every day"])
def test_a_bad_cron_is_a_config_error_naming_the_key(
    tmp_path: Path, store_url: str, key: str, cron: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        make_app(tmp_path, store_url, {"sample": {key: cron}})

    assert f"connectors.sample.{key}" in str(raised.value)
    assert "not a cron expression" in str(raised.value)


def test_five_and_six_field_crons_are_accepted(tmp_path: Path, store_url: str) -> None:
    app = make_app(
        tmp_path, store_url, {"sample": {"schedule": "*/5 * * * * *", "full_schedule": "0 3 * * 0"}}
    )

    config = app.settings.connectors["sample"]
    assert (config.schedule, config.full_schedule) == ("*/5 * * * * *", "0 3 * * 0")


class RunningQueue:
    """Runs each enqueued sync with a real SyncEngine, on a thread of its own.

    Two of these run in lockstep, so the test decides nothing by timing: both meet at
    ``together`` before each attempt; the run that gets the lease waits after its first
    page until the other attempt was refused (``tried``), so every round contends.
    """

    def __init__(self, app: App, together: threading.Barrier, tried: threading.Barrier) -> None:
        self.app = app
        self.together = together
        self.tried = tried
        self.ran: list[RunResult] = []
        self.skipped = 0
        self._jobs: queue.Queue[tuple[str, bool] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def enqueue_sync(self, connector: str, *, full: bool) -> None:
        self._jobs.put((connector, full))

    def enqueue_import(self, connector: str) -> None:
        raise AssertionError("the scheduler enqueues no imports")

    def rounds(self) -> int:
        return len(self.ran) + self.skipped

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            connector, full = job
            try:
                self.together.wait()
            except threading.BrokenBarrierError:
                return  # the test is over
            self._attempt(connector, full)

    def _attempt(self, connector: str, full: bool) -> None:
        held = threading.Event()

        def after_page(*_: object) -> None:
            if not held.is_set():
                held.set()
                self.tried.wait()

        source = self.app.build_connector(connector)
        try:
            self.ran.append(
                self.app.engine(progress=after_page).run(
                    connector, source, full=full, reading=self.app.reading(connector)
                )
            )
        except ConnectorBusy:
            self.skipped += 1
            self.tried.wait()
        finally:
            source.close()

    def stop(self) -> None:
        self._jobs.put(None)
        self.together.abort()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()


def test_two_schedulers_firing_at_once_never_run_one_connector_twice_at_once(
    tmp_path: Path, store_url: str, apps: list[App], schedulers: list[SyncScheduler]
) -> None:
    first = make_app(tmp_path, store_url, {"sample": {"schedule": EVERY_SECOND}})
    second = make_app(tmp_path, store_url, {"sample": {"schedule": EVERY_SECOND}})
    apps.extend([first, second])
    together = threading.Barrier(2, timeout=60)
    tried = threading.Barrier(2, timeout=60)
    queues = [RunningQueue(app, together, tried) for app in (first, second)]

    for app, jobs in zip((first, second), queues, strict=True):
        started(schedulers, app, jobs)
    wait_until(
        lambda: sum(q.rounds() for q in queues) >= 8, "both schedulers fired four times", seconds=60
    )
    for scheduler in schedulers:
        scheduler.shutdown(wait=True)
    for jobs in queues:
        jobs.stop()

    with first.open_store().read() as conn:
        rows = conn.execute(
            sa.select(sync_runs.c.started_at, sync_runs.c.finished_at, sync_runs.c.status)
            .where(sync_runs.c.connector == "sample")
            .order_by(sync_runs.c.started_at)
        ).all()
    ran = sum(len(q.ran) for q in queues)
    skipped = sum(q.skipped for q in queues)
    assert len(rows) == ran >= 4
    assert skipped == ran  # every round: one run, and one attempt refused by the lease
    assert {row.status for row in rows} == {"succeeded"}
    for earlier, later in itertools.pairwise(rows):
        assert earlier.finished_at <= later.started_at, "two runs of one connector overlapped"


def test_a_scheduled_run_that_finds_the_lease_taken_is_skipped_with_a_log_line(
    tmp_path: Path,
    store_url: str,
    apps: list[App],
    schedulers: list[SyncScheduler],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crmsync")
    app = make_app(tmp_path, store_url, {"sample": {"schedule": EVERY_SECOND}})
    apps.append(app)
    other = replace(leases.this_process(), label="other-host:42", machine="elsewhere", pid=42)
    with app.open_store().begin() as conn:
        assert leases.acquire(conn, "sample", other, timedelta(minutes=5)) is None
    jobs = InProcessJobQueue(AppJobs(app), imports=False)
    jobs.start()
    try:
        started(schedulers, app, jobs)
        wait_until(
            lambda: "sync of sample skipped" in caplog.text, "a scheduled run finds the lease taken"
        )
    finally:
        jobs.close(timeout=30)

    skipped = [r for r in caplog.records if "sync of sample skipped" in r.getMessage()]
    assert "other-host:42" in skipped[0].getMessage()
    assert skipped[0].levelno == logging.INFO
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    with app.open_store().read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sync_runs)).scalar_one() == 0


def test_a_service_sync_prunes_the_change_log_past_its_retention(
    tmp_path: Path, store_url: str, apps: list[App]
) -> None:
    app = make_app(tmp_path, store_url, {"sample": {}})
    apps.append(app)
    jobs = AppJobs(app)
    jobs.run_sync("sample", full=True, stop=threading.Event())
    old = app.clock() - timedelta(days=400)
    with app.open_store().begin() as conn:
        conn.execute(
            sa.update(customer_changes).where(customer_changes.c.version == 1).values(at=old)
        )
        before = conn.execute(sa.select(sa.func.count()).select_from(customer_changes)).scalar_one()

    jobs.run_sync("sample", full=False, stop=threading.Event())

    with app.open_store().begin() as conn:
        after = conn.execute(sa.select(sa.func.count()).select_from(customer_changes)).scalar_one()
    assert after < before  # the year-old first entries went (a customer's latest stays)
