"""What only the PostgreSQL backend has: lost connections, concurrent migrations, URLs."""

from __future__ import annotations

import multiprocessing
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from aisopod_session import (
    AccessDenied,
    ConflictError,
    NewEntry,
    SchemaVersionError,
    SessionExists,
    SessionStore,
    StoreBusy,
    StoreReadOnly,
    StoreUnavailable,
    open_store,
)
from aisopod_session._store import engine_of
from aisopod_session.backends.postgres import _COPY_FROM as COPY_FROM
from aisopod_session.backends.postgres import MIGRATIONS
from aisopod_shared import Message
from tests.session.invariants import check_invariants
from tests.session.old_databases import write_postgres_at_version
from tests.session.postgres_schema import temporary_schema, with_schema
from tests.session.snapshot import all_entries


@pytest.fixture(name="pg_url")
def pg_url_fixture(postgres_dsn: str) -> Iterator[str]:
    """A store URL in a schema of the test's own."""
    with temporary_schema(postgres_dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


def _terminate(dsn: str, application_name: str) -> int:
    """Close every server connection of one application, as a restart does; return
    once each of them is gone (PostgreSQL 14+ waits with a timeout)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (application_name,),
        ).fetchall()
    return len(rows)


def _wait_until_waiting_for_a_lock(dsn: str, application_name: str) -> None:
    """Return once a connection of the application waits for a row lock."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        for _ in range(6000):
            (waiting,) = admin.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = %s AND wait_event_type = 'Lock'",
                (application_name,),
            ).fetchone() or (0,)
            if waiting:
                return
            time.sleep(0.005)
    raise AssertionError("nothing waited for the lock")


def _killable_store(pg_url: str, dsn: str) -> tuple[SessionStore, str]:
    """A store whose connections carry an application name of their own (so that
    `_terminate` finds them), with that name."""
    name = f"aisopod-kill-{uuid.uuid4().hex[:8]}"
    return open_store(f"{pg_url}&application_name={name}&pool_max=2"), name


