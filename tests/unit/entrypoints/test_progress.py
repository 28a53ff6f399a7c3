"""The sync progress display: a bar with a total where the source knows it, a count
where it does not, one line per stream, named in English."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress

from crmsync.adapters.runs import RunCounts
from crmsync.entrypoints.progress import StreamProgress, columns
from crmsync.sdk.records import ObjectType


def _display() -> tuple[Progress, StreamProgress]:
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    display = Progress(*columns(), console=console, auto_refresh=False)
    return display, StreamProgress(display)


def _shown(display: Progress) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=120, color_system=None).print(
        display.make_tasks_table(display.tasks)
    )
    return buffer.getvalue()


def test_a_stream_with_a_known_total_shows_done_of_total() -> None:
    display, progress = _display()

    progress("sample", ObjectType.COMPANY, RunCounts(seen=100), 250)

    assert display.tasks[0].total == 250
    assert "100/250 records" in _shown(display)


def test_a_stream_without_a_total_shows_a_running_count() -> None:
    display, progress = _display()

    progress("sample", ObjectType.CONTACT, RunCounts(seen=100), None)
    progress("sample", ObjectType.CONTACT, RunCounts(seen=1_300), None)

    assert display.tasks[0].total is None
    assert "1,300 records" in _shown(display)


def test_streams_are_named_in_the_plural() -> None:
    display, progress = _display()

    progress("sample", ObjectType.COMPANY, RunCounts(seen=1), None)

    shown = _shown(display)
    assert "sample companies" in shown
    assert "companys" not in shown


def test_streams_read_side_by_side_each_count_their_own_records() -> None:
    display, progress = _display()

    progress("hub", ObjectType.COMPANY, RunCounts(seen=100), 300)
    progress("hub", ObjectType.CONTACT, RunCounts(seen=150), None)
    progress("hub", ObjectType.COMPANY, RunCounts(seen=250), 300)

    assert [task.completed for task in display.tasks] == [200, 50]


def test_each_connector_counts_from_its_own_start() -> None:
    display, progress = _display()

    progress("first", ObjectType.COMPANY, RunCounts(seen=500), None)
    progress("second", ObjectType.COMPANY, RunCounts(seen=20), None)

    assert [task.completed for task in display.tasks] == [500, 20]
