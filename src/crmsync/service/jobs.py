"""The job-queue port the service takes its work through, and its in-process
implementation.

Two kinds of job, named by connector only (what a queue on another engine can carry):

- ``enqueue_sync(connector, full=...)``: a sync run, as ``crm-sync sync`` runs it (the
  connector's lease keeps it to one at a time, whoever started it);
- ``enqueue_import(connector)``: apply the connector's due webhook events
  (:class:`crmsync.service.inbox.InboxWorker`).

:class:`InProcessJobQueue` runs them on two threads of this process, one for syncs and one
for imports, so a long sync never holds up webhook imports. A job waiting in its lane is
not queued twice: at most one pending import and one pending sync of each kind per
connector (a job enqueued while the same job runs waits for it: events stored meanwhile
are applied by that second import). :class:`AppJobs` runs the jobs through the same
services as the CLI.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from crmsync.adapters import inbox as store_inbox
from crmsync.adapters.changelog import prune_change_log
from crmsync.sdk.connector import Connector
from crmsync.sdk.records import ObjectType
from crmsync.service.inbox import DrainReport, InboxWorker
from crmsync.service.sync import ConnectorBusy, RunResult

if TYPE_CHECKING:
    from crmsync.adapters.runs import RunCounts
    from crmsync.bootstrap import App

__all__ = [
    "AppJobs",
    "InProcessJobQueue",
    "InboxPoller",
    "JobHandlers",
    "JobQueue",
    "StopRequested",
]

log = logging.getLogger(__name__)


class JobQueue(Protocol):
    """Where the service's work is enqueued; a queue runs each job once, some time later."""

    def enqueue_sync(self, connector: str, *, full: bool) -> None:
        """Run a sync of ``connector`` (full or incremental)."""
        ...

    def enqueue_import(self, connector: str) -> None:
        """Apply the due webhook events of ``connector``."""
        ...


class JobHandlers(Protocol):
    """What runs the jobs; ``stop`` is set when the process is stopping."""

    def run_sync(self, connector: str, *, full: bool, stop: threading.Event) -> object: ...

    def run_import(self, connector: str, *, stop: threading.Event) -> object: ...


class StopRequested(KeyboardInterrupt):
    """Raised inside a running sync when the service stops: the engine records the run as
    interrupted, releases its lease and the next run resumes from its cursor."""


@dataclass(frozen=True, slots=True)
class _Job:
    kind: str  # "sync", "full", "import"
    connector: str


_STOP = _Job("stop", "")


class _Lane:
    """One worker thread and its queue; a job waiting in it is not queued twice."""

    def __init__(self, name: str, run: Callable[[_Job], None]) -> None:
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._waiting: set[_Job] = set()
        self._lock = threading.Lock()
        self._run = run
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.busy = False

    def start(self) -> None:
        self._thread.start()

    def put(self, job: _Job) -> None:
        with self._lock:
            if job in self._waiting:
                return
            self._waiting.add(job)
        self._queue.put(job)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            with self._lock:
                self._waiting.discard(job)
            self.busy = True
            try:
                self._run(job)
            except BaseException:  # a job never takes its lane down
                log.exception("job %s of %s failed", job.kind, job.connector)
            finally:
                self.busy = False

    def stop(self) -> None:
        self._queue.put(_STOP)

    def join(self, timeout: float | None) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()


class InProcessJobQueue:
    """Runs jobs on threads of this process: one lane for syncs, one for imports.

    ``imports=False`` (``serve --no-worker``) leaves imports to a worker process (which
    finds due events by polling the inbox); ``syncs=False`` drops sync jobs.
    """

    def __init__(self, handlers: JobHandlers, *, syncs: bool = True, imports: bool = True) -> None:
        self.handlers = handlers
        self.stopping = threading.Event()
        self._lanes: dict[str, _Lane] = {}
        if syncs:
            self._lanes["sync"] = _Lane("crm-sync-syncs", self._run)
        if imports:
            self._lanes["import"] = _Lane("crm-sync-imports", self._run)

    def start(self) -> None:
        for lane in self._lanes.values():
            lane.start()

    def enqueue_sync(self, connector: str, *, full: bool) -> None:
        self._put("sync", _Job("full" if full else "sync", connector))

    def enqueue_import(self, connector: str) -> None:
        self._put("import", _Job("import", connector))

    def _put(self, lane: str, job: _Job) -> None:
        if self.stopping.is_set():
            return  # stopping: the work stays where it is (a cursor, the inbox)
        target = self._lanes.get(lane)
        if target is not None:
            target.put(job)

    def _run(self, job: _Job) -> None:
        if self.stopping.is_set():
            return
        if job.kind == "import":
            self.handlers.run_import(job.connector, stop=self.stopping)
        else:
            self.handlers.run_sync(job.connector, full=job.kind == "full", stop=self.stopping)

    def alive(self) -> bool:
        """Every lane's thread is running (false once stopped)."""
        return bool(self._lanes) and all(lane.alive() for lane in self._lanes.values())

    def busy(self) -> bool:
        return any(lane.busy for lane in self._lanes.values())

    def stop(self) -> None:
        """Take no more work; the running jobs stop at their next safe point (a sync
        after its page, an import after its batch; claimed events are handed back)."""
        self.stopping.set()
        for lane in self._lanes.values():
            lane.stop()

    def close(self, *, timeout: float | None = None) -> None:
        """Stop, and wait up to ``timeout`` seconds for the running jobs to end."""
        self.stop()
        for lane in self._lanes.values():
            lane.join(timeout)


