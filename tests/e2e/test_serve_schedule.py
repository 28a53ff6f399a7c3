"""``crm-sync serve`` runs scheduled syncs: a short cron fires, missed runs are caught
up once at start-up, and two services on one PostgreSQL store never run one connector
twice at once. The real CLI as subprocesses, the bundled sample export as the CRM.

Nothing here sleeps: each test waits until the store shows what it expects.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from crmsync.adapters.store import Store, create_store
from crmsync.adapters.tables import sync_runs
from crmsync.sdk import utc_now
from tests.e2e.conftest import CLI, ROOT, free_port, run_cli
from tests.support.stores import empty, wait_until

pytestmark = pytest.mark.slow

EVERY_SECOND = "* * * * * *"


def _project(folder: Path, store_url: str, schedule: str) -> Path:
    shutil.copytree(ROOT / "examples", folder / "examples")
    document = yaml.safe_load((ROOT / "config.example.yaml").read_text(encoding="utf-8"))
    document["database_url"] = store_url
    document["connectors"]["sample"]["schedule"] = schedule
    config = folder / "crm-sync.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return config


class Serve:
    """One ``crm-sync serve`` process (no webhooks, no worker: the scheduler role)."""

    def __init__(self, config: Path, name: str) -> None:
        self.port = free_port()
        self.log = config.parent / f"{name}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(CLI), "--config", str(config), "serve", "--port", str(self.port),
                 "--no-webhooks", "--no-worker"],
                cwd=config.parent,
                env=environ,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )  # fmt: skip
        wait_until(self._healthy, f"{name} answers /healthz")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"serve exited {self.process.returncode}: {self.log.read_text()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success
        except httpx.TransportError:
            return False

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = create_store(store_url)
    yield opened
    opened.dispose()


def runs_of(store: Store) -> list[Any]:
    with store.begin() as conn:
        return list(
            conn.execute(
                sa.select(sync_runs)
                .where(sync_runs.c.connector == "sample")
                .order_by(sync_runs.c.started_at)
            )
        )


def finished(store: Store, at_least: int) -> bool:
    return sum(1 for r in runs_of(store) if r.finished_at is not None) >= at_least


def test_a_short_cron_runs_syncs_and_sigterm_exits_0(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    config = _project(tmp_path, store_url, EVERY_SECOND)
    serve = Serve(config, "serve")
    try:
        wait_until(lambda: finished(store, 3), "three scheduled runs", seconds=60)
        assert serve.stop() == 0
    finally:
        serve.kill()

    done = runs_of(store)
    assert {r.status for r in done} <= {"succeeded"}
    listed = run_cli("--config", str(config), "customers", "list", "--json", cwd=tmp_path)
    assert len(listed.json()) > 0  # the scheduled runs synced the export


def test_runs_missed_while_down_are_caught_up_once_at_start_up(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    config = _project(tmp_path, store_url, "0 * * * *")  # hourly: none due while we wait
    synced = run_cli("--config", str(config), "sync", cwd=tmp_path)
    assert synced.code == 0, synced.stderr
    with store.begin() as conn:  # the last run was three hours ago: two fires were missed
        conn.execute(sa.update(sync_runs).values(started_at=utc_now() - timedelta(hours=3)))

    serve = Serve(config, "serve")
    try:
        wait_until(lambda: finished(store, 2), "the catch-up run", seconds=60)
        assert serve.stop() == 0
    finally:
        serve.kill()

    assert len(runs_of(store)) == 2  # one catch-up for the missed fires, not one each


@pytest.mark.postgres
def test_two_services_never_run_one_connector_twice_at_once(tmp_path: Path, pg_url: str) -> None:
    store = create_store(pg_url)
    config = _project(tmp_path, pg_url, EVERY_SECOND)
    first = second = None
    try:
        first, second = Serve(config, "first"), Serve(config, "second")
        wait_until(lambda: finished(store, 6), "six scheduled runs", seconds=90)
        assert first.stop() == 0
        assert second.stop() == 0
        done = runs_of(store)
        assert {r.status for r in done} <= {"succeeded"}
        for a, b in itertools.pairwise(done):
            assert a.finished_at is not None
            assert a.finished_at <= b.started_at, (a, b)
        log = first.log.read_text() + second.log.read_text()
        assert "Traceback" not in log
    finally:
        for serve in (first, second):
            if serve is not None:
                serve.kill()
        empty(store)
        store.dispose()
