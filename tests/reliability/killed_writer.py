"""Writer processes to kill with SIGKILL, and the exact check of what each left.

A writer appends batches of `BATCH` messages, "batch N part P", to one session,
and prints `start N` before each append and `done N` once the append returned
(was acknowledged). `Writers` keeps one `python -m tests.session.workers
crash-writers URL BATCH` running, which forks a writer process per session it is
given (the imports are paid once; each writer opens its own store). `kill_one`
starts a writer, kills it when a chosen line appears (an event, not a timer),
and reads what it printed: the last acknowledged batch, and whether the kill
landed between a `start` and its `done`, that is, mid-append.
"""

from __future__ import annotations

import os
import random
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs

from tests.session.snapshot import all_entries

BATCH = 5
ROOT = Path(__file__).resolve().parents[2]
_TEXT = re.compile(r"batch (\d+) part (\d+)")


@attrs.frozen
class Killed:
    """What a killed writer had printed."""

    acknowledged: int
    """The last batch whose append returned (0: none)."""
    in_flight: int | None
    """The batch whose append had started and not returned: the kill landed mid-append."""


class Writers:
    """The process that forks writers for `kill_one`; a context manager."""

    def __init__(self, url: str) -> None:
        self._forker = subprocess.Popen(
            [sys.executable, "-m", "tests.session.workers", "crash-writers", url, f"{BATCH}"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._unread = b""

    def __enter__(self) -> Writers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._forker.communicate(timeout=30)  # closes its input: it ends there
        finally:
            if self._forker.poll() is None:
                self._forker.kill()
                self._forker.wait()

    def _line(self) -> str:
        """The next line the forker or its writer printed; a failure, not a hang, if
        none comes within a minute."""
        assert self._forker.stdout is not None
        fd = self._forker.stdout.fileno()  # read raw: select() cannot see a buffer
        while b"\n" not in self._unread:
            ready, _, _ = select.select([fd], [], [], 60)
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                raise AssertionError(f"no line from the writers after {self._unread!r}")
            self._unread += chunk
        line, self._unread = self._unread.split(b"\n", 1)
        return line.decode().strip()

    def kill_one(self, session_id: str, rng: random.Random) -> Killed:
        """Start a writer on `session_id` and SIGKILL it just after the start or the
        end of a random append (its 1st to 12th); return what it had acknowledged."""
        assert self._forker.stdin is not None
        self._forker.stdin.write(session_id + "\n")
        self._forker.stdin.flush()
        first = self._line()
        assert first.startswith("pid "), first
        pid = int(first.split()[1])
        trigger = f"{rng.choice(['start', 'done'])} {rng.randint(1, 12)}"
        printed: list[str] = []
        while (line := self._line()) != trigger:
            assert not line.startswith("reaped "), f"the writer ended before {trigger!r}"
            printed.append(line)
        printed.append(line)
        # Not a wait for anything: where inside an append (a few milliseconds) the
        # kill lands, so that some land before the commit and some after it.
        time.sleep(rng.uniform(0.0, 0.004))
        os.kill(pid, signal.SIGKILL)
        while not (line := self._line()).startswith("reaped "):
            printed.append(line)  # what it printed before the kill landed
        assert line == f"reaped {pid} {signal.SIGKILL.value}", line
        done = [int(line.split()[1]) for line in printed if line.startswith("done ")]
        started = [int(line.split()[1]) for line in printed if line.startswith("start ")]
        acknowledged = max(done, default=0)
        in_flight = started[-1] if started and started[-1] > acknowledged else None
        return Killed(acknowledged, in_flight)


def check_killed_writer(store: Any, session_id: str, killed: Killed) -> bool:
    """Check exactly what a killed writer left in its session; return whether the
    append in flight at the kill was committed.

    Every acknowledged batch is there exactly once, each of its parts once; no
    batch is half there; nothing is there beyond the acknowledged batches but the
    one in flight, whole or not at all; seqs are gapless and the counter agrees.
    """
    entries = all_entries(store, session_id)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    parts: Counter[tuple[int, int]] = Counter()
    for entry in entries:
        match = _TEXT.fullmatch(entry.text)
        assert match is not None, entry.text
        parts[(int(match[1]), int(match[2]))] += 1
    assert set(parts.values()) <= {1}, "a part is there twice"
    batches = Counter(batch for batch, _ in parts)
    assert set(batches.values()) <= {BATCH}, "an append is half there"
    acknowledged = set(range(1, killed.acknowledged + 1))
    assert acknowledged <= set(batches), "an acknowledged append is gone"
    extra = set(batches) - acknowledged
    assert extra <= ({killed.in_flight} if killed.in_flight else set()), extra
    assert store.get(session_id).entry_count == len(entries)
    return bool(extra)
