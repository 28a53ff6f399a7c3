"""The service's HTTP side (Starlette): webhook deliveries, health and metrics.

- ``POST /webhooks/{connector}``: a connector that takes webhooks verifies and parses the
  delivery and its events are stored in the inbox before the answer
  (:class:`crmsync.service.inbox.Inbox`); then an import is enqueued. An unknown
  connector, or one without webhooks: 404. A body over ``webhooks.max_body_bytes``: 413
  (the ``Content-Length`` is checked first, then the body is read only up to the limit).
  A refused signature or timestamp: 401; an unreadable body: 400. None of these stores
  anything, and bad input is never answered with a 5xx (a store that cannot be reached
  is: 503, so the CRM delivers again).
- ``GET /healthz``: the store answers and every registered part (scheduler, worker) is
  alive: 200, else 503; the body says which.
- ``GET /metrics``: Prometheus text format from a registry of the app's own.

Nothing is built at import time: :func:`create_app` takes everything it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from crmsync.adapters.inbox import InboxDepth
from crmsync.adapters.metrics import StoreFigures, read_figures
from crmsync.errors import ConfigError
from crmsync.sdk.capabilities import WebhookReceiver, WebhookRequest, capabilities_of
from crmsync.sdk.connector import Connector
from crmsync.service.inbox import DeliveryRefused, Inbox
from crmsync.service.jobs import JobQueue
from crmsync.service.sync import RunResult

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from crmsync.bootstrap import App

__all__ = ["Health", "Receivers", "ServiceMetrics", "create_app"]

log = logging.getLogger(__name__)

GROUP_MAX = 500
"""Most deliveries stored in one transaction."""
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass
class Health:
    """The parts ``/healthz`` checks besides the store: name -> "is it alive?"."""

    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def register(self, name: str, check: Callable[[], bool]) -> None:
        self.checks[name] = check

    def report(self) -> dict[str, bool]:
        found = {}
        for name, check in self.checks.items():
            try:
                found[name] = bool(check())
            except Exception:
                log.exception("health check %s failed", name)
                found[name] = False
        return found


class _StoreCollector(Collector):
    """Reads the store's figures at scrape time (at most once per ``every`` seconds)."""

    def __init__(self, app: App, clock: Callable[[], float], every: float = 5.0) -> None:
        self.app = app
        self.clock = clock
        self.every = every
        self._lock = threading.Lock()
        self._read: tuple[float, StoreFigures] | None = None

    def _figures(self) -> StoreFigures:
        with self._lock:
            now = self.clock()
            if self._read is None or now - self._read[0] >= self.every:
                with self.app.open_store().read() as conn:
                    self._read = (now, read_figures(conn))
            return self._read[1]

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only

    def collect(self) -> Iterator[Metric]:
        try:
            figures = self._figures()
        except Exception:
            log.exception("reading the store's figures for /metrics failed")
            return
        runs = GaugeMetricFamily(
            "crmsync_runs", "Runs recorded in the store", labels=["connector", "status"]
        )
        for (connector, status), count in sorted(figures.runs.items()):
            runs.add_metric([connector, status], count)
        records = CounterMetricFamily(
            "crmsync_records_synced",
            "Records the runs counted, by outcome",
            labels=["connector", "outcome"],
        )
        for (connector, outcome), count in sorted(figures.records.items()):
            records.add_metric([connector, outcome], count)
        quarantined = GaugeMetricFamily(
            "crmsync_records_quarantined", "Records in quarantine", labels=["connector"]
        )
        for connector, count in sorted(figures.quarantined.items()):
            quarantined.add_metric([connector], count)
        held = GaugeMetricFamily(
            "crmsync_customers_held", "Customers held, by reason", labels=["reason"]
        )
        for reason, count in sorted(figures.held.items()):
            held.add_metric([reason], count)
        depth = GaugeMetricFamily(
            "crmsync_webhook_inbox_events",
            "Webhook events in the inbox, pending or set aside",
            labels=["connector", "status"],
        )
        oldest = GaugeMetricFamily(
            "crmsync_webhook_oldest_pending_age_seconds",
            "Age of the oldest webhook event not applied yet",
            labels=["connector"],
        )
        wall = self.app.clock()
        found = {entry.connector: entry for entry in figures.inbox}
        for name in self.app.settings.connectors:
            found.setdefault(name, InboxDepth(name, 0, 0, None))
        for entry in sorted(found.values(), key=lambda e: e.connector):
            depth.add_metric([entry.connector, "pending"], entry.pending)
            depth.add_metric([entry.connector, "failed"], entry.failed)
            age = 0.0
            if entry.oldest_pending is not None:
                age = max(0.0, (wall - entry.oldest_pending).total_seconds())
            oldest.add_metric([entry.connector], age)
        yield from (runs, records, quarantined, held, depth, oldest)


class ServiceMetrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self, app: App, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.ack_seconds = Histogram(
            "crmsync_webhook_ack_seconds",
            "Time from a webhook delivery's arrival to its answer",
            ["connector"],
            buckets=_ACK_BUCKETS,
            registry=self.registry,
        )
        self.deliveries = Counter(
            "crmsync_webhook_deliveries",
            "Webhook deliveries answered, by HTTP status",
            ["connector", "status"],
            registry=self.registry,
        )
        self.events_stored = Counter(
            "crmsync_webhook_events_stored",
            "Webhook events stored in the inbox (re-deliveries not counted)",
            ["connector"],
            registry=self.registry,
        )
        self.import_lag = Histogram(
            "crmsync_webhook_import_lag_seconds",
            "Time from a webhook event's arrival to its import",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "crmsync_runs_finished",
            "Runs this process finished, by connector, mode and status",
            ["connector", "mode", "status"],
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(app, clock))

    def observe_run(self, result: RunResult) -> None:
        self.runs_finished.labels(result.connector, result.mode, result.status).inc()

    def observe_lag(self, seconds: float) -> None:
        self.import_lag.observe(max(0.0, seconds))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class Receivers:
    """The configured connectors that take webhooks, built on first use and kept."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._built: dict[str, Connector | None] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> WebhookReceiver | None:
        """The named connector if it is configured and takes webhooks, else ``None``."""
        if name not in self.app.settings.connectors:
            return None
        with self._lock:
            if name not in self._built:
                try:
                    connector = self.app.build_connector(name)
                except ConfigError:
                    connector = None
                if connector is not None and "webhooks" not in capabilities_of(connector):
                    connector.close()
                    connector = None
                self._built[name] = connector
            found = self._built[name]
        return found if isinstance(found, WebhookReceiver) else None

    def close(self) -> None:
        with self._lock:
            for connector in self._built.values():
                if connector is not None:
                    connector.close()
            self._built.clear()


class GroupCommit:
    """Stores the events of concurrent deliveries together: one writer, one transaction
    and one commit for every delivery waiting when it starts.

    Each delivery still gets its answer only once its own events are committed. One
    writer means no two requests wait for the store's write lock (SQLite's busy waits
    grow to tens of milliseconds), and one commit for many deliveries spares the disk
    a flush per delivery (PostgreSQL).
    """

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._queue: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future[int]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run(self._queue))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def store(self, rows: list[dict[str, Any]]) -> int:
        """Store one delivery's rows; how many were new."""
        if self._queue is None:  # no lifespan (a test client without it): store alone
            (stored,) = await run_in_threadpool(self.inbox.store_deliveries, [rows])
            return stored
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((rows, done))
        return await done

    async def _run(
        self, queue: asyncio.Queue[tuple[list[dict[str, Any]], asyncio.Future[int]]]
    ) -> None:
        while True:
            waiting = [await queue.get()]
            while not queue.empty() and len(waiting) < GROUP_MAX:
                waiting.append(queue.get_nowait())
            try:
                counts = await run_in_threadpool(
                    self.inbox.store_deliveries, [rows for rows, _ in waiting]
                )
            except Exception as exc:
                for _, done in waiting:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), count in zip(waiting, counts, strict=True):
                if not done.done():
                    done.set_result(count)


class _TooLarge(Exception):
    pass


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, read only up to ``limit`` bytes (``_TooLarge`` past it)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        text = declared.strip()
        if not text.isdigit() or len(text) > 18:
            raise DeliveryRefused(400, "the Content-Length header is not a number")
        if int(text) > limit:
            raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _called_url(request: Request, public_url: str | None) -> str:
    """The URL the CRM called: the configured public URL with the request's path and
    query, or the URL as this server saw it."""
    if public_url is None:
        return str(request.url)
    query = request.url.query
    return public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


def _error(status: int, reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=status)


def create_app(
    app: App,
    *,
    jobs: JobQueue,
    health: Health,
    metrics: ServiceMetrics,
    receivers: Receivers,
    webhooks: bool = True,
) -> Starlette:
    """The ASGI app of ``crm-sync serve``."""
    config = app.settings.app.webhooks
    inbox = Inbox(app.open_store(), clock=app.clock)
    committer = GroupCommit(inbox)

    async def deliver(request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["connector"]
        receiver = receivers.get(name) if webhooks else None
        if receiver is None:
            metrics.deliveries.labels("unknown", "404").inc()
            return _error(404, "no connector of that name takes webhooks here")
        response = await _deliver(request, name, receiver)
        metrics.deliveries.labels(name, str(response.status_code)).inc()
        metrics.ack_seconds.labels(name).observe(time.perf_counter() - started)
        return response

    async def _deliver(request: Request, name: str, receiver: WebhookReceiver) -> Response:
        try:
            body = await _bounded_body(request, config.max_body_bytes)
            delivery = inbox.read(
                name,
                receiver,
                WebhookRequest(
                    method=request.method,
                    url=_called_url(request, config.public_url),
                    headers=dict(request.headers),
                    body=body,
                    received_at=app.clock(),
                ),
            )
            stored = await committer.store(delivery.rows) if delivery.rows else 0
        except _TooLarge:
            log.info("webhook %s refused (413): over %d bytes", name, config.max_body_bytes)
            return _error(413, f"the body is larger than {config.max_body_bytes} bytes")
        except DeliveryRefused as exc:
            log.info("webhook %s refused (%d): %s", name, exc.status, exc.reason)
            return _error(exc.status, exc.reason)
        except Exception:  # the store, not the delivery: the CRM delivers it again
            log.exception("webhook %s: the delivery could not be stored", name)
            return _error(503, "the delivery could not be stored; deliver it again")
        if stored:
            metrics.events_stored.labels(name).inc(stored)
            jobs.enqueue_import(name)
        answer = delivery.answer
        return Response(answer.body, status_code=answer.status, media_type=answer.media_type)

    async def healthz(request: Request) -> Response:
        checks: dict[str, bool] = {"store": await run_in_threadpool(_store_answers, app)}
        checks.update(health.report())
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unhealthy", "checks": checks},
            status_code=200 if ok else 503,
        )

    async def metrics_endpoint(request: Request) -> Response:
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=METRICS_TYPE)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[Mapping[str, Any]]:
        committer.start()
        try:
            yield {}
        finally:
            await committer.stop()
            receivers.close()

    return Starlette(
        routes=[
            Route("/webhooks/{connector}", deliver, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def _store_answers(app: App) -> bool:
    try:
        with app.open_store().read() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:
        log.warning("health: the store does not answer", exc_info=True)
        return False
    return True
