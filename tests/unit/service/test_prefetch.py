"""Reading ahead and reading several streams at once."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator

import pytest

from crmsync.service.prefetch import prefetch, side_by_side


class Failed(RuntimeError):
    pass


def count(tag: str, n: int, *, gate: threading.Event | None = None) -> Iterator[str]:
    if gate is not None:
        assert gate.wait(5), "the gate never opened"
    for i in range(n):
        yield f"{tag}{i}"


def test_reading_side_by_side_yields_every_item_of_every_source_in_its_own_order() -> None:
    items = list(side_by_side([count("a", 50), count("b", 120)], depth=2))

    assert sorted(items) == sorted([f"a{i}" for i in range(50)] + [f"b{i}" for i in range(120)])
    assert [i for i in items if i[0] == "a"] == [f"a{i}" for i in range(50)]
    assert [i for i in items if i[0] == "b"] == [f"b{i}" for i in range(120)]


def test_a_later_source_goes_on_while_an_earlier_one_waits() -> None:
    gate = threading.Event()

    def contacts() -> Iterator[str]:
        yield from count("b", 5)
        gate.set()  # the companies only come once every contact has been read

    items = list(side_by_side([count("a", 3, gate=gate), contacts()], depth=1))

    # the gate opens once b4 is read: it may come just after a0, never the ones before
    assert items[:4] == ["b0", "b1", "b2", "b3"]
    assert sorted(items[4:]) == ["a0", "a1", "a2", "b4"]


def test_the_earliest_source_goes_first_when_several_have_items_ready() -> None:
    b1_queued, a0_queued = threading.Event(), threading.Event()

    def companies() -> Iterator[str]:
        assert b1_queued.wait(5)
        yield "a0"
        a0_queued.set()  # resumed: a0 is in the reader's buffer

    def contacts() -> Iterator[str]:
        yield "b0"
        yield "b1"  # a buffer of one: queued once b0 is taken
        b1_queued.set()
        yield "b2"

    reader = side_by_side([companies(), contacts()], depth=1)
    assert next(reader) == "b0"  # the only one that can be ready
    assert a0_queued.wait(5)  # now b1 and a0 both wait

    assert list(reader) == ["a0", "b1", "b2"]


def test_a_failing_source_fails_the_reader_and_stops_the_others() -> None:
    stopped = threading.Event()

    def endless() -> Iterator[str]:
        try:
            while True:
                yield "x"
        finally:
            stopped.set()

    def broken() -> Iterator[str]:
        yield "y"
        raise Failed("the CRM went away")

    with pytest.raises(Failed, match="went away"):
        for _ in side_by_side([endless(), broken()], depth=2):
            pass

    assert stopped.wait(5)


def test_a_consumer_that_stops_early_stops_every_producer() -> None:
    closed = [threading.Event(), threading.Event()]

    def source(i: int) -> Iterator[int]:
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed[i].set()

    def slow_start() -> Iterator[int]:
        time.sleep(0.05)  # the consumer waits, so the second source starts
        yield from source(0)

    reader = side_by_side([slow_start(), source(1)], depth=2, patience=0.01)
    next(reader)
    reader.close()

    assert all(event.wait(5) for event in closed)


def test_a_source_never_started_is_closed_when_the_consumer_stops() -> None:
    later = count("b", 3)
    reader = side_by_side([count("a", 1_000), later], depth=2, patience=60)
    next(reader)
    reader.close()

    assert inspect.getgeneratorstate(later) == inspect.GEN_CLOSED  # type: ignore[arg-type]


def test_the_next_source_starts_only_when_the_consumer_waits_or_the_one_before_ends() -> None:
    first_done = threading.Event()
    started_early: list[bool] = []

    def companies() -> Iterator[str]:
        yield from count("a", 20)  # always ready: the consumer never waits
        first_done.set()

    def contacts() -> Iterator[str]:
        started_early.append(not first_done.is_set())
        yield from count("b", 2)

    assert len(list(side_by_side([companies(), contacts()], depth=2, patience=0.5))) == 22
    assert started_early == [False]


def test_the_next_source_starts_early_when_the_first_keeps_the_consumer_waiting() -> None:
    contacts_seen = threading.Event()

    def companies() -> Iterator[str]:
        yield "a0"
        assert contacts_seen.wait(5), "the contacts never started"  # a slow CRM
        yield "a1"

    def contacts() -> Iterator[str]:
        contacts_seen.set()
        yield "b0"

    items = list(side_by_side([companies(), contacts()], depth=2, patience=0.05))

    assert sorted(items) == ["a0", "a1", "b0"]


def test_read_ahead_never_holds_more_than_its_depth() -> None:
    produced: list[int] = []
    consumed = threading.Event()

    def source() -> Iterator[int]:
        for i in range(100):
            produced.append(i)
            yield i

    reader = prefetch(source(), depth=3)
    next(reader)
    consumed.wait(0.2)  # let the producer run as far ahead as it may

    assert len(produced) <= 1 + 3 + 1  # the one taken, the buffer, the one blocked on put
    reader.close()


def test_reading_side_by_side_never_holds_more_than_its_depth_per_source() -> None:
    taken = {"a": 0, "b": 0}
    ahead = {"a": 0, "b": 0}  # the most items a source had produced beyond those taken

    def source(tag: str) -> Iterator[str]:
        for i in range(200):
            ahead[tag] = max(ahead[tag], i - taken[tag])
            yield f"{tag}{i}"

    for item in side_by_side([source("a"), source("b")], depth=2, patience=0):
        taken[item[0]] += 1

    assert taken == {"a": 200, "b": 200}
    # the buffer, plus the one handed over but not yet counted by this loop
    assert ahead["a"] <= 2 + 1
    assert ahead["b"] <= 2 + 1
