"""SQLite's full-text index follows the entries a batch at a time, behind a watermark.

Appends index the entries that wait each time a row id crosses a multiple of
INDEX_BATCH, a search first indexes the rest, and deleting the newest rows
lowers the watermark so that their reused row ids are indexed again. Each
test ends with FTS5's own check of the index against the entries.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisopod_session import ConflictError, NewEntry, SessionStore, open_async_store, open_store
from aisopod_session._store import engine_of
from aisopod_session.backends.sqlite import INDEX_BATCH, MIGRATIONS, SqliteBackend, SqliteTx
from aisopod_shared import Message, ToolCallPart
from tests.session.old_databases import index_each_insert, write_sqlite_at_version


def _index_now(store: SessionStore) -> None:
    """Index whatever waits, as an append crossing a batch does."""
    backend = engine_of(store).backend
    assert isinstance(backend, SqliteBackend)
    with backend.write() as tx:
        assert isinstance(tx, SqliteTx)
        tx.index_pending()


def _files(path: Path) -> dict[str, bytes]:
    """The database file and its WAL, byte for byte."""
    return {p.name: p.read_bytes() for p in (path, path.with_name(path.name + "-wal"))}


def _watermark(path: Path) -> tuple[int, int]:
    """(indexed_through, the highest entry row id), read from the file itself."""
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT indexed_through, (SELECT coalesce(max(row_id), 0) FROM entries)"
            " FROM search_state"
        ).fetchone()
    db.close()
    return int(row[0]), int(row[1])


def test_a_search_sees_entries_the_index_has_not_caught_up_with_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = open_store(path)
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user("pelican"), Message.assistant("cormorant")])
    assert _watermark(path) == (0, 2)  # two rows: below a batch, nothing indexed yet
    before = _files(path)
    assert [h.seq for h in store.search("cormorant").hits] == [2]
    assert [h.snippet for h in store.search("pelican").hits] == ["[pelican]"]
    assert _files(path) == before  # read around the index, never into it
    _index_now(store)
    assert [h.seq for h in store.search("cormorant").hits] == [2]  # once, not twice
    assert store.check_integrity() == []
    store.close()


def test_a_search_never_waits_for_a_writer(tmp_path: Path) -> None:
    """With another connection holding the write lock, a store that may not wait for
    a lock at all (busy timeout 0) still searches, and finds every committed entry."""
    path = tmp_path / "s.db"
    store = open_store(path)
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(f"sanderling {n}") for n in range(INDEX_BATCH + 3)])
    impatient = open_store(path, busy_timeout=0)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM entries")  # uncommitted: no reader may see it
    hits = impatient.search("sanderling", limit=100).hits
    assert len(hits) == 100
    assert len(impatient.search("sanderling 258").hits) == 1  # one still waiting for the index
    writer.execute("ROLLBACK")
    writer.close()
    impatient.close()
    store.close()


def test_indexed_and_waiting_entries_page_together_best_first(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(path)
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(f"heron {n}") for n in range(INDEX_BATCH)])
    store.append(session.id, [Message.user(f"heron late {n}") for n in range(10)])
    assert _watermark(path) == (INDEX_BATCH, INDEX_BATCH + 10)
    seen: list[int] = []
    cursor = None
    while True:
        page = store.search("heron", limit=37, cursor=cursor)
        seen += [h.seq for h in page.hits]
        assert [h.rank for h in page.hits] == sorted((h.rank for h in page.hits), reverse=True)
        cursor = page.cursor
        if cursor is None:
            break
    assert sorted(seen) == list(range(1, INDEX_BATCH + 11))
    store.close()


def test_appends_index_what_waits_when_a_row_id_crosses_a_batch(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(path)
    session = store.get_or_create("agent:main:main")
    for n in range(INDEX_BATCH - 1):
        store.append(session.id, Message.user(f"word{n}"))
    assert _watermark(path) == (0, INDEX_BATCH - 1)
    store.append(session.id, Message.user("the crossing one"))
    assert _watermark(path) == (INDEX_BATCH, INDEX_BATCH)
    # A batch of a full INDEX_BATCH always crosses: an import is indexed as it lands.
    store.append(session.id, [Message.user(f"bulk{n}") for n in range(INDEX_BATCH)])
    assert _watermark(path) == (2 * INDEX_BATCH, 2 * INDEX_BATCH)
    assert store.check_integrity() == []
    store.close()


def test_deleting_the_newest_entries_lowers_the_watermark(tmp_path: Path) -> None:
    """Without it, new entries would reuse the deleted row ids and never be indexed."""
    path = tmp_path / "s.db"
    store = open_store(path)
    kept = store.get_or_create("agent:main:kept")
    store.append(kept.id, [Message.user("heron"), Message.user("egret")])
    doomed = store.get_or_create("agent:main:doomed")
    store.append(doomed.id, [Message.user("ibis"), Message.user("stork"), Message.user("crane")])
    _index_now(store)
    assert _watermark(path) == (5, 5)
    assert store.delete(doomed.id)
    assert _watermark(path) == (2, 2)
    store.append(kept.id, Message.user("spoonbill"))  # row id 3 again
    assert _watermark(path) == (2, 3)
    assert [h.seq for h in store.search("spoonbill").hits] == [3]
    assert store.search("ibis").hits == ()
    assert store.check_integrity() == []
    store.close()


def test_deleting_older_entries_leaves_the_waiting_ones_waiting(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(path)
    old = store.get_or_create("agent:main:old")
    store.append(old.id, Message.user("flamingo"))
    _index_now(store)
    new = store.get_or_create("agent:main:new")
    store.append(new.id, Message.user("avocet"))
    assert _watermark(path) == (1, 2)
    store.delete(old.id)
    assert _watermark(path) == (1, 2)  # row 2 still waits; nothing pretends it is indexed
    assert [h.session_id for h in store.search("avocet").hits] == [new.id]
    assert store.check_integrity() == []
    store.close()


def test_entries_without_text_stay_out_of_the_index_and_the_check_agrees(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "s.db")
    session = store.get_or_create("agent:main:main")
    store.append(
        session.id,
        [
            Message.user("curlew"),
            Message.user(""),
            NewEntry.model_change("acme", "m1"),
            Message.assistant([ToolCallPart("c1", "lookup", {"q": 1})]),
        ],
    )
    assert store.check_integrity() == []  # nothing indexed yet: nothing missing
    assert [h.seq for h in store.search("curlew").hits] == [1]
    _index_now(store)
    assert [h.seq for h in store.search("curlew").hits] == [1]
    assert store.check_integrity() == []
    store.close()


def test_an_index_that_misses_entries_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(path)
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("godwit"))
    _index_now(store)
    with sqlite3.connect(path) as db:  # a watermark past rows the index never saw
        db.execute("INSERT INTO entries_fts (entries_fts) VALUES ('delete-all')")
    db.close()
    problems = store.check_integrity()
    assert problems
    assert "full-text index" in problems[0]
    store.close()


def test_a_version_3_database_starts_with_everything_indexed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    # Schema version 3 indexed every append as it landed.
    session_id = write_sqlite_at_version(
        path, 3, [Message.user("sandpiper"), Message.assistant("plover")], index_each_insert
    )
    new = open_store(path)
    assert new.schema().version == len(MIGRATIONS)
    assert _watermark(path) == (2, 2)
    new.append(session_id, Message.user("dunlin"))
    assert [h.seq for h in new.search("plover OR dunlin").hits] == [2, 3]
    assert new.check_integrity() == []
    new.close()


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3), st.integers(1, INDEX_BATCH + 40)),
        st.tuples(st.just("delete"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("fork"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("search"), st.just(0), st.just(0)),
        st.tuples(st.just("index"), st.just(0), st.just(0)),
    ),
    max_size=14,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations=_operations)
def test_the_index_matches_the_entries_after_any_mix_of_writes(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[str, int, int]]
) -> None:
    store = open_store(tmp_path_factory.mktemp("mix") / "s.db")
    sessions: dict[int, str] = {}  # slot -> session id
    expected: dict[str, tuple[str, int]] = {}  # session id -> a word, messages holding it
    for operation, slot, count in operations:
        if operation == "append":
            if slot not in sessions:
                sessions[slot] = store.get_or_create(f"agent:main:s{slot}").id
                expected[sessions[slot]] = (f"word{slot}x{len(expected)}", 0)
            session_id = sessions[slot]
            word, held = expected[session_id]
            store.append(session_id, [Message.user(f"{word} {n}") for n in range(count)])
            expected[session_id] = (word, held + count)
        elif operation == "delete" and slot in sessions:
            store.delete(sessions[slot])
            del expected[sessions.pop(slot)]
        elif operation == "fork" and slot in sessions:
            fork = store.fork(sessions[slot])  # copies the source's entries, word and all
            expected[fork.id] = expected[sessions[slot]]
        elif operation == "search":
            store.search("anything")
        elif operation == "index":
            _index_now(store)
    assert store.check_integrity() == []
    for session_id, (word, held) in expected.items():
        found = store.search(word, session_id=session_id, limit=100).hits
        assert len(found) == min(held, 100)
    store.close()


def test_group_commits_keep_the_index_whole_when_some_appends_roll_back(tmp_path: Path) -> None:
    """The async store commits concurrent appends together (again each in a savepoint,
    when one is refused): a refused one rolls back alone, even when its savepoint held
    a batch's indexing."""

    async def run() -> tuple[int, int]:
        store = open_async_store(tmp_path / "s.db")
        sessions = [(await store.get_or_create(f"agent:main:s{n}")).id for n in range(3)]

        async def append(n: int) -> None:
            # Every fourth append asks for a version the session is long past.
            stale = 1 if n % 4 == 3 else None
            await store.append(
                sessions[n % 3], Message.user(f"plover{n} dotterel"), expected_version=stale
            )

        results = await asyncio.gather(*(append(n) for n in range(600)), return_exceptions=True)
        refused = sum(isinstance(r, ConflictError) for r in results)
        assert all(r is None or isinstance(r, ConflictError) for r in results)
        assert store.sync.check_integrity() == []
        found = (await store.search("dotterel", limit=100)).hits
        await store.aclose()
        return refused, len(found)

    refused, found = asyncio.run(run())
    assert refused > 100
    assert found == 100


