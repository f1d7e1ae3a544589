"""A writer process to kill with SIGKILL, and the exact check of what it left.

The writer (`python -m tests.session.workers crash-writer URL SESSION BATCH`)
appends batches of `BATCH` messages, "batch N part P", to one session, and
prints `start N` before each append and `done N` once the append returned
(was acknowledged). `run_and_kill` starts one, kills it when a chosen line
appears (an event, not a timer), and reads what it printed: the last
acknowledged batch, and whether the kill landed between a `start` and its
`done`, that is, mid-append.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
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


def run_and_kill(url: str, session_id: str, rng: random.Random) -> Killed:
    """Start a writer and SIGKILL it just after the start or the end of a random
    append (its 1st to 12th); return what it had acknowledged."""
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.session.workers",
            "crash-writer",
            url,
            session_id,
            f"{BATCH}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    trigger = f"{rng.choice(['start', 'done'])} {rng.randint(1, 12)}"
    printed: list[str] = []
    for line in writer.stdout:
        printed.append(line.strip())
        if printed[-1] == trigger:
            break
    else:
        raise AssertionError(f"the writer ended before {trigger!r}: {writer.stderr}")
    # Not a wait for anything: where inside an append (a few milliseconds) the
    # kill lands, so that some land before the commit and some after it.
    time.sleep(rng.uniform(0.0, 0.004))
    os.kill(writer.pid, signal.SIGKILL)
    rest = writer.stdout.read()  # what the line reader buffered, then the pipe to EOF
    writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    printed += [line.strip() for line in rest.splitlines() if line.strip()]
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