class Acknowledged:
    """Counts acknowledged appends; lets the test wait for the next ones."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def add(self) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def wait_for_more(self, more: int) -> None:
        with self._changed:
            target = self._count + more
            assert self._changed.wait_for(lambda: self._count >= target, timeout=60)


def _kill_while(
    writer: Callable[[], None], acked: Acknowledged, stop: threading.Event, dsn: str, name: str
) -> int:
    """Run `writer` on a thread; 20 times, once it has acknowledged two more appends,
    kill the application's connections. Stop it; return how many connections were
    killed."""
    thread = threading.Thread(target=writer)
    thread.start()
    killed = 0
    for _ in range(20):
        acked.wait_for_more(2)
        killed += _terminate(dsn, name)
    stop.set()
    thread.join(timeout=60)
    return killed


def test_lost_connections_are_store_unavailable_and_retries_apply_once(
    pg_url: str, postgres_dsn: str
) -> None:
    store, name = _killable_store(pg_url, postgres_dsn)
    session = store.get_or_create("agent:main:main")
    failures: Counter[str] = Counter()
    stop = threading.Event()
    acked = Acknowledged()
    batches = 0

    def writer() -> None:
        nonlocal batches
        while not stop.is_set():
            batches += 1
            messages = [Message.user(f"batch {batches} part {p}") for p in range(4)]
            while True:  # retry the same append, with the same key, until it lands
                try:
                    store.append(session.id, messages, idempotency_key=f"b{batches}")
                    acked.add()
                    break
                except StoreUnavailable as err:
                    failures[type(err).__name__] += 1

    killed = _kill_while(writer, acked, stop, postgres_dsn, name)
    assert killed > 0
    assert failures["StoreUnavailable"] > 0
    entries = all_entries(store, session.id)
    per_batch = Counter(e.text.split(" part ")[0] for e in entries)
    assert per_batch == {f"batch {n}": 4 for n in range(1, batches + 1)}
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    check_invariants(store)
    print(
        f"{killed} connections killed, {sum(failures.values())} failed appends retried,"
        f" {batches} batches verified"
    )
    store.close()


def test_connections_closed_while_idle_are_replaced_before_an_append(
    pg_url: str, postgres_dsn: str
) -> None:
    """An append without a key is one statement outside a transaction: a pooled
    connection the server closed meanwhile is noticed before it is used."""
    name = f"aisopod-idle-{uuid.uuid4().hex[:8]}"
    store = open_store(f"{pg_url}&application_name={name}&pool_min=2&pool_max=2")
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("before"))
    assert _terminate(postgres_dsn, name) == 2  # the whole pool, idle, and gone
    (entry,) = store.append(session.id, Message.user("after"))
    assert entry.seq == 2
    assert [e.text for e in store.history(session.id).entries] == ["before", "after"]
    store.close()


@pytest.mark.parametrize("size", [3, COPY_FROM])
def test_unkeyed_appends_under_killed_connections_are_whole_or_absent(
    pg_url: str, postgres_dsn: str, size: int
) -> None:
    """Appends of a few entries (one statement) and batches (sent by COPY)."""
    store, name = _killable_store(pg_url, postgres_dsn)
    session = store.get_or_create("agent:main:main")
    acknowledged: list[str] = []
    failed = 0
    stop = threading.Event()
    acked = Acknowledged()

    def writer() -> None:
        nonlocal failed
        n = 0
        while not stop.is_set():
            n += 1
            batch = [Message.user(f"m{n} part {p}") for p in range(size)]
            try:
                store.append(session.id, batch)
                acknowledged.append(f"m{n}")
                acked.add()
            except StoreUnavailable:
                failed += 1

    killed = _kill_while(writer, acked, stop, postgres_dsn, name)
    entries = all_entries(store, session.id)
    parts = Counter(e.text.split(" part ")[0] for e in entries)
    assert set(parts.values()) <= {size}  # no append half there
    assert set(acknowledged) <= set(parts)  # every acknowledged append there
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    check_invariants(store)
    print(f"{killed} connections killed, {failed} appends failed, {len(parts)} appends verified")
    store.close()


def test_an_append_too_big_for_one_statement_takes_a_transaction(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aisopod_session.backends import postgres

    monkeypatch.setattr(postgres, "_ONE_STATEMENT_BYTES", 200)
    store = open_store(pg_url)
    session = store.get_or_create("agent:main:main")
    small = store.append(session.id, Message.user("small"))
    big = store.append(session.id, [Message.user("x" * 150), Message.assistant("y" * 150)])
    keyed = store.append(session.id, [Message.user("z" * 300)], idempotency_key="k")
    assert [e.seq for e in (*small, *big, *keyed)] == [1, 2, 3, 4]
    assert store.history(session.id).entries == (*small, *big, *keyed)
    with pytest.raises(ConflictError):
        store.append(session.id, Message.user("w" * 300), expected_version=1)
    assert store.get(session.id).entry_count == 4
    check_invariants(store)
    store.close()


def test_a_retry_racing_the_append_it_repeats_waits_and_applies_nothing(
    pg_url: str, postgres_dsn: str
) -> None:
    """The retry looks for its key only once it holds the session: looking first
    would miss the uncommitted entries of the call it repeats, and add them again."""
    name = f"aisopod-race-{uuid.uuid4().hex[:8]}"
    store = open_store(f"{pg_url}&pool_max=4&application_name={name}")
    session = store.get_or_create("agent:main:main")
    messages = [Message.user("once"), Message.user("only")]
    request = engine_of(store).prepare_append(session.id, messages, idempotency_key="k")
    retried: list[tuple[int, ...]] = []

    def retry() -> None:
        appended = store.append(session.id, messages, idempotency_key="k")
        retried.append(tuple(e.seq for e in appended))

    with engine_of(store).backend.write() as tx:
        first = engine_of(store).append_in(tx, request)  # appended, not yet committed
        thread = threading.Thread(target=retry)
        thread.start()
        _wait_until_waiting_for_a_lock(postgres_dsn, name)  # the retry waits for the row
        assert retried == []
    thread.join(timeout=60)
    assert tuple(e.seq for e in first) == (1, 2)
    assert retried == [(1, 2)]
    assert store.get(session.id).entry_count == 2
    store.close()


def _open_and_report(url: str, barrier: object, out: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    store = open_store(url)
    out.put(store.schema().version)  # type: ignore[attr-defined]
    store.close()


def test_processes_opening_a_new_schema_together_migrate_once(
    pg_url: str, postgres_dsn: str
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    out = context.Queue()
    openers = [
        context.Process(target=_open_and_report, args=(pg_url, barrier, out)) for _ in range(4)
    ]
    for opener in openers:
        opener.start()
    versions = [out.get(timeout=120) for _ in openers]
    for opener in openers:
        opener.join(timeout=60)
    assert versions == [len(MIGRATIONS)] * 4
    with psycopg.connect(postgres_dsn, autocommit=True) as raw:
        schema = pg_url.rsplit("schema=", 1)[1]
        rows = raw.execute(
            f'SELECT version FROM "{schema}".schema_migrations ORDER BY version'
        ).fetchall()
    assert rows == [(n + 1,) for n in range(len(MIGRATIONS))]


def test_a_database_from_a_newer_version_is_refused(pg_url: str, postgres_dsn: str) -> None:
    open_store(pg_url).close()
    schema = pg_url.rsplit("schema=", 1)[1]
    with psycopg.connect(postgres_dsn, autocommit=True) as raw:
        raw.execute(
            f'INSERT INTO "{schema}".schema_migrations VALUES (%s, %s, 0)',
            (len(MIGRATIONS) + 1, "future"),
        )
    with pytest.raises(SchemaVersionError) as caught:
        open_store(pg_url)
    assert caught.value.found == len(MIGRATIONS) + 1


def test_the_url_never_shows_a_password(pg_url: str, postgres_dsn: str) -> None:
    host = postgres_dsn.split("@", 1)[1]
    url = with_schema(f"postgresql://postgres:s3cret@{host}", pg_url.rsplit("schema=", 1)[1])
    store = open_store(url)
    assert "s3cret" not in repr(store)
    assert "s3cret" not in store.url
    assert ":***@" in store.url
    store.close()


def test_a_server_that_does_not_answer_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        open_store("postgresql://postgres@127.0.0.1:1/test?pool_timeout=1")


def test_both_backends_know_the_same_schema_versions() -> None:
    """Version N means the same schema on both (the engine's name for a feature aside)."""
    from aisopod_session.backends import sqlite

    def meaning(name: str) -> str:
        return re.sub(r" \(.*?\)", "", name)

    assert len(MIGRATIONS) == len(sqlite.MIGRATIONS)
    assert [meaning(m.name) for m in MIGRATIONS] == [meaning(m.name) for m in sqlite.MIGRATIONS]


def test_a_schema_written_by_an_older_version_is_upgraded_in_place(
    pg_url: str, postgres_dsn: str
) -> None:
    """Version 3 kept payloads in jsonb; opening it with today's code converts the
    columns in place, keeps every entry, and new payloads keep their spelling."""
    schema = pg_url.rsplit("schema=", 1)[1]
    session_id = write_postgres_at_version(
        postgres_dsn, schema, 3, [Message.user("written at version 3"), Message.assistant("yes")]
    )
    new = open_store(pg_url)
    assert new.schema().version == len(MIGRATIONS)
    assert [e.text for e in new.history(session_id).entries] == ["written at version 3", "yes"]
    assert new.get(session_id).metadata == {}
    (entry,) = new.append(
        session_id, NewEntry("custom", {"customType": "n", "data": {"big": 1e16, "neg": -0.0}})
    )
    stored = new.history(session_id, last=1).entries[0]
    assert stored == entry
    assert repr(stored.payload["data"]) == "{'big': 1e+16, 'neg': -0.0}"
    assert [h.seq for h in new.search("version").hits] == [1]
    check_invariants(new)
    new.close()


def test_a_read_only_store_reads_and_refuses_every_write(pg_url: str) -> None:
    store = open_store(pg_url)
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user("kept"), Message.assistant("yes")])
    store.close()
    reader = open_store(pg_url + "&read_only=true")
    assert [e.text for e in reader.history(session.id).entries] == ["kept", "yes"]
    assert [h.seq for h in reader.search("kept").hits] == [1]
    for write in (
        lambda: reader.append(session.id, Message.user("x")),
        lambda: reader.patch(session.id, title="x"),
        lambda: reader.get_or_create("agent:main:new"),
        lambda: reader.reset("agent:main:main"),
    ):
        with pytest.raises(StoreReadOnly):
            write()
    assert reader.get(session.id).entry_count == 2
    reader.close()


