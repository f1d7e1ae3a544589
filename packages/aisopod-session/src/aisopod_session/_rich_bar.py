"""The rich side of the command's progress bars, imported only when one is drawn
(rich takes a good part of a second to import; most commands never draw a bar)."""

from __future__ import annotations

from typing import Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

__all__ = ["new_bar"]

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


def new_bar(what: str, unit: str, total: int | None) -> tuple[RichProgress, TaskID]:
    """A rich progress bar on stderr for `what`, counted in `unit`, and its task."""
    columns: list[str | ProgressColumn] = [SpinnerColumn(), TextColumn(what)]
    if total is None:
        columns += [_Count(unit), _Rate(unit), TimeElapsedColumn()]
    else:
        columns += [BarColumn(), MofNCompleteColumn(), _Rate(unit), TimeRemainingColumn()]
    bar = RichProgress(
        *columns, console=Console(stderr=True), refresh_per_second=_REFRESHES_PER_SECOND
    )
    return bar, bar.add_task(what, total=total)
