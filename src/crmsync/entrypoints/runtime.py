"""Process-level settings for the long jobs the entry points run."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Terminated", "settle_heap", "terminate_as_interrupt"]

_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Take what start-up built out of the garbage collector's way, before a sync.

    A sync allocates millions of short-lived rows and records, so CPython's cycle
    collector runs often, and each of its full collections walks every object the
    process holds: the imported libraries, SQLAlchemy's and pydantic's schemas, the
    country tables. Freezing those once they are built (``gc.freeze``) leaves the
    collector only the objects made since; measured on the store benchmark, a fifth
    of a bulk import's time. The youngest generation is then collected after 10,000
    new objects instead of 700: nearly all a sync allocates is freed by reference
    counting long before, and the collections saved were another twentieth of the
    import (CPython's defaults suit programs that keep what they allocate). Objects
    frozen here stay alive for the process' life, so call this once, after start-up,
    not per run.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM (a service manager stopping it, ``kill``).

    A :class:`KeyboardInterrupt`, so whatever ends a run cleanly on Ctrl-C (the sync
    engine records the run as ``interrupted``, releases its lease and re-raises) does
    the same on SIGTERM.
    """


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signal.Signals(signum).name}")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
