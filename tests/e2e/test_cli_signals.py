"""A sync stopped by a signal records its run as interrupted, not left "running".

The CLI syncs a HubSpot connector pointed at a CRM the test starts on 127.0.0.1 that
holds every request until released: the sync is under way (its run row written, its
first request waiting) when the test signals it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import CLI

pytestmark = pytest.mark.slow


class StallingCrm:
    """An HTTP server that answers nothing until ``release`` is set (then 401 to all)."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        crm = self

        class Handler(BaseHTTPRequestHandler):
            def _hold(self) -> None:
                crm.arrived.set()
                crm.release.wait(timeout=60)
                body = b'{"status": "error", "message": "unauthorized"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _hold

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def crm() -> Iterator[StallingCrm]:
    server = StallingCrm()
    yield server
    server.stop()


def _statuses(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT status FROM sync_runs ORDER BY id")]


def _start_sync(folder: Path, crm: StallingCrm) -> subprocess.Popen[str]:
    config = folder / "crm-sync.yaml"
    section = {
        "type": "hubspot",
        "base_url": crm.url,
        "access_token": "${HUBSPOT_TOKEN}",
        "requests_per_window": None,
        "timeout_seconds": 30,
    }
    config.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{folder / 'store.db'}",
                "log_level": "ERROR",
                "connectors": {"hubspot": section},
            }
        )
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    environ["HUBSPOT_TOKEN"] = "pat-test-token"
    return subprocess.Popen(
        [str(CLI), "--config", str(config), "sync"],
        cwd=folder,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_during_a_sync_records_the_run_as_interrupted(
    tmp_path: Path, crm: StallingCrm
) -> None:
    victim = _start_sync(tmp_path, crm)
    try:
        assert crm.arrived.wait(timeout=60), "the sync never asked the CRM for anything"
        assert _statuses(tmp_path / "store.db") == ["running"]

        victim.send_signal(signal.SIGTERM)
        crm.release.set()
        _, errors = victim.communicate(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()

    assert victim.returncode == 128 + signal.SIGTERM, errors
    assert "Traceback" not in errors
    assert _statuses(tmp_path / "store.db") == ["interrupted"]