class InboxPoller:
    """Every ``every`` seconds, enqueues an import for each connector with due events
    (events another process stored, retries whose time came, events a dead worker had
    claimed) and forgets applied events past the retention."""

    def __init__(
        self,
        app: App,
        jobs: JobQueue,
        *,
        every: float,
        retention: timedelta,
    ) -> None:
        self.app = app
        self.jobs = jobs
        self.every = every
        self.retention = retention
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="crm-sync-inbox-poll", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poll(self) -> list[str]:
        store = self.app.open_store()
        with store.read() as conn:
            due = store_inbox.due_connectors(conn, self.app.clock())
        for name in due:
            if name in self.app.settings.connectors:
                self.jobs.enqueue_import(name)
        return due

    def prune(self) -> int:
        with self.app.open_store().begin() as conn:
            return store_inbox.prune_done(conn, self.app.clock() - self.retention)

    def _loop(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            try:
                self.poll()
                if rounds % 1_000 == 0:
                    self.prune()
            except Exception:
                log.exception("looking for due webhook events failed; trying again")
            rounds += 1
            self._stop.wait(self.every)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.ident is not None:
            self._thread.join(timeout)


class AppJobs:
    """Runs jobs through the same services as the CLI."""

    def __init__(
        self,
        app: App,
        *,
        on_run: Callable[[RunResult], None] | None = None,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.app = app
        self.on_run = on_run
        """Called with each finished run (sync or webhook import)."""
        self.on_lag = on_lag
        """Called with each applied event's time from arrival to applied, in seconds."""

    @contextmanager
    def _connector(self, name: str) -> Iterator[Connector]:
        connector = self.app.build_connector(name)
        try:
            yield connector
        finally:
            connector.close()

    def run_sync(self, connector: str, *, full: bool, stop: threading.Event) -> None:
        def progress(name: str, stream: ObjectType, counts: RunCounts, total: int | None) -> None:
            if stop.is_set():
                raise StopRequested(f"the service is stopping; {name} resumes from its cursor")

        engine = self.app.engine(progress=progress)
        config = self.app.settings.connectors[connector]
        try:
            with self._connector(connector) as source:
                result = engine.run(
                    connector,
                    source,
                    full=full,
                    reading=self.app.reading(connector),
                    max_deletion_share=config.max_deletion_share,
                )
        except ConnectorBusy as exc:
            log.info("sync of %s skipped: %s", connector, exc)
            return
        except StopRequested:
            log.info("sync of %s interrupted: the service is stopping", connector)
            return
        log.info("sync of %s %s (run %d)", connector, result.status, result.run_id)
        self._prune_change_log()
        if self.on_run is not None:
            self.on_run(result)

    def _prune_change_log(self) -> None:
        """Forget change-log entries past the retention, as ``crm-sync sync`` does."""
        days = self.app.settings.app.change_log.retention_days
        with self.app.open_store().begin() as conn:
            prune_change_log(conn, older_than=self.app.clock() - timedelta(days=days))

    def worker(self) -> InboxWorker:
        def applied(events: Sequence[store_inbox.StoredEvent], now: datetime) -> None:
            if self.on_lag is not None:
                for event in events:
                    self.on_lag((now - event.received_at).total_seconds())

        return InboxWorker(
            self.app.open_store(),
            self.app.engine(),
            self._connector,
            self.app.settings.app.webhooks,
            clock=self.app.clock,
            redact=self.app.redact,
            on_applied=applied,
        )

    def run_import(
        self, connector: str, *, stop: threading.Event, coalesce: bool = True
    ) -> DrainReport:
        """Apply the connector's due events (after ``webhooks.coalesce_seconds``, so that
        the events of a burst are fetched together)."""
        delay = self.app.settings.app.webhooks.coalesce_seconds
        if coalesce and delay > 0 and stop.wait(delay):
            return DrainReport()  # stopping: the events stay in the inbox
        report = self.worker().drain(connector, stop=stop)
        if self.on_run is not None:
            for result in report.runs:
                self.on_run(result)
        return report
