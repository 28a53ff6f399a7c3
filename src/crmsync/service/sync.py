"""The sync engine: pages from a connector into the store, each page with its cursor.

For every stream of a connector the engine loads the committed cursor, asks the
connector for pages from it, and commits each page together with the cursor that
follows it: a run killed at any moment resumes at the last committed page, and
records that arrive twice (``>=`` cursors) are recognised by their content hash.
Bad records go to the quarantine with their reason and the run goes on.

One run per connector at a time: a lease in the store (renewed every page)
keeps a second worker from syncing the same connector concurrently; different
connectors sync in parallel. A run ends ``succeeded``, ``failed`` (error kept),
``rate_limited`` (the CRM's daily budget is spent; cursor saved, next run resumes)
or ``interrupted``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Generator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from crmsync.adapters import leases, runs, snapshot
from crmsync.adapters.batch import take_rows_written
from crmsync.adapters.readiness import OrderFor, pending_count, refresh_pending
from crmsync.adapters.sql import chunks
from crmsync.adapters.store import Store
from crmsync.adapters.writer import Writer
from crmsync.domain import TaxStatus
from crmsync.errors import ConnectorError, CrmSyncError, RateLimitExhausted
from crmsync.sdk.connector import Clock, Connector, ReadPlan, ReadRequest, utc_now
from crmsync.sdk.records import CompanyRecord, ContactRecord, Cursor, ObjectType, Page
from crmsync.service.prefetch import prefetch, side_by_side

__all__ = ["ConnectorBusy", "RunResult", "SyncEngine"]

log = logging.getLogger(__name__)

Progress = Callable[[str, ObjectType, runs.RunCounts, "int | None"], None]
"""Called after every committed page: connector name, stream, the run's counts so far,
and the stream's total records when the source knows it (``Page.total``), else None."""

HEARTBEAT_EVERY = timedelta(seconds=2)
"""How often a run's row gets its counts and heartbeat while pages commit (and when it
ends). Each page commits its cursor; the run row only needs to show a live run."""
_NEVER = datetime.min.replace(tzinfo=UTC)
REFRESH_COUNT_EVERY = 20
"""Pages between two counts of the customers waiting for their readiness refresh."""


@dataclass(frozen=True, slots=True)
class SnapshotPass:
    """A full pass of a snapshot source under way: when it began, and the largest share
    of the stream's records it may mark deleted."""

    began: datetime
    max_share: float
    run_id: int


def _full_pass(cursor: Cursor | None, *, full: bool) -> bool:
    """Whether a request with this cursor reads a full pass (see :class:`ReadRequest`)."""
    if cursor is not None and cursor.in_pass:
        return cursor.full
    return full or cursor is None or cursor.since is None


class DeletionsStopped(CrmSyncError):
    """A completed snapshot pass lacks more records than the connector allows to mark."""


class ConnectorBusy(CrmSyncError):
    """Another run holds the connector's lease."""

    exit_code = 7


class LeaseLost(CrmSyncError):
    """The run's lease expired and another run took it: the run stops writing."""