def test_the_async_committer_indexes_a_due_batch_after_answering_its_appends(
    tmp_path: Path,
) -> None:
    """The async store's appends leave a due batch to its committer, which indexes it
    in a transaction of its own once their callers have their answers; a search finds
    every entry either way."""
    path = tmp_path / "s.db"

    async def run() -> None:
        store = open_async_store(path)
        session = await store.get_or_create("agent:main:main")
        await store.append(
            session.id, [Message.user(f"avocet {n}") for n in range(INDEX_BATCH - 1)]
        )
        await store.append(session.id, Message.user("avocet crossing"))
        found = (await store.search("avocet crossing", limit=100)).hits
        assert [hit.seq for hit in found] == [INDEX_BATCH]
        assert len((await store.search("avocet", limit=100)).hits) == 100
        await store.aclose()  # the committer finishes what it has begun

    asyncio.run(run())
    assert _watermark(path) == (INDEX_BATCH, INDEX_BATCH)
    reopened = open_store(path)
    assert reopened.check_integrity() == []
    reopened.close()


def test_a_deferred_batch_that_fails_to_index_waits_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Indexing after the answers can fail (the file locked by another process past the
    busy timeout, say): the committer goes on, and the entries wait for the next batch."""
    path = tmp_path / "s.db"
    real = SqliteTx.index_pending
    failures = iter([True])

    def index_pending(self: SqliteTx) -> None:
        if next(failures, False):
            raise sqlite3.OperationalError("database is locked")
        real(self)

    monkeypatch.setattr(SqliteTx, "index_pending", index_pending)

    async def run() -> None:
        store = open_async_store(path)
        session = await store.get_or_create("agent:main:main")
        await store.append(session.id, [Message.user(f"stilt {n}") for n in range(INDEX_BATCH)])
        await store.append(session.id, [Message.user(f"stilt {n}") for n in range(INDEX_BATCH)])
        assert len((await store.search("stilt", limit=100)).hits) == 100
        await store.aclose()

    asyncio.run(run())
    assert list(failures) == []  # the first batch did fail
    assert _watermark(path) == (2 * INDEX_BATCH, 2 * INDEX_BATCH)
    reopened = open_store(path)
    assert reopened.check_integrity() == []
    reopened.close()