def test_a_role_that_may_only_read_opens_the_store_and_says_it_cannot_write(
    pg_url: str, postgres_dsn: str
) -> None:
    """Opening an up-to-date store only reads, so a role with SELECT alone opens it."""
    store = open_store(pg_url)
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("hello"))
    store.close()
    schema = pg_url.rsplit("schema=", 1)[1]
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    try:
        host = postgres_dsn.split("@", 1)[1]
        reader = open_store(with_schema(f"postgresql://{role}@{host}", schema))
        assert [e.text for e in reader.history(session.id).entries] == ["hello"]
        with pytest.raises(StoreReadOnly, match="may not write"):
            reader.append(session.id, Message.user("x"))
        reader.close()
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


def test_a_server_that_went_away_is_store_unavailable_not_busy(own_postgres: Any) -> None:
    store = open_store(with_schema(own_postgres.dsn, "gone") + "&pool_timeout=2")
    session = store.get_or_create("agent:main:main")
    own_postgres.stop("fast")
    for call in (
        lambda: store.get(session.id),
        lambda: store.append(session.id, Message.user("x")),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert not isinstance(caught.value, StoreBusy)
    store.close()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda dsn: dsn.rsplit("/", 1)[0] + "/no_such_database", "does not exist"),
        (lambda dsn: dsn.replace("postgres@", "no_such_user@", 1), "does not exist"),
        (lambda dsn: re.sub(r":\d+/", ":1/", dsn), "refused"),
    ],
    ids=["database", "user", "port"],
)
def test_a_wrong_url_fails_at_once_with_the_servers_reason(
    postgres_dsn: str, change: Callable[[str], str], reason: str
) -> None:
    url = change(postgres_dsn)
    with pytest.raises(StoreUnavailable, match=reason) as caught:
        open_store(url)
    assert str(caught.value).count(reason) == 1  # said once


