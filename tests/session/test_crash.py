"""A writer killed with SIGKILL mid-stream loses no acknowledged append and leaves
no append half written."""

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

from aisopod_session import open_store
from tests.session.snapshot import all_entries

KILLS = 20
BATCH = 5
ROOT = Path(__file__).resolve().parents[2]


def _run_and_kill(url: str, session_id: str, rng: random.Random) -> int:
    """Start a writer, let it run a random while, SIGKILL it; return the last batch it
    acknowledged."""
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.session.workers",
            "crash-writer",
            url,
            session_id,
            str(BATCH),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    first = writer.stdout.readline()  # it is writing now
    assert first.strip().isdigit(), writer.stderr.read() if writer.stderr else first
    time.sleep(rng.uniform(0.0, 0.2))
    os.kill(writer.pid, signal.SIGKILL)
    rest, _ = writer.communicate(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    acknowledged = [int(line) for line in [first, *rest.splitlines()] if line.strip().isdigit()]
    return max(acknowledged)


def test_sigkill_mid_stream_never_loses_or_halves_an_append(shared_database_url: str) -> None:
    rng = random.Random(20261124)
    store = open_store(shared_database_url)
    sessions: list[tuple[str, int]] = []
    for round_ in range(KILLS):
        session = store.get_or_create(f"agent:main:crash-{round_}")
        sessions.append((session.id, _run_and_kill(shared_database_url, session.id, rng)))
    store.close()

    reopened = open_store(shared_database_url)
    assert reopened.check_integrity() == []
    for session_id, acknowledged in sessions:
        entries = all_entries(reopened, session_id)
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        batches = Counter(int(re.match(r"batch (\d+)", e.text).group(1)) for e in entries)  # type: ignore[union-attr]
        assert all(count == BATCH for count in batches.values()), "an append is half there"
        assert set(range(1, acknowledged + 1)) <= set(batches), "an acknowledged append is gone"
        assert reopened.get(session_id).entry_count == len(entries)
    reopened.close()
