"""Small reads of an SQLite file on the event loop's own thread: what they give, and
that they never wait there (a lock, a long value, a large read and a write all go to
a worker thread, as every other call does)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import (
    AsyncSessionStore,
    InvalidInput,
    SessionNotFound,
    StoreUnavailable,
    open_async_store,
    open_store,
)
from aisopod_session._async import INLINE_ENTRIES
from aisopod_session.backends._sql import WouldWait
from aisopod_session.backends.sqlite import INLINE_BYTES, INLINE_STEPS
from aisopod_shared import Message
from tests.async_threads import WAIT
from tests.inline_reads import inline_threads, sqlite_backend, while_the_file_is_held


def test_a_small_read_runs_on_the_loop_thread_and_reads_what_the_sync_call_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_async_store(tmp_path / "s.db")
    session_id = store.sync.get_or_create("agent:main:main").id
    store.sync.append(session_id, [Message.user(f"message {n}") for n in range(300)])
    threads = inline_threads(store.sync, monkeypatch)

    async def main() -> int:
        pages: list[dict[str, Any]] = [
            {"last": 50},
            {},
            {"before": 120, "limit": 30},
            {"after": 0, "limit": 5},
        ]
        for kwargs in pages:
            page = await store.history(session_id, **kwargs)
            assert page == store.sync.history(session_id, **kwargs)
        more = await store.history(session_id, cursor=page.next, limit=INLINE_ENTRIES)
        assert more == store.sync.history(session_id, cursor=page.next, limit=INLINE_ENTRIES)
        path = await store.path(session_id, last=20)
        assert path == store.sync.path(session_id, last=20)
        assert await store.path(session_id, last=20, before=path.cursor) == store.sync.path(
            session_id, last=20, before=path.cursor
        )
        # Its errors are the call's own.
        with pytest.raises(SessionNotFound):
            await store.history("no-such-session", last=5)
        bad: Any
        for bad in (0, -1, "5", 5.0, True):
            with pytest.raises(InvalidInput) as caught:
                await store.history(session_id, last=bad)
            assert caught.value.field == "last"
        await store.aclose()
        return threading.get_ident()

    assert asyncio.run(main()) in threads


def test_a_read_of_a_locked_file_goes_to_a_worker_and_the_loop_runs_meanwhile(
    tmp_path: Path,
) -> None:
    """Another connection holds the file exclusively: the inline read fails at once
    instead of waiting on the loop's thread, and a worker thread waits for the lock."""
    path = tmp_path / "s.db"
    with open_store(path) as writer:
        session_id = writer.get_or_create("agent:main:main").id
        writer.append(session_id, [Message.user(str(n)) for n in range(10)])

    async def main() -> None:
        store = open_async_store(path, busy_timeout=WAIT)
        page = await while_the_file_is_held(path, lambda: store.history(session_id, last=5))
        assert [entry.text for entry in page.entries] == ["5", "6", "7", "8", "9"]
        # Once the file is free, the read runs inline, on a connection that never waits.
        assert await store.history(session_id, last=5) == page
        inline = sqlite_backend(store.sync)._local.inline_connection
        assert inline.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        await store.aclose()

    asyncio.run(main())