def test_a_search_never_waits_for_a_writer(pg_url: str, postgres_dsn: str) -> None:
    """A transaction holding the session's row lock and uncommitted entries does not
    hold up a search, which finds every committed entry and none of the others."""
    store = open_store(pg_url)
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(f"sanderling {n}") for n in range(30)])
    schema = pg_url.rsplit("schema=", 1)[1]
    with psycopg.connect(postgres_dsn) as writer:
        writer.execute(f'SET search_path TO "{schema}"')
        writer.execute("SELECT 1 FROM sessions FOR UPDATE")
        writer.execute("SET lock_timeout = '10s'")
        writer.execute("DELETE FROM entries")  # uncommitted, and its rows locked
        assert len(store.search("sanderling", limit=100).hits) == 30
        writer.rollback()
    store.close()


def test_a_session_id_another_writer_took_is_session_exists(pg_url: str) -> None:
    """Two writers that both found an id free (an import racing another): the one whose
    insert the server refuses gets `SessionExists` naming the id, as a check before the
    insert would have said, not a generic constraint failure."""
    with open_store(pg_url) as store:
        engine = engine_of(store)
        session = engine.new_session("main", None)
        with engine.backend.write() as tx:
            tx.insert_session(session)
        with pytest.raises(SessionExists) as refused, engine.backend.write() as tx:
            tx.insert_session(session)
        assert refused.value.session_id == session.id
        assert store.get(session.id).id == session.id


