"""Reading ahead: fetch the next pages while the current one is being written, and read
several streams at once."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

__all__ = ["prefetch", "side_by_side"]

T = TypeVar("T")
_DONE = object()


def _close(items: Iterator[object]) -> None:
    """Close a generator (or anything with ``close``) that will not be read further."""
    close = getattr(items, "close", None)
    if callable(close):
        close()


def prefetch(items: Iterator[T], depth: int) -> Generator[T, None, None]:
    """Yield ``items``, produced up to ``depth`` ahead by a background thread.

    Memory stays bounded (at most ``depth`` items wait); an exception raised by the
    producer is re-raised in the consumer at the point it occurred; when the consumer
    stops early the producer stops after its current item.
    """
    if depth <= 0:
        yield from items
        return
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        outcome: object
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            outcome = _DONE
        except BaseException as exc:  # handed to the consumer, not swallowed
            outcome = exc
        finally:
            _close(items)
        while not stop.is_set():
            try:
                buffer.put(outcome, timeout=0.1)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="crmsync-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join(timeout=5)


class _SideBySide(Generic[T]):
    """The shared state of :func:`side_by_side`: one queue and one thread per source,
    the producers filling the queues, the consumer taking from the earliest non-empty
    one and starting the sources one by one."""

    def __init__(self, sources: Sequence[Iterator[T]], depth: int, patience: float) -> None:
        self.sources = sources
        self.depth = depth
        self.patience = patience
        self.ready = threading.Condition()
        self.queues: list[deque[object]] = [deque() for _ in sources]
        self.produced = [False] * len(sources)
        self.stop = threading.Event()
        self.workers = [
            threading.Thread(
                target=self._produce, args=(i, items), name=f"crmsync-read-{i}", daemon=True
            )
            for i, items in enumerate(sources)
        ]
        self.started = 0
        self.waited = 0.0  # seconds the consumer waited for items since the last start

    # -- producers (one thread per source) --

    def _produce(self, index: int, items: Iterator[T]) -> None:
        outcome: object = _DONE
        try:
            for item in items:
                if not self._offer(index, item):
                    return
        except BaseException as exc:  # handed to the consumer, not swallowed
            outcome = exc
        finally:
            _close(items)
            self._finish(index, outcome)

    def _offer(self, index: int, item: T) -> bool:
        """Queue ``item`` once its source's queue has room; False when the consumer stopped."""
        with self.ready:
            while len(self.queues[index]) >= self.depth and not self.stop.is_set():
                self.ready.wait(0.1)
            if self.stop.is_set():
                return False
            self.queues[index].append(item)
            self.ready.notify_all()
            return True

    def _finish(self, index: int, outcome: object) -> None:
        """Queue a source's last word: its exception, or that it is done."""
        with self.ready:
            self.queues[index].append(outcome if not self.stop.is_set() else _DONE)
            self.produced[index] = True
            self.ready.notify_all()

    # -- the consumer --

    def start_next(self) -> None:
        if self.started and not self.produced[self.started - 1]:
            log.debug(
                "reading source %d alongside: its consumer waited %.2f s", self.started, self.waited
            )
        self.workers[self.started].start()
        self.started += 1
        self.waited = 0.0

    def _start_next_when_due(self, *, patience: float = math.inf) -> None:
        """Start the next source if the one before has ended, or if the consumer has
        waited ``patience`` seconds since the last start. Called holding ``ready``."""
        if self.started < len(self.workers) and (
            self.produced[self.started - 1] or self.waited >= patience
        ):
            self.start_next()

    def take(self) -> object:
        """The earliest source's next item, its exception or ``_DONE``, once one is ready."""
        with self.ready:
            while not any(self.queues):
                self._start_next_when_due(patience=self.patience)
                began = time.monotonic()
                self.ready.wait(self.patience / 4)
                self.waited += time.monotonic() - began
            item = next(q for q in self.queues if q).popleft()
            self.ready.notify_all()
            self._start_next_when_due()
        return item

    def close(self) -> None:
        """Stop every producer after its current item; close the sources never started."""
        self.stop.set()
        with self.ready:
            self.ready.notify_all()
        for worker in self.workers[: self.started]:
            worker.join(timeout=5)
        for items in self.sources[self.started :]:  # never started: nothing else will close them
            _close(items)


def side_by_side(
    sources: Sequence[Iterator[T]], depth: int, *, patience: float = 0.1
) -> Generator[T, None, None]:
    """Yield the items of several iterators, each produced up to ``depth`` ahead by a
    thread of its own, the later ones started when the consumer would wait.

    The first source starts at once; the next one when the one before has produced
    its last item, or as soon as the consumer has waited ``patience`` seconds in all
    for items since the last start: reading is then slower than what the consumer
    does with the items (a CRM's answers take long to arrive), and reading the next
    source alongside overlaps the waits. When reading keeps ahead, the sources run
    one after the other and no thread contends for the interpreter in vain.

    When several sources have an item ready, the earliest source's comes first (the
    engine lists companies before contacts). Memory stays bounded (``depth`` items per
    source); the first exception a producer raises is re-raised in the consumer, and
    when the consumer stops, for whatever reason, every producer stops after its
    current item.
    """
    if len(sources) == 1:
        yield from prefetch(sources[0], depth)
        return
    reading = _SideBySide(sources, max(depth, 1), patience)
    reading.start_next()
    try:
        live = len(sources)
        while live:
            item = reading.take()
            if item is _DONE:
                live -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item  # type: ignore[misc]
    finally:
        reading.close()
