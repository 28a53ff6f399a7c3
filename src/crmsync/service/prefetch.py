"""Reading ahead: fetch the next pages while the current one is being written."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
_DONE = object()


def prefetch(items: Iterator[T], depth: int) -> Iterator[T]:
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
            close = getattr(items, "close", None)
            if callable(close):
                close()
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