def _statements_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements psycopg sends from now on (a spy: the real method runs)."""
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def spy(cursor: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", spy)
    return sent


def test_an_append_to_a_bound_key_is_one_statement_that_finds_the_keys_session(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the adapters append: the statement that appends finds the key's session; a key
    bound to none gets one made first; a reset key's appends go to its new session; a
    handle scoped to another agent is refused, with nothing written."""
    with open_store(pg_url) as store:
        engine = engine_of(store)
        key = engine.key("agent:main:chat")

        sent = _statements_sent(monkeypatch)

        def append(*messages: Message, on: SessionStore = store) -> tuple[int, ...]:
            theirs = engine_of(on)
            sent.clear()
            appended = theirs.run_append(theirs.prepare_append("", messages, key=key))
            statements.append(len(sent))
            session = store.current("agent:main:chat")
            assert session is not None
            assert {e.session_id for e in appended} == {session.id}
            assert store.history(session.id).entries[-len(appended) :] == appended
            return tuple(e.seq for e in appended)

        statements: list[int] = []
        assert append(Message.user("hello")) == (1,)  # made the key's session
        assert statements[-1] > 1
        assert append(Message.user("a"), Message.assistant("b")) == (2, 3)
        assert statements[-1] == 1
        first = store.current("agent:main:chat")
        assert first is not None
        new = store.reset("agent:main:chat")
        assert append(Message.user("again")) == (1,)
        assert statements[-1] == 1
        assert store.current("agent:main:chat") == store.get(new.id)
        with pytest.raises(AccessDenied):
            append(Message.user("not mine"), on=store.for_agent("ops"))
        assert store.get(new.id).entry_count == 1
        assert store.get(first.id).entry_count == 3
        check_invariants(store)


def test_an_append_to_a_key_too_big_for_one_statement_finds_the_session_in_a_transaction(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aisopod_session.backends import postgres

    monkeypatch.setattr(postgres, "_ONE_STATEMENT_BYTES", 200)
    with open_store(pg_url) as store:
        engine = engine_of(store)
        key = engine.key("agent:main:big")
        session = store.get_or_create("agent:main:big")
        appended = engine.run_append(
            engine.prepare_append("", [Message.user("x" * 150), Message.user("y" * 150)], key=key)
        )
        assert [(e.session_id, e.seq) for e in appended] == [(session.id, 1), (session.id, 2)]
        assert store.history(session.id).entries == appended
        check_invariants(store)


def test_payloads_read_a_page_at_a_time_are_parsed_as_each_is_taken(pg_url: str) -> None:
    """The adapters' page of payloads comes as the server sent it (parsed by
    `decode_json` one at a time); parsed, each is the payload as written, as other
    reads give it."""
    with open_store(pg_url) as store:
        session = store.get_or_create("agent:main:main")
        store.append(
            session.id,
            [
                Message.user("plain"),
                NewEntry("custom", {"customType": "n", "data": {"big": 1e16, "neg": -0.0}}),
                NewEntry("custom", {"customType": "s", "data": "a string"}),
            ],
        )
        engine = engine_of(store)
        sid = store.get(session.id)
        with engine.backend.read_statement() as tx:
            rows = tx.stored_path_payloads(engine.sid(tx, session.id), 1, 3)
            assert all(type(stored) is bytes for _, _, stored, _ in rows)
            parsed = [tx.decode_json(stored) for _, _, stored, _ in rows]
            # What psycopg has parsed already passes as it is (a JSON string included).
            assert tx.decode_json("a string") == "a string"
            assert tx.decode_json({"a": 1}) == {"a": 1}
        assert parsed == [e.payload for e in store.history(sid.id).entries]
        assert parsed[1]["data"] == {"big": 1e16, "neg": -0.0}


def test_only_sessions_with_a_user_are_indexed_by_user(pg_url: str) -> None:
    """As on SQLite: an append moves its session in every index holding it, and a
    session without a user is not in the by-user index, which still answers reads of
    a user's sessions."""
    store = open_store(pg_url)
    with_user = store.get_or_create("agent:main:a", user_id="ada")
    without = store.get_or_create("agent:main:b")
    store.append(without.id, Message.user("no user here"))
    schema = urlsplit(pg_url).query.rsplit("schema=", 1)[1]
    with psycopg.connect(pg_url.split("?")[0], autocommit=True) as raw:
        raw.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        (definition,) = raw.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s"
            " AND indexname = 'sessions_by_user'",
            (schema,),
        ).fetchone() or ("",)
        raw.execute("SET enable_seqscan = off")
        plan = raw.execute(
            "EXPLAIN SELECT sid FROM sessions WHERE agent_id = %s AND user_id = %s"
            " ORDER BY updated_at DESC, sid DESC",
            ("main", "ada"),
        ).fetchall()
    assert definition.endswith("WHERE (user_id IS NOT NULL)")
    assert "sessions_by_user" in str(plan)
    assert [s.id for s in store.list(user_id="ada").sessions] == [with_user.id]
    store.close()
