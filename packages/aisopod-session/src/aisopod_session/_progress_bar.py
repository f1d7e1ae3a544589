"""The command's progress bars: on a terminal's stderr, never when piped.

Long work is counted in entries, the unit that takes the time (one session of
100,000 entries moves the bar as much as 100,000 sessions of one), with the
rate, and the time left when the total is known. rich draws them
(`_rich_bar`, imported only when a bar is shown).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

__all__ = ["ProgressBar"]


class ProgressBar:
    """One bar for one piece of work; a no-op unless stderr is a terminal.

    Use as a context manager; `advance(n)` counts `n` more units done, `total`
    (known now or later) turns the count into a bar with the time left.
    """

    def __init__(self, what: str, *, unit: str = "entries", total: int | None = None) -> None:
        self.shown = sys.stderr.isatty()
        self._unit = unit
        self._total = total
        self._bar: Any = None
        self._task: Any = None
        if self.shown:
            from aisopod_session._rich_bar import new_bar  # rich, only when a bar is drawn

            self._bar, self._task = new_bar(what, unit, total)

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
