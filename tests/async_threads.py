"""The threads an async store starts, for tests that check they stop."""

from __future__ import annotations

import threading

from aisopod_session import AsyncSessionStore

WAIT = 10.0
"""Seconds before a test gives up on a thread: a bound on a hang, never a pause."""


def threads_of(store: AsyncSessionStore) -> list[threading.Thread]:
    """The threads an async store has started (its workers and its committer)."""
    committer = store._committer._thread
    return [*store._workers._threads, *([committer] if committer is not None else [])]


def all_stopped(threads: list[threading.Thread]) -> bool:
    """Whether every thread ends within `WAIT` seconds."""
    for thread in threads:
        thread.join(timeout=WAIT)
    return not any(thread.is_alive() for thread in threads)
