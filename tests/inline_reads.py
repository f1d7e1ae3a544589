"""For tests of the reads an SQLite store runs on the calling thread without waiting
(`SqliteBackend.inline`): the backend of a store, and which threads open such reads."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from aisopod_session._store import SessionStore, engine_of
from aisopod_session.backends.sqlite import SqliteBackend

T = TypeVar("T")


def sqlite_backend(store: SessionStore) -> SqliteBackend:
    backend = engine_of(store).backend
    assert isinstance(backend, SqliteBackend)
    return backend


def inline_threads(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The threads that open an inline read from now on (a spy: the real method runs)."""
    threads: set[int] = set()
    backend = sqlite_backend(store)
    method = backend._inline_connection

    def spy() -> sqlite3.Connection:
        threads.add(threading.get_ident())
        return method()

    monkeypatch.setattr(backend, "_inline_connection", spy)
    return threads


async def while_the_file_is_held(path: Path, start: Callable[[], Awaitable[T]]) -> T:
    """Start `start()` while another connection holds the file at `path` exclusively
    (no other connection may read it), check that the event loop went on running
    meanwhile (the call is not waiting on its thread: it would not have let this
    coroutine run again until the busy timeout), free the file, and return the result."""
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("PRAGMA locking_mode = EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    call = asyncio.ensure_future(start())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not call.done()
    locker.execute("COMMIT")
    locker.close()
    return await call
