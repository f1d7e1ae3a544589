"""The command's progress bars: on a terminal's stderr, never when piped.

Long work is counted in entries, the unit that takes the time (one session of
100,000 entries moves the bar as much as 100,000 sessions of one), with the
rate, and the time left when the total is known. rich draws them.
"""

from __future__ import annotations

from types import TracebackType
from typing import Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

__all__ = ["ProgressBar"]

_REFRESHES_PER_SECOND: Final = 8


class _Rate(ProgressColumn):
    """`12,345 entries/s`, once there is a rate to show."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self._unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {self._unit}/s")


class _Count(ProgressColumn):
    """`12,345 entries` when there is no total."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self._unit = unit

    def render(self, task: Task) -> Text:
        return Text(f"{int(task.completed):,} {self._unit}")


class ProgressBar:
    """One bar for one piece of work; a no-op unless stderr is a terminal.

    Use as a context manager; `advance(n)` counts `n` more units done, `total`
    (known now or later) turns the count into a bar with the time left.
    """

    def __init__(self, what: str, *, unit: str = "entries", total: int | None = None) -> None:
        console = Console(stderr=True)
        self.shown = console.is_terminal
        self._unit = unit
        self._total = total
        self._bar: RichProgress | None = None
        self._task = None
        if not self.shown:
            return
        columns: list[str | ProgressColumn] = [SpinnerColumn(), TextColumn(what)]
        if total is None:
            columns += [_Count(unit), _Rate(unit), TimeElapsedColumn()]
        else:
            columns += [BarColumn(), MofNCompleteColumn(), _Rate(unit), TimeRemainingColumn()]
        self._bar = RichProgress(
            *columns, console=console, refresh_per_second=_REFRESHES_PER_SECOND
        )
        self._task = self._bar.add_task(what, total=total)

    def __enter__(self) -> ProgressBar:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, count: int) -> None:
        """`count` more units are done."""
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, count)

    def set(self, done: int, total: int | None = None) -> None:
        """`done` units of `total` are done (when the total is only learnt on the way)."""
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)
