"""One sync of a connector at a time: a lease per run, kept alive by a heartbeat.

A run takes its connector's lease with a token of its own (a second run is refused
wherever it starts, in the same process too), renews it on a heartbeat thread that does
not wait for page commits, and proves it still holds it in every page's transaction:
a run whose lease was taken stops writing. Expiry is judged by the database's clock
(PostgreSQL's ``now()``; a SQLite store lives on one machine, whose clock it is), so
workers whose clocks disagree still agree on who holds a lease.

A lease whose holder died on this machine is taken over at once: the holder names its
machine (boot id and process namespace, so containers that share a host name are not
mistaken for one another), its pid and when that process started; the pid alone could
name another process by now. Anywhere else, the lease expires after its time to live.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crmsync.adapters.sql import insert_for
from crmsync.adapters.tables import sync_leases, sync_runs

log = logging.getLogger(__name__)

__all__ = [
    "Holder",
    "LeaseKeeper",
    "acquire",
    "close_orphaned_runs",
    "holds",
    "release",
    "this_process",
]


@cache
def _machine() -> str:
    """This machine and process namespace: where a pid means this process table."""
    parts = []
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        with contextlib.suppress(OSError):
            parts.append(
                os.readlink(path) if path.endswith("/pid") else Path(path).read_text().strip()
            )
    if not parts:  # not Linux: the host name and the boot time
        parts = [socket.gethostname(), str(psutil.boot_time())]
    return "|".join(parts)


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lease: one run of one process."""

    token: str
    label: str
    """For people: ``host:pid``, shown when a run is refused."""
    machine: str
    pid: int
    started: float
    """When the process started (``psutil``'s create time): tells a reused pid apart."""

    def is_dead(self) -> bool:
        """Whether the holder's process is gone; only knowable on its own machine."""
        if self.machine != _machine():
            return False
        try:
            started = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:  # alive, and not ours to inspect
            return False
        return round(started, 2) != round(self.started, 2)


def this_process() -> Holder:
    """A fresh holder for a run of this process (a new token each time)."""
    pid = os.getpid()
    return Holder(
        token=uuid.uuid4().hex,
        label=f"{socket.gethostname()}:{pid}",
        machine=_machine(),
        pid=pid,
        started=psutil.Process(pid).create_time(),
    )


def _now(conn: Connection) -> sa.ColumnElement[datetime] | datetime:
    if conn.dialect.name == "postgresql":
        return sa.func.now()
    return datetime.now(UTC)


def _expiry(conn: Connection, ttl: timedelta) -> sa.ColumnElement[datetime] | datetime:
    if conn.dialect.name == "postgresql":
        return sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, ttl.total_seconds())
    return datetime.now(UTC) + ttl


def acquire(conn: Connection, connector: str, holder: Holder, ttl: timedelta) -> Holder | None:
    """Take the connector's lease for ``holder``; returns the current holder if another
    live run has it. An expired lease, or one whose holder died here, is taken over."""
    for _ in range(2):
        stmt = insert_for(conn, sync_leases).values(
            connector=connector,
            owner=holder.label,
            token=holder.token,
            machine=holder.machine,
            pid=holder.pid,
            process_started=holder.started,
            expires_at=_expiry(conn, ttl),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[sync_leases.c.connector],
            set_={
                column: getattr(stmt.excluded, column)
                for column in ("owner", "token", "machine", "pid", "process_started", "expires_at")
            },
            where=sa.or_(
                sync_leases.c.token == holder.token, sync_leases.c.expires_at < _now(conn)
            ),
        )
        if conn.execute(stmt.returning(sync_leases.c.token)).first() is not None:
            return None
        current = _holder_of(conn, connector)
        if current is None or not current.is_dead():
            return current
        conn.execute(  # its process died on this machine: no need to wait for expiry
            sa.delete(sync_leases).where(
                sync_leases.c.connector == connector, sync_leases.c.token == current.token
            )
        )
    return _holder_of(conn, connector)


def _holder_of(conn: Connection, connector: str) -> Holder | None:
    row = conn.execute(
        sa.select(
            sync_leases.c.token,
            sync_leases.c.owner,
            sync_leases.c.machine,
            sync_leases.c.pid,
            sync_leases.c.process_started,
        ).where(sync_leases.c.connector == connector)
    ).first()
    if row is None:
        return None
    return Holder(
        row.token or "", row.owner, row.machine or "", row.pid or 0, row.process_started or 0.0
    )


def holds(conn: Connection, connector: str, token: str, ttl: timedelta) -> bool:
    """Renew the lease if ``token`` still holds it (one conditional statement)."""
    result = conn.execute(
        sa.update(sync_leases)
        .where(sync_leases.c.connector == connector, sync_leases.c.token == token)
        .values(expires_at=_expiry(conn, ttl))
    )
    return result.rowcount == 1


def release(conn: Connection, connector: str, token: str) -> None:
    conn.execute(
        sa.delete(sync_leases).where(
            sync_leases.c.connector == connector, sync_leases.c.token == token
        )
    )


def close_orphaned_runs(conn: Connection, connector: str, now: datetime) -> int:
    """End the sync runs of a connector still shown as running: called by the run that
    just took the lease, none of them can be alive (a resync takes no lease and is not
    touched)."""
    result = conn.execute(
        sa.update(sync_runs)
        .where(
            sync_runs.c.connector == connector,
            sync_runs.c.status == "running",
            sync_runs.c.mode.in_(("full", "incremental")),
        )
        .values(
            status="abandoned",
            finished_at=now,
            error="the process running this sync stopped without finishing it",
        )
    )
    return result.rowcount


class LeaseKeeper:
    """Renews a lease every ``ttl / 3`` on a thread of its own until stopped.

    ``renew`` runs one transaction and says whether the lease is still held; once it is
    not, :attr:`lost` is set and the keeper stops (the run's next page then fails).
    """

    def __init__(self, renew: Callable[[], bool], ttl: timedelta) -> None:
        self._renew = renew
        self._every = max(ttl.total_seconds() / 3, 0.01)
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                held = self._renew()
            except Exception:  # a failed renewal (store busy, network) is retried next beat
                log.warning("could not renew the sync lease; trying again", exc_info=True)
                continue
            if not held:
                self.lost.set()
                return
