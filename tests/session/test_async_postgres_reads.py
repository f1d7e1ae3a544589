"""Small reads of a PostgreSQL store on the event loop's own thread, their statements
sent on the loop's async connection: what they give, and that whatever they cannot do
there (a transaction, a busy or broken connection, too many statements) goes to a
worker thread, as every other call does."""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from aisopod_session import AsyncSessionStore, SessionNotFound, open_async_store
from aisopod_session._async import read_rows, read_small
from aisopod_session._store import engine_of
from aisopod_session.backends import postgres
from aisopod_session.backends.postgres import LOOP_STATEMENTS, PostgresBackend
from aisopod_shared import Message
from tests.session.postgres_schema import temporary_schema


@pytest.fixture(name="pg_url")
def pg_url_fixture(postgres_dsn: str) -> Iterator[str]:
    """A store URL in a schema of the test's own (the loop's connection must find it)."""
    with temporary_schema(postgres_dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


def _backend(store: AsyncSessionStore) -> PostgresBackend:
    backend = engine_of(store.sync).backend
    assert isinstance(backend, PostgresBackend)
    return backend


def _fetched_on(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads a loop's connection sends a statement from (a spy: the real one runs)."""
    threads: list[int] = []
    fetch = postgres._LoopConnection.fetch

    async def spy(self: Any, *args: Any) -> Any:
        threads.append(threading.get_ident())
        return await fetch(self, *args)

    monkeypatch.setattr(postgres._LoopConnection, "fetch", spy)
    return threads


def _sent_by_workers(store: AsyncSessionStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls the store's worker threads run from now on (a spy)."""
    calls: list[str] = []
    run = store._workers.run

    async def spy(fn: Any) -> Any:
        calls.append(repr(fn))
        return await run(fn)

    monkeypatch.setattr(store._workers, "run", spy)
    return calls


def test_a_small_read_is_sent_from_the_loop_and_reads_what_the_sync_call_reads(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_async_store(pg_url)
    session_id = store.sync.get_or_create("agent:main:main").id
    store.sync.append(session_id, [Message.user(f"message {n}") for n in range(300)])
    fetched = _fetched_on(monkeypatch)
    workers = _sent_by_workers(store, monkeypatch)
    engine = engine_of(store.sync)
    stored, agent = engine.key("agent:main:main")

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
        path = await store.path(session_id, last=20)  # in a transaction: on a worker
        assert path == store.sync.path(session_id, last=20)
        # An adapter's window: the key's session and its last entries.
        window = await read_small(
            store,
            20,
            lambda e: e.read_key_tail(agent, stored, 20, lambda kind, p: [p], keep_pairs=False),
            on_loop=True,
        )
        assert window == [e.payload for e in store.sync.path(session_id, last=20).entries]
        # Its errors are the call's own (an unknown session is known in a transaction,
        # which a worker thread makes).
        with pytest.raises(SessionNotFound):
            await store.history("no-such-session", last=5)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert fetched
    assert set(fetched) == {loop_thread}
    # What reads in a transaction goes to a worker: the path (one snapshot for its
    # statements), the unknown session (known so).
    assert len(workers) == 2
    assert "SessionStore.path" in workers[0]
    assert "no-such-session" in workers[1]
    store.close()


def test_reads_that_decode_between_statements_go_to_workers(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run again from its start for each statement, a read that decodes items before
    its last one would decode them again: such reads (`read_small` unless told,
    `read_rows`) keep to the worker threads."""
    store = open_async_store(pg_url)
    session_id = store.sync.get_or_create("agent:main:main").id
    fetched = _fetched_on(monkeypatch)
    workers = _sent_by_workers(store, monkeypatch)

    async def main() -> None:
        found = await read_small(store, 5, lambda e: e.entries_since_compaction(session_id, 0))
        assert found == 0
        assert await read_rows(store, lambda e: e.agent_id) is None

    asyncio.run(main())
    assert not fetched
    assert len(workers) == 2
    store.close()


def test_reads_at_once_share_the_loop_connection_or_go_to_workers(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_async_store(pg_url)
    ids = [store.sync.get_or_create(f"agent:main:c{n}").id for n in range(16)]
    for n, session_id in enumerate(ids):
        store.sync.append(session_id, [Message.user(f"{n}: {m}") for m in range(20)])
    fetched = _fetched_on(monkeypatch)
    workers = _sent_by_workers(store, monkeypatch)

    async def main() -> None:
        pages = await asyncio.gather(*(store.history(i, last=10) for i in ids * 4))
        assert pages == [store.sync.history(i, last=10) for i in ids * 4]

    asyncio.run(main())
    assert fetched
    assert workers  # one connection per loop: the others went to workers
    store.close()


def test_a_read_of_more_statements_than_the_loop_sends_goes_to_a_worker(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_async_store(pg_url)
    session_id = store.sync.get_or_create("agent:main:main").id
    store.sync.append(session_id, [Message.user(f"m{n}") for n in range(5)])
    fetched = _fetched_on(monkeypatch)
    workers = _sent_by_workers(store, monkeypatch)
    backend = _backend(store)

    def statements(count: int) -> list[int]:
        with backend.read_statement() as tx:
            return [tx.execute("SELECT ?::bigint", (n,)).fetchone()[0] for n in range(count)]

    async def main() -> None:
        assert await store._read(True, lambda: statements(LOOP_STATEMENTS)) == list(
            range(LOOP_STATEMENTS)
        )
        assert not workers
        assert await store._read(True, lambda: statements(LOOP_STATEMENTS + 1)) == list(
            range(LOOP_STATEMENTS + 1)
        )
        assert len(workers) == 1

    asyncio.run(main())
    assert len(fetched) == 2 * LOOP_STATEMENTS  # the second read stopped there
    store.close()


def test_a_write_in_a_read_on_the_loop_is_refused_before_it_starts(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_async_store(pg_url)
    session_id = store.sync.get_or_create("agent:main:main").id
    workers = _sent_by_workers(store, monkeypatch)

    def writes() -> int:
        store.sync.append(session_id, Message.user("written once"))
        return 1

    async def main() -> None:
        assert await store._read(True, writes) == 1

    asyncio.run(main())
    assert len(workers) == 1  # made there, once
    assert store.sync.get(session_id).entry_count == 1
    store.close()


def test_a_statement_that_writes_is_refused_on_the_loop_and_made_once_on_a_worker(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's connection is read-only: a write sent from a read by mistake is
    refused by the server there, and the read is made on a worker thread."""
    store = open_async_store(pg_url)
    session_id = store.sync.get_or_create("agent:main:main").id
    backend = _backend(store)
    workers = _sent_by_workers(store, monkeypatch)

    def titles() -> list[str]:
        with backend.read_statement() as tx:
            rows = tx.execute(
                "UPDATE sessions SET title = coalesce(title, '') || 'x' WHERE id = ?"
                " RETURNING title",
                (session_id,),
            ).fetchall()
            return [row[0] for row in rows]

    async def main() -> None:
        assert await store._read(True, titles) == ["x"]

    asyncio.run(main())
    assert len(workers) == 1
    assert store.sync.get(session_id).title == "x"
    store.close()


def test_a_loop_connection_the_server_closed_is_made_again_and_the_read_goes_on(
    pg_url: str, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"aisopod-loop-{uuid.uuid4().hex[:8]}"
    store = open_async_store(f"{pg_url}&application_name={name}")
    session_id = store.sync.get_or_create("agent:main:main").id
    store.sync.append(session_id, [Message.user(f"m{n}") for n in range(10)])
    expected = store.sync.history(session_id, last=5)
    fetched = _fetched_on(monkeypatch)

    async def main() -> None:
        assert await store.history(session_id, last=5) == expected
        # Every connection of the store, the loop's among them, closed by the server.
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )
        for _ in range(3):
            assert await store.history(session_id, last=5) == expected

    asyncio.run(main())
    assert len(fetched) >= 3  # the loop's connection was made again after it failed
    store.close()


def test_a_cancelled_read_drops_the_loop_connection_and_the_next_read_makes_one(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_async_store(pg_url)
    session_id = store.sync.get_or_create("agent:main:main").id
    store.sync.append(session_id, Message.user("hello"))
    backend = _backend(store)

    def slow() -> int:
        with backend.read_statement() as tx:
            return int(tx.execute("SELECT 1 FROM pg_sleep(3)").fetchone()[0])

    async def main() -> None:
        task = asyncio.create_task(store._read(True, slow))
        await asyncio.sleep(0.2)  # the statement is on the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [c.closed for c in backend._on_loops.values()] == [True]
        assert await store.history(session_id, last=5) == store.sync.history(session_id, last=5)
        assert [c.closed for c in backend._on_loops.values()] == [False]

    asyncio.run(main())
    store.close()
    assert backend._on_loops == {}


def test_closing_the_store_closes_the_loop_connections(pg_url: str) -> None:
    store = open_async_store(pg_url)
    session_id = store.sync.get_or_create("agent:main:main").id
    backend = _backend(store)

    async def main() -> None:
        await store.history(session_id, last=5)
        (on_loop,) = backend._on_loops.values()
        connection = on_loop.connection
        assert connection is not None
        was_open = not connection.closed
        await store.aclose()
        assert was_open
        assert connection.closed
        assert backend._on_loops == {}

    asyncio.run(main())


def test_a_loop_that_is_gone_has_its_connection_closed(pg_url: str) -> None:
    store = open_async_store(pg_url)
    session_id = store.sync.get_or_create("agent:main:main").id
    backend = _backend(store)
    connections: list[Any] = []

    async def main() -> None:
        await store.history(session_id, last=5)
        connections.extend(c.connection for c in backend._on_loops.values())

    asyncio.run(main())
    gc.collect()
    assert len(connections) == 1
    assert connections[0].closed
    assert backend._on_loops == {}
    store.close()
