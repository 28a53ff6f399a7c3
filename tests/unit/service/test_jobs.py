"""The in-process job queue: each job once, no pile-up of pending imports, a stop that
lets the running job end at its next safe point."""

from __future__ import annotations

import threading

from tests.support.stores import wait_until

from crmsync.service.jobs import InProcessJobQueue


class Handlers:
    def __init__(self) -> None:
        self.ran: list[tuple[str, str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.stopped_with: list[bool] = []

    def run_sync(self, connector: str, *, full: bool, stop: threading.Event) -> None:
        self.ran.append(("full" if full else "sync", connector))

    def run_import(self, connector: str, *, stop: threading.Event) -> None:
        self.ran.append(("import", connector))
        self.started.set()
        self.release.wait(10)
        self.stopped_with.append(stop.is_set())


def test_imports_enqueued_while_one_waits_run_once_more_not_once_each() -> None:
    handlers = Handlers()
    jobs = InProcessJobQueue(handlers)
    jobs.start()
    jobs.enqueue_import("crm")
    wait_until(handlers.started.is_set, "the first import runs")

    for _ in range(50):  # deliveries arriving while it runs
        jobs.enqueue_import("crm")
    handlers.release.set()
    wait_until(lambda: handlers.ran.count(("import", "crm")) == 2, "the second import runs")
    jobs.close(timeout=5)

    assert handlers.ran.count(("import", "crm")) == 2


def test_syncs_run_beside_a_long_import() -> None:
    handlers = Handlers()
    jobs = InProcessJobQueue(handlers)
    jobs.start()
    jobs.enqueue_import("crm")
    wait_until(handlers.started.is_set, "the import runs")

    jobs.enqueue_sync("crm", full=True)
    wait_until(lambda: ("full", "crm") in handlers.ran, "the sync runs while the import does")
    handlers.release.set()
    jobs.close(timeout=5)


def test_a_stopped_queue_tells_the_running_job_and_takes_no_more_work() -> None:
    handlers = Handlers()
    jobs = InProcessJobQueue(handlers)
    jobs.start()
    jobs.enqueue_import("crm")
    wait_until(handlers.started.is_set, "the import runs")

    jobs.stop()
    jobs.enqueue_sync("crm", full=False)
    handlers.release.set()
    jobs.close(timeout=5)

    assert handlers.stopped_with == [True]
    assert handlers.ran == [("import", "crm")]
    assert not jobs.alive()


def test_a_queue_without_a_worker_drops_imports_and_keeps_syncs() -> None:
    handlers = Handlers()
    jobs = InProcessJobQueue(handlers, imports=False)
    jobs.start()

    jobs.enqueue_import("crm")
    jobs.enqueue_sync("crm", full=False)
    wait_until(lambda: handlers.ran == [("sync", "crm")], "the sync runs")
    jobs.close(timeout=5)

    assert handlers.ran == [("sync", "crm")]