@dataclass(slots=True)
class RunResult:
    """The outcome of one sync run."""

    run_id: int
    connector: str
    mode: str
    status: str
    counts: runs.RunCounts
    duration_seconds: float
    error: str | None = None
    streams: dict[str, runs.RunCounts] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    """For a resync: the requested ids the CRM does not have."""
    refreshed: int = 0
    """Customers whose primary contact and readiness the run recomputed (a pass
    recomputes each customer it touched once, not once per page)."""

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def _is_conflict(exc: BaseException) -> bool:
    """Deadlocks, serialization failures and a busy SQLite file: retry the page."""
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "sqlstate", None)
    # serialization failure, deadlock, and a unique key a concurrent writer took first
    if code in {"40001", "40P01", "23505"}:
        return True
    return "database is locked" in str(exc.orig)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class SyncEngine:
    """Runs syncs of connectors into a store."""

    def __init__(
        self,
        store: Store,
        *,
        default_tax_status: TaxStatus,
        order_for: OrderFor,
        clock: Clock = utc_now,
        worker_id: str | None = None,
        lease_ttl: timedelta = timedelta(minutes=5),
        prefetch_pages: int = 2,
        progress: Progress | None = None,
        conflict_attempts: int = 5,
        redact: Callable[[str], str] = str,
        refresh_every: timedelta = timedelta(minutes=5),
        refresh_when_waiting: int = 50_000,
    ) -> None:
        self.store = store
        self.default_tax_status = default_tax_status
        self.order_for = order_for
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        self.lease_ttl = lease_ttl
        self.prefetch_pages = prefetch_pages
        self.progress = progress
        self.conflict_attempts = conflict_attempts
        self.redact = redact
        """Masks secrets in a run's error before it is stored or returned."""
        self.refresh_every = refresh_every
        self.refresh_when_waiting = refresh_when_waiting
        """During a pass, how long customers may wait for their readiness refresh, and
        how many may wait, before one runs (it also runs at the end of each stream)."""
        self._beats: dict[int, datetime] = {}
        """When each run's row last got its counts and heartbeat."""

    # -- one transaction per page --------------------------------------------------

    def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        for attempt in Retrying(
            retry=retry_if_exception(_is_conflict),
            stop=stop_after_attempt(self.conflict_attempts),
            wait=wait_random_exponential(multiplier=0.05, max=2),
            reraise=True,
        ):
            with attempt, self.store.begin() as conn:
                return work(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def apply_page(
        self,
        conn: Connection,
        name: str,
        page: Page,
        run_id: int | None,
        counts: runs.RunCounts,
        *,
        cause: str | None = None,
        defer: bool = False,
    ) -> None:
        """Write one page's records and quarantine its bad ones (no commit).

        With ``defer`` the customers it touched are marked for a later readiness
        refresh (:meth:`refresh_waiting`) instead of being refreshed in this transaction:
        a pass touches most customers on many pages, and is refreshed once."""
        now = self.clock()
        writer = Writer(
            conn,
            connector=name,
            default_tax_status=self.default_tax_status,
            order_for=self.order_for,
            now=now,
            read_at=page.read_at,
            cause=cause or (f"sync run {run_id}" if run_id is not None else "sync"),
        )
        companies = [r for r in page.records if isinstance(r, CompanyRecord)]
        contact_records = [r for r in page.records if isinstance(r, ContactRecord)]
        written = writer.write_companies(companies)
        written.add(writer.write_contacts(contact_records))
        if defer:
            writer.defer(written.touched)
        else:
            writer.refresh(written.touched)
        runs.quarantine_records(conn, name, page.bad, run_id, now)
        for kind, recs in ((ObjectType.COMPANY, companies), (ObjectType.CONTACT, contact_records)):
            if recs:
                runs.resolve_quarantine(conn, name, kind, [r.external_id for r in recs])
        counts.seen += len(page.records) + len(page.bad)
        counts.created += written.created
        counts.updated += written.updated
        counts.unchanged += written.unchanged
        counts.stale += written.stale
        counts.skipped += written.skipped
        counts.quarantined += len(page.bad)

    # -- runs ----------------------------------------------------------------------

    def _start(self, name: str, mode: str, *, lease: leases.Holder | None) -> int:
        def begin(conn: Connection) -> int:
            now = self.clock()
            if lease is not None:
                holder = leases.acquire(conn, name, lease, self.lease_ttl)
                if holder is not None:
                    raise ConnectorBusy(
                        f"connector {name!r} is being synced by {holder.label}"
                        " (crm-sync waits for it, or takes its lease over if it dies)"
                    )
                # Holding the lease, no other sync of this connector can be running: a
                # run row that says so belongs to a process that died.
                leases.close_orphaned_runs(conn, name, now)
            return runs.start_run(conn, name, mode, self.worker_id, now)

        run_id: int = self._transaction(begin)
        return run_id

    def _finish(
        self,
        name: str,
        run_id: int,
        status: str,
        counts: runs.RunCounts,
        error: str | None,
        *,
        lease: leases.Holder | None = None,
    ) -> None:
        def end(conn: Connection) -> None:
            runs.finish_run(conn, run_id, status, counts, self.clock(), error)
            if lease is not None:
                leases.release(conn, name, lease.token)

        self._transaction(end)

    def run(
        self,
        name: str,
        connector: Connector,
        *,
        full: bool = False,
        reading: ReadPlan | None = None,
        max_deletion_share: float = 0.10,
        force_deletions: bool = False,
    ) -> RunResult:
        """Sync every stream of one connector: full, or incremental from the saved cursors.

        ``reading`` is how the connector's plugin wants its streams read (by default
        ``prefetch_pages`` ahead, one stream after the other). When its full passes are
        complete snapshots, a completed full pass marks the records it lacked deleted,
        unless they are more than ``max_deletion_share`` of the stream's records (the
        run then fails and marks none; ``force_deletions`` marks them anyway).
        """
        plan = reading or ReadPlan(read_ahead=self.prefetch_pages)
        mode = "full" if full else "incremental"
        started = time.monotonic()
        lease = leases.this_process()
        run_id = self._start(name, mode, lease=lease)
        run_started_at = self.clock()
        counts = runs.RunCounts()
        per_stream: dict[str, runs.RunCounts] = {}
        status, error = "succeeded", None
        refreshed = 0
        log.info("sync %s started (run %d, %s)", name, run_id, mode)

        snapshots: dict[ObjectType, SnapshotPass] = {}

        def request(stream: ObjectType) -> ReadRequest:
            cursor = self._transaction(partial(runs.load_cursor, connector=name, stream=stream))
            if plan.full_pass_is_snapshot and _full_pass(cursor, full=full):
                resumed = self._transaction(
                    partial(snapshot.pass_started_at, connector=name, stream=stream)
                )
                began = resumed if cursor is not None and cursor.in_pass else run_started_at
                if began is not None:  # a pass begun by an older crm-sync marks nothing
                    share = 1.0 if force_deletions else max_deletion_share
                    snapshots[stream] = SnapshotPass(began, share, run_id)
            return ReadRequest(stream=stream, cursor=cursor, full=full, started_at=run_started_at)

        try:
            streams = list(connector.streams())
            for stream in streams:
                per_stream[stream.value] = runs.RunCounts()
            keeper = leases.LeaseKeeper(
                lambda: bool(
                    self._transaction(partial(leases.holds, connector=name, token=lease.token,
                                              ttl=self.lease_ttl))
                ),
                self.lease_ttl,
            )  # fmt: skip
            refreshed_at, pages_since = time.monotonic(), 0
            with keeper, closing(self._pages(connector, streams, request, plan)) as pages:
                for page in pages:
                    if not isinstance(page, Page):  # a stream ended: refresh what it touched
                        refreshed += self.refresh_waiting(f"sync run {run_id}")
                        refreshed_at, pages_since = time.monotonic(), 0
                        continue
                    self._commit_page(
                        name,
                        run_id,
                        page,
                        counts,
                        per_stream[page.stream.value],
                        snapshots.get(page.stream),
                        lease.token,
                    )
                    if self.progress is not None:
                        self.progress(name, page.stream, counts, page.total)
                    pages_since += 1
                    if self._refresh_due(refreshed_at, pages_since):
                        refreshed += self.refresh_waiting(f"sync run {run_id}")
                        refreshed_at, pages_since = time.monotonic(), 0
        except RateLimitExhausted as exc:
            status, error = "rate_limited", str(exc)
            log.warning("sync %s stopped: %s; it resumes from its cursor next run", name, exc)
        except LeaseLost as exc:
            status, error = "lost_lease", str(exc)
            log.error("sync %s stopped: %s", name, exc)
        except (ConnectorError, CrmSyncError) as exc:
            status, error = "failed", str(exc)
            log.error("sync %s failed: %s", name, exc)
        except KeyboardInterrupt:
            self._finish(
                name, run_id, "interrupted", counts, "interrupted by the user", lease=lease
            )
            raise
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("sync %s failed unexpectedly", name)
        if status != "succeeded":  # what its committed pages touched is refreshed anyway
            self._refresh_after_failure(name, run_id)
        error = None if error is None else self.redact(error)
        self._finish(name, run_id, status, counts, error, lease=lease)
        self._beats.pop(run_id, None)
        duration = time.monotonic() - started
        log.info("sync %s %s in %.1fs: %s", name, status, duration, counts.as_dict())
        return RunResult(
            run_id, name, mode, status, counts, duration, error, per_stream, refreshed=refreshed
        )

    def _refresh_due(self, since: float, pages: int) -> bool:
        """Whether customers have waited long enough, or enough of them wait, for a
        refresh in the middle of a stream (counted every ``REFRESH_COUNT_EVERY`` pages)."""
        if time.monotonic() - since >= self.refresh_every.total_seconds():
            return True
        if pages % REFRESH_COUNT_EVERY:
            return False
        waiting: int = self._transaction(pending_count)
        return waiting >= self.refresh_when_waiting

    def refresh_waiting(self, cause: str) -> int:
        """Recompute the readiness of every customer marked for it, in batches of their
        own transactions; returns how many. (Any writer's marks are taken, whichever
        connector or run left them: a run killed before its refresh leaves them to the
        next one.)"""
        total = 0
        while True:
            taken: int = self._transaction(
                lambda conn: refresh_pending(
                    conn, order_for=self.order_for, now=self.clock(), cause=cause
                )
            )
            total += taken
            if not taken:
                return total

    def _refresh_after_failure(self, name: str, run_id: int) -> None:
        try:
            self.refresh_waiting(f"sync run {run_id}")
        except Exception:  # the run's own outcome is what matters; the next run retries
            log.exception("sync %s: refreshing readiness after the run failed", name)

    @staticmethod
    def _pages(
        connector: Connector,
        streams: Sequence[ObjectType],
        request: Callable[[ObjectType], ReadRequest],
        plan: ReadPlan,
    ) -> Generator[Page | ObjectType, None, None]:
        """The pages of every stream, in the order the plan reads them; after the last
        page of a stream (of all, when read side by side), the stream itself."""
        if plan.side_by_side and plan.read_ahead > 0 and len(streams) > 1:
            yield from side_by_side(
                [connector.read(request(stream)) for stream in streams], plan.read_ahead
            )
            yield streams[-1]
            return
        for stream in streams:
            yield from prefetch(connector.read(request(stream)), plan.read_ahead)
            yield stream

    def _commit_page(
        self,
        name: str,
        run_id: int,
        page: Page,
        counts: runs.RunCounts,
        stream_counts: runs.RunCounts,
        snapshot_pass: SnapshotPass | None,
        token: str,
    ) -> None:
        def work(
            conn: Connection,
        ) -> tuple[runs.RunCounts, runs.RunCounts, Counter[str], datetime | None]:
            take_rows_written(conn)  # what an attempt that rolled back counted
            now = self.clock()
            if not leases.holds(conn, name, token, self.lease_ttl):
                raise LeaseLost(
                    f"this run lost its lease on {name!r} (another worker took it over after"
                    " it expired); it stopped writing, and the next run resumes from its cursor"
                )
            page_counts = runs.RunCounts()
            self.apply_page(conn, name, page, run_id, page_counts, defer=True)
            runs.save_cursor(conn, name, page.stream, page.cursor, now)
            if snapshot_pass is not None:
                self._note_snapshot(conn, name, page, snapshot_pass, page_counts)
            total = _plus(counts, page_counts)
            if now - self._beats.get(run_id, _NEVER) >= HEARTBEAT_EVERY:
                runs.update_run(conn, run_id, total, now)
                beat = now
            else:
                beat = None
            return total, page_counts, take_rows_written(conn), beat

        total, page_counts, rows_written, beat = self._transaction(work)
        if beat is not None:  # only once committed: a page that rolled back beat nothing
            self._beats[run_id] = beat

        self.store.note_written(rows_written)
        _assign(counts, total)
        _assign(stream_counts, _plus(stream_counts, page_counts))

    def _note_snapshot(
        self,
        conn: Connection,
        name: str,
        page: Page,
        snap: SnapshotPass,
        counts: runs.RunCounts,
    ) -> None:
        """Stamp what a page of a snapshot pass delivered; when the pass completes, mark
        what it lacked deleted (in the same transaction as its last page)."""
        now = self.clock()
        snapshot.start_pass(conn, name, page.stream, snap.began)
        delivered = [r.external_id for r in page.records]
        delivered += [b.external_id for b in page.bad if b.external_id]
        snapshot.mark_seen(conn, name, page.stream, delivered, now)
        if page.cursor.in_pass:
            return
        gone = snapshot.unseen(conn, name, page.stream, snap.began)
        missing = len(gone)
        present = snapshot.live_count(conn, name, page.stream)
        if missing and missing > snap.max_share * present:
            raise DeletionsStopped(
                f"the {page.stream.value} export lacks {missing:,} of the {present:,} records"
                f" the store holds ({missing / present:.0%}, more than the"
                f" {snap.max_share:.0%} max_deletion_share allows); none were marked deleted."
                " If the records were removed on purpose, run `crm-sync sync --full"
                " --force-deletions`"
            )
        for batch in chunks(gone):
            self._apply_tombstones(conn, name, page.stream, batch, counts, snap.run_id)
        runs.forget_unseen_without_id(conn, name, page.stream, snap.began)
        snapshot.start_pass(conn, name, page.stream, None)
        if missing:
            log.warning("sync %s: %d %s records left the export", name, missing, page.stream)

    def _apply_tombstones(
        self,
        conn: Connection,
        name: str,
        stream: ObjectType,
        ids: Sequence[str],
        counts: runs.RunCounts,
        run_id: int,
        *,
        cause: str | None = None,
    ) -> None:
        writer = Writer(
            conn,
            connector=name,
            default_tax_status=self.default_tax_status,
            order_for=self.order_for,
            now=self.clock(),
            cause=cause or f"sync run {run_id}: left the export",
        )
        if stream is ObjectType.COMPANY:
            written = writer.write_companies(
                [CompanyRecord(external_id=i, deleted=True) for i in ids]
            )
        else:
            written = writer.write_contacts(
                [ContactRecord(external_id=i, deleted=True) for i in ids]
            )
        writer.refresh(written.touched)
        counts.updated += written.updated
        counts.stale += written.stale
        counts.skipped += written.skipped

    def resync(
        self,
        name: str,
        connector: Connector,
        object_type: ObjectType,
        ids: Sequence[str],
        *,
        mode: str = "resync",
    ) -> RunResult:
        """Re-import the named records of one object type now (see :meth:`import_records`)."""
        return self.import_records(name, connector, {object_type: ids}, mode=mode)

    def import_records(
        self,
        name: str,
        connector: Connector,
        wanted: Mapping[ObjectType, Sequence[str]],
        *,
        mode: str = "resync",
        missing_deleted: bool = False,
    ) -> RunResult:
        """The one way in for records outside a pass: fetch the named records of each
        object type from the CRM now and apply them, without moving any cursor.

        Companies are applied before contacts, all in one transaction, under one run row
        (``mode`` names what started it: ``resync``, ``webhook``). A requested id the CRM
        does not return is listed in the result's ``missing``; with ``missing_deleted``
        it is marked deleted in the store (a deletion the CRM confirms). The readiness of
        the customers it touched is recomputed before it returns. Takes no lease: it may
        run while a sync of the same connector is under way (webhook imports do), which
        the writer's version rules make safe. Any exception ends the run as failed.
        """
        started = time.monotonic()
        run_id = self._start(name, mode, lease=None)
        counts = runs.RunCounts()
        status, error = "succeeded", None
        missing: dict[ObjectType, tuple[str, ...]] = {}
        try:
            pages = {}
            for kind in (ObjectType.COMPANY, ObjectType.CONTACT):
                ids = list(dict.fromkeys(wanted.get(kind, ())))
                if ids:
                    pages[kind] = connector.fetch(kind, ids)
                    missing[kind] = _not_returned(ids, pages[kind])
            gone = missing if missing_deleted else {}
            self._transaction(
                partial(
                    self._import_pages,
                    name=name,
                    pages=pages,
                    gone=gone,
                    run_id=run_id,
                    counts=counts,
                    cause=f"{mode} run {run_id}",
                )
            )
        except RateLimitExhausted as exc:
            status, error = "rate_limited", str(exc)
        except (ConnectorError, CrmSyncError) as exc:
            status, error = "failed", str(exc)
        except KeyboardInterrupt:
            self._finish(name, run_id, "interrupted", counts, "interrupted by the user")
            raise
        except BaseException as exc:
            error = self.redact(f"{type(exc).__name__}: {exc}")
            self._finish(name, run_id, "failed", counts, error)
            raise
        error = None if error is None else self.redact(error)
        self._finish(name, run_id, status, counts, error)
        duration = time.monotonic() - started
        return RunResult(
            run_id,
            name,
            mode,
            status,
            counts,
            duration,
            error,
            missing=tuple(i for ids in missing.values() for i in ids),
        )

    def _import_pages(
        self,
        conn: Connection,
        *,
        name: str,
        pages: Mapping[ObjectType, Page],
        gone: Mapping[ObjectType, Sequence[str]],
        run_id: int,
        counts: runs.RunCounts,
        cause: str,
    ) -> None:
        fresh = runs.RunCounts()
        for kind in (ObjectType.COMPANY, ObjectType.CONTACT):
            page = pages.get(kind)
            if page is not None:
                self.apply_page(conn, name, page, run_id, fresh, cause=cause)
            if gone.get(kind):
                self._apply_tombstones(conn, name, kind, gone[kind], fresh, run_id, cause=cause)
        _assign(counts, fresh)


def _not_returned(ids: Sequence[str], page: Page) -> tuple[str, ...]:
    """The requested ids a fetch returned neither as a record nor as a bad record."""
    found = {r.external_id for r in page.records}
    found |= {b.external_id for b in page.bad if b.external_id}
    return tuple(i for i in ids if i not in found)


def _plus(a: runs.RunCounts, b: runs.RunCounts) -> runs.RunCounts:
    return runs.RunCounts(
        *(x + y for x, y in zip(a.as_dict().values(), b.as_dict().values(), strict=True))
    )


def _assign(target: runs.RunCounts, source: runs.RunCounts) -> None:
    for key, value in source.as_dict().items():
        setattr(target, key, value)