def test_a_read_past_the_bounds_stops_and_the_async_call_reads_it_on_a_worker(
    tmp_path: Path,
) -> None:
    store = open_async_store(tmp_path / "s.db")
    sync = store.sync
    backend = sqlite_backend(sync)
    inline = backend.inline()
    assert inline is not None
    # A value longer than the bound; payloads that together are longer; more rows
    # than the steps allow (about 20 steps a row: a page of INLINE_STEPS rows).
    long_value = sync.get_or_create("agent:main:long").id
    sync.append(long_value, Message.user("x" * (INLINE_BYTES + 1)))
    large = sync.get_or_create("agent:main:large").id
    sync.append(large, [Message.user("y" * (INLINE_BYTES // 4)) for _ in range(5)])
    many = sync.get_or_create("agent:main:many").id
    sync.append(many, [Message.user("z") for _ in range(INLINE_STEPS)])
    for session_id, limit in ((long_value, 1), (large, 5), (many, INLINE_STEPS)):
        with pytest.raises(WouldWait), inline:
            sync.history(session_id, limit=limit)

    async def main() -> None:
        for session_id in (long_value, large):
            page = await store.history(session_id, last=5)
            assert page == sync.history(session_id, last=5)
        await store.aclose()

    asyncio.run(main())


def test_a_write_in_an_inline_block_is_refused_before_it_starts(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        session_id = store.get_or_create("agent:main:main").id
        inline = sqlite_backend(store).inline()
        assert inline is not None
        with pytest.raises(WouldWait), inline:
            store.append(session_id, Message.user("hi"))
        assert store.get(session_id).entry_count == 0
        store.append(session_id, Message.user("hi"))  # outside the block, as ever
        assert store.get(session_id).entry_count == 1


def test_a_closed_async_store_refuses_small_reads(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        session_id = store.get_or_create("agent:main:main").id
        store.append(session_id, Message.user("hi"))
        borrowed = AsyncSessionStore.borrowing(store)

        async def main() -> None:
            assert len((await borrowed.history(session_id, last=5)).entries) == 1
            await borrowed.aclose()
            with pytest.raises(StoreUnavailable):
                await borrowed.history(session_id, last=5)

        asyncio.run(main())
        assert len(store.history(session_id, last=5).entries) == 1  # the store stays open

    owned = open_async_store(tmp_path / "s.db")

    async def closed() -> None:
        await owned.aclose()
        with pytest.raises(StoreUnavailable):
            await owned.history(session_id, last=5)

    asyncio.run(closed())


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [
        ("sqlite:///:memory:", {"last": 5}),  # readers queue with writers there
        ("file", {"limit": INLINE_ENTRIES + 1}),  # not a small read
    ],
)
def test_other_reads_run_on_worker_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, kwargs: dict[str, Any]
) -> None:
    store = open_async_store(tmp_path / "s.db" if url == "file" else url)
    session_id = store.sync.get_or_create("agent:main:main").id
    store.sync.append(session_id, Message.user("hi"))
    threads: set[int] = set()
    backend = sqlite_backend(store.sync)
    method = backend.read_statement

    def spy() -> Any:
        threads.add(threading.get_ident())
        return method()

    monkeypatch.setattr(backend, "read_statement", spy)

    async def main() -> int:
        page = await store.history(session_id, **kwargs)
        assert page == store.sync.history(session_id, **kwargs)
        await store.aclose()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert loop_thread in threads  # the sync call's, on this thread
    assert len(threads) == 2  # and the async call's, on a worker


def test_the_inline_connections_of_threads_that_ended_are_closed(tmp_path: Path) -> None:
    """An event loop per thread (per request, say): each thread reads on a connection
    of its own, and those of threads that have ended do not pile up."""
    store = open_async_store(tmp_path / "s.db")
    session_id = store.sync.get_or_create("agent:main:main").id
    store.sync.append(session_id, Message.user("hi"))
    backend = sqlite_backend(store.sync)
    seen: list[sqlite3.Connection] = []

    def one_loop() -> None:
        page = asyncio.run(store.history(session_id, last=5))
        assert [entry.text for entry in page.entries] == ["hi"]
        seen.append(backend._local.inline_connection)

    for _ in range(3):
        thread = threading.Thread(target=one_loop)
        thread.start()
        thread.join(timeout=WAIT)
    assert len(seen) == 3
    assert list(backend._inline_connections.values()) == [seen[-1]]
    for ended in seen[:-1]:
        with pytest.raises(sqlite3.ProgrammingError):  # closed
            ended.execute("SELECT 1")
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        seen[-1].execute("SELECT 1")
