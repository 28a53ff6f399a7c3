"""``crm-sync sync`` while another run holds the connector's lease: exit 7 naming the
holder, or, with ``--wait``, wait until the lease is free and then sync."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from crmsync.adapters import leases
from crmsync.adapters.store import Store
from crmsync.adapters.tables import sync_runs
from tests.e2e.conftest import CLI, ROOT, run_cli

pytestmark = pytest.mark.slow

HOLDER = "billing-box:4242"


@pytest.fixture
def project(tmp_path: Path, store_url: str) -> Path:
    """The example config, on the test's store (SQLite or PostgreSQL)."""
    text = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    config = text.replace("sqlite:///crm-sync.db", "${DB_URL}").replace(
        "examples/", f"{ROOT}/examples/"
    )
    (tmp_path / "crm-sync.yaml").write_text(config, encoding="utf-8")
    return tmp_path


@pytest.fixture
def held(store: Store) -> leases.Holder:
    """The sample connector's lease, held by a live run of another machine."""
    holder = replace(leases.this_process(), label=HOLDER, machine="another-machine", pid=4242)
    with store.begin() as conn:
        assert leases.acquire(conn, "sample", holder, timedelta(minutes=5)) is None
    return holder


def release(store: Store, holder: leases.Holder) -> None:
    with store.begin() as conn:
        leases.release(conn, "sample", holder.token)


def run_count(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(sync_runs)).scalar_one())


class Running:
    """The CLI started in the background; its stderr lines arrive on a queue."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str]) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
        environ.update(env)
        self.process = subprocess.Popen(
            [str(CLI), *args],
            cwd=cwd,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for text in self.process.stderr:
            self.stderr.append(text)
            self.lines.put(text)
        self.lines.put(None)

    def line_with(self, words: str, *, seconds: float = 60) -> str:
        """Wait for the first stderr line holding ``words`` (fails if the CLI ends first)."""
        while True:
            text = self.lines.get(timeout=seconds)
            assert text is not None, f"the CLI ended without saying {words!r}: {self.stderr}"
            if words in text:
                return text

    def finish(self, *, seconds: float = 120) -> tuple[int, str, str]:
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        code = self.process.wait(timeout=seconds)
        self._reader.join(timeout=seconds)
        return code, stdout, "".join(self.stderr)

    def close(self) -> None:
        """Kill the CLI if it still runs, and close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=60)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def test_a_sync_that_finds_the_lease_taken_exits_7_naming_the_holder(
    project: Path, store_url: str, store: Store, held: leases.Holder
) -> None:
    refused = run_cli("sync", cwd=project, env={"DB_URL": store_url})

    assert refused.code == 7, refused.stdout + refused.stderr
    assert HOLDER in refused.stderr
    assert run_count(store) == 0


def test_sync_wait_says_once_whom_it_waits_for_and_syncs_once_the_lease_is_free(
    project: Path, store_url: str, store: Store, held: leases.Holder
) -> None:
    cli = Running("sync", "--wait", cwd=project, env={"DB_URL": store_url})
    try:
        waiting = cli.line_with("waiting")
        assert cli.process.poll() is None  # still waiting: the lease is held
        assert run_count(store) == 0

        release(store, held)
        code, stdout, stderr = cli.finish()
    finally:
        cli.close()

    assert HOLDER in waiting
    assert code == 0, stdout + stderr
    assert "sample: succeeded" in stdout
    assert stderr.count("waiting") == 1
    assert run_count(store) == 1


def test_sync_wait_gives_up_after_the_wait_timeout_with_exit_7(
    project: Path, store_url: str, store: Store, held: leases.Holder
) -> None:
    gave_up = run_cli(
        "sync", "--wait", "--wait-timeout", "0.5", cwd=project, env={"DB_URL": store_url}
    )

    assert gave_up.code == 7, gave_up.stdout + gave_up.stderr
    assert "gave up after waiting 0.5s" in gave_up.stderr
    assert HOLDER in gave_up.stderr
    assert run_count(store) == 0


def test_sync_wait_runs_at_once_when_the_lease_is_free(
    project: Path, store_url: str, store: Store
) -> None:
    synced = run_cli("sync", "--wait", "--json", cwd=project, env={"DB_URL": store_url})

    assert synced.code == 0, synced.stderr
    assert "waiting" not in synced.stderr
    assert [run["status"] for run in synced.json()["runs"]] == ["succeeded"]
