"""Reading ahead: fetch the next pages while the current one is being written, and read
several streams at once."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from typing import TypeVar

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
    depth = max(depth, 1)
    ready = threading.Condition()
    queues: list[deque[object]] = [deque() for _ in sources]
    produced = [False] * len(sources)
    stop = threading.Event()

    def produce(index: int, items: Iterator[T]) -> None:
        outcome: object = _DONE
        try:
            for item in items:
                with ready:
                    while len(queues[index]) >= depth and not stop.is_set():
                        ready.wait(0.1)
                    if stop.is_set():
                        return
                    queues[index].append(item)
                    ready.notify_all()
        except BaseException as exc:  # handed to the consumer, not swallowed
            outcome = exc
        finally:
            _close(items)
            with ready:
                queues[index].append(outcome if not stop.is_set() else _DONE)
                produced[index] = True
                ready.notify_all()

    workers = [
        threading.Thread(target=produce, args=(i, items), name=f"crmsync-read-{i}", daemon=True)
        for i, items in enumerate(sources)
    ]
    started = 0
    waited = 0.0  # seconds the consumer waited for items since the last start

    def start_next() -> None:
        nonlocal started, waited
        if started and not produced[started - 1]:
            log.debug("reading source %d alongside: its consumer waited %.2f s", started, waited)
        workers[started].start()
        started += 1
        waited = 0.0

    start_next()
    try:
        live = len(sources)
        while live:
            with ready:
                while not any(queues):
                    if started < len(workers) and (produced[started - 1] or waited >= patience):
                        start_next()
                    began = time.monotonic()
                    ready.wait(patience / 4)
                    waited += time.monotonic() - began
                item = next(q for q in queues if q).popleft()
                ready.notify_all()
                if started < len(workers) and produced[started - 1]:
                    start_next()
            if item is _DONE:
                live -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item  # type: ignore[misc]
    finally:
        stop.set()
        with ready:
            ready.notify_all()
        for worker in workers[:started]:
            worker.join(timeout=5)
        for items in sources[started:]:  # never started: nothing else will close them
            _close(items)
