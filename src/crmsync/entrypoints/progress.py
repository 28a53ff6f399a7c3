"""The progress display of ``crm-sync sync``: one line per connector stream.

A stream whose source knows how many records its pass delivers (``Page.total``: an
export file's line count, a CRM's reported total) gets a bar and ``done/total``; one
whose source does not gets a spinner and a running count.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from crmsync.adapters.runs import RunCounts
from crmsync.entrypoints.present import plural
from crmsync.sdk.records import ObjectType

__all__ = ["StreamProgress", "columns"]


class _BarWhenKnown(ProgressColumn):
    """A bar for a task with a total; nothing (the spinner shows life) without one."""

    def __init__(self, bar_width: int) -> None:
        super().__init__()
        self._bar = BarColumn(bar_width=bar_width)

    def render(self, task: Task) -> RenderableType:
        if task.total is None:
            return Text("")
        return self._bar.render(task)


class _Count(ProgressColumn):
    """``1,234/5,000 records`` with a total, ``1,234 records`` without."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        if task.total is None:
            return Text(f"{done:,} records")
        return Text(f"{done:,}/{int(task.total):,} records")


def columns() -> tuple[ProgressColumn, ...]:
    """The columns of the sync progress display."""
    return (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        _BarWhenKnown(bar_width=30),
        _Count(),
        TimeElapsedColumn(),
    )


class StreamProgress:
    """The engine's progress callback: a task per (connector, stream) on ``display``.

    The engine reports the run's counts so far after every committed page; the records
    a page added are the difference from the previous report of the same connector,
    which stays right when a connector's streams are read side by side.
    """

    def __init__(self, display: Progress) -> None:
        self.display = display
        self._tasks: dict[tuple[str, ObjectType], TaskID] = {}
        self._seen: dict[str, int] = {}

    def __call__(self, name: str, stream: ObjectType, counts: RunCounts, total: int | None) -> None:
        added = counts.seen - self._seen.get(name, 0)
        self._seen[name] = counts.seen
        task = self._tasks.get((name, stream))
        if task is None:
            task = self.display.add_task(f"{name} {plural(stream.value)}", total=total)
            self._tasks[(name, stream)] = task
        if total is not None:
            self.display.update(task, total=total)
        self.display.advance(task, added)
