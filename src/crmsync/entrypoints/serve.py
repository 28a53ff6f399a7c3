"""``crm-sync serve``: the webhook server, the scheduler and the import worker in one
process (or split across processes with ``--no-scheduler``, ``--no-webhooks`` and
``--no-worker``).

uvicorn runs the ASGI app (:mod:`crmsync.entrypoints.web`); jobs run on the threads of
:class:`~crmsync.service.jobs.InProcessJobQueue`; the worker also polls the inbox for
due events (stored by another process, retries whose time came, events a dead worker
had claimed). On SIGTERM (or Ctrl-C) the service stops taking work: the server stops
accepting connections and answers the requests it holds, a running import finishes the
records it is fetching and hands its other claimed events back, a running sync stops
after its page (recorded as interrupted, resumed by the next run); then it exits 0
(130 after Ctrl-C).

Heavy imports (uvicorn, Starlette, prometheus_client) happen when the command runs, not
when the CLI starts.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer

if TYPE_CHECKING:
    from crmsync.bootstrap import App
    from crmsync.service.jobs import JobQueue

__all__ = ["JsonFormatter", "LogFormat", "serve"]

log = logging.getLogger(__name__)

JOBS_GRACE_SECONDS = 30.0
"""How long a stopping service waits for its running jobs before it exits anyway."""
REQUESTS_GRACE_SECONDS = 10


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False)


class Scheduler(Protocol):
    """What serve needs of ``crmsync.service.scheduler.SyncScheduler``."""

    def start(self) -> None: ...

    def shutdown(self, wait: bool) -> None: ...

    def alive(self) -> bool: ...


def _scheduler(app: App, jobs: JobQueue) -> Scheduler | None:
    try:
        from crmsync.service.scheduler import SyncScheduler
    except ImportError:
        log.warning("no scheduler in this crm-sync: scheduled runs are off")
        return None
    scheduler: Scheduler = SyncScheduler(app, jobs)
    return scheduler


def _configure_logging(log_format: LogFormat, level: str, app: App) -> None:
    if log_format is LogFormat.JSON:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.getLogger().setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    app.install_log_redaction()


class _Stopping:
    """The signal that stopped the service, and what stops its work."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.actions: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._done = False

    def __call__(self, signum: int, frame: FrameType | None = None) -> None:
        if self.signal is None:
            self.signal = signum
        self.stop_work()

    def stop_work(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        for action in self.actions:
            try:
                action()
            except Exception:
                log.exception("stopping a part of the service failed")


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", metavar="H", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option("--port", metavar="P", min=0, max=65535, help="Port to listen on.")
    ] = 8080,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="Run no scheduled syncs in this process.")
    ] = False,
    no_webhooks: Annotated[
        bool,
        typer.Option("--no-webhooks", help="Take no webhook deliveries (health and metrics stay)."),
    ] = False,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Apply no webhook events in this process.")
    ] = False,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="Log lines as text or as JSON.")
    ] = LogFormat.TEXT,
) -> None:
    """Run the service: webhook server, scheduler and import worker (until SIGTERM)."""
    import uvicorn

    from crmsync.entrypoints.cli import _app
    from crmsync.entrypoints.web import Health, Receivers, ServiceMetrics, create_app
    from crmsync.service.jobs import AppJobs, InboxPoller, InProcessJobQueue

    application = _app(ctx)
    root = ctx.find_root().obj
    level = getattr(getattr(root, "log_level", None), "value", None)
    _configure_logging(log_format, level or application.settings.app.log_level, application)
    application.open_store()  # refuse a store that cannot be used before listening
    config = application.settings.app.webhooks

    metrics = ServiceMetrics(application)
    jobs = InProcessJobQueue(
        AppJobs(application, on_run=metrics.observe_run, on_lag=metrics.observe_lag),
        syncs=not no_scheduler,
        imports=not no_worker,
    )
    health = Health()
    stopping = _Stopping()
    stopping.actions.append(jobs.stop)
    if not no_scheduler or not no_worker:
        health.register("jobs", jobs.alive)
    poller: InboxPoller | None = None
    if not no_worker:
        poller = InboxPoller(
            application,
            jobs,
            every=config.poll_seconds,
            retention=timedelta(days=config.retention_days),
        )
        health.register("worker", poller.alive)
        stopping.actions.append(poller.stop)
    scheduler = None if no_scheduler else _scheduler(application, jobs)
    if scheduler is not None:
        health.register("scheduler", scheduler.alive)
        stopping.actions.append(lambda: scheduler.shutdown(wait=False))

    receivers = Receivers(application)
    web = create_app(
        application,
        jobs=jobs,
        health=health,
        metrics=metrics,
        receivers=receivers,
        webhooks=not no_webhooks,
    )
    server = _server(
        uvicorn.Config(
            web,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=REQUESTS_GRACE_SECONDS,
        ),
        on_exit=stopping.stop_work,
    )
    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        jobs.start()
        if poller is not None:
            poller.start()
        if scheduler is not None:
            scheduler.start()
        log.info("crm-sync serve on %s:%d", host, port)
        server.run()
    finally:
        stopping.stop_work()
        jobs.close(timeout=JOBS_GRACE_SECONDS)
        if poller is not None:
            poller.join(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise typer.Exit(1)
    log.info("crm-sync serve stopped")
    if stopping.signal == signal.SIGINT:
        raise typer.Exit(130)


def _server(config: Any, *, on_exit: Callable[[], None]) -> Any:
    """A uvicorn server that also calls ``on_exit`` as soon as a signal asks it to stop
    (built here so that the CLI imports uvicorn only when serving)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            on_exit()

    return Server(config)
