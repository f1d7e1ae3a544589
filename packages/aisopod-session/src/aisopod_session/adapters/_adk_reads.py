"""The rows the ADK session service reads, each in one statement.

ADK asks for a session with its state (`get_session`) and for the sessions of
an app or of one of its users with theirs (`list_sessions`), on every turn and
every page load. Each read here is one statement that returns only the
columns ADK needs, found through an index: a key's binding for one session,
`sessions_by_user` (or `sessions_by_agent`) for a listing, the primary keys of
the shared state tables for `app:` and `user:` state. No typed session is
built on the way.

`AtOnce` makes the smallest of them on the event loop's own thread when SQLite
can answer without waiting, rather than handing them to a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

import attrs

from aisopod_session._async import AsyncSessionStore
from aisopod_session._engine import Engine
from aisopod_session._errors import AisopodError
from aisopod_session._store import engine_of
from aisopod_session.backends._sql import BoundSession, SqlTx
from aisopod_session.backends.sqlite import SqliteBackend

__all__ = [
    "AtOnce",
    "NotNow",
    "ListedRow",
    "SessionRow",
    "listed_rows",
    "session_row",
    "shared_rows",
]

T = TypeVar("T")


class NotNow(Exception):
    """`AtOnce` cannot make this read at once: it goes to a worker thread."""


class AtOnce:
    """Small reads of a SQLite file (listings, user state, a window of recent events)
    made on the calling thread, the event loop's, rather than on a worker thread. The
    hand-off there and back costs about as much as such a read (60 µs on a quiet
    two-core machine, several times that on a busy one, against 30-80 µs for a
    listing), and most of a window's time is the Python work of making ADK's
    objects, which holds the interpreter on a worker thread as well: the loop would
    not run meanwhile anyway.

    Why the event loop never waits here: the reads go through read-only
    connections of their own (one per thread) whose busy timeout is zero, so
    where SQLite would wait for a lock (recovery after a crash, another process
    holding the file in exclusive mode) it says so at once, and the read goes
    to a worker thread instead. In WAL mode a reader takes no lock a writer
    holds: the group committer's commits and fsyncs never hold it up. No lock
    of this process is waited on (the backend's registry lock is held only
    while a thread opens or closes a connection). PostgreSQL (a network round
    trip) and a store in memory (one connection, shared under a lock) always
    use the worker threads.
    """

    def __init__(self, store: AsyncSessionStore) -> None:
        self._store = store
        self._engine: Engine | None = None
        engine = engine_of(store.sync)
        self._backend = backend = engine.backend
        if not isinstance(backend, SqliteBackend) or backend.path is None:
            return
        try:
            reader = SqliteBackend(backend.path, read_only=True, busy_timeout=0, migrate=False)
        except AisopodError:
            return  # the file is busy right now, say: every read uses the worker threads
        self._engine = attrs.evolve(engine, backend=reader)

    def read(self, work: Callable[[Engine], T]) -> T:
        """`work(engine)`, made on this thread.

        Raises:
            NotNow: when it cannot be made at once (the database is busy, the store
                is closed, or it is not a SQLite file). A read that fails is left to
                the worker threads too: their answer (or error) is the store's.
        """
        engine = self._engine
        if engine is None or _closed(self._store, self._backend):
            raise NotNow
        try:
            return work(engine)
        except AisopodError as err:
            raise NotNow from err

    def close(self) -> None:
        """Close this thread's and every other thread's read connections."""
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.backend.close()


def _closed(store: AsyncSessionStore, backend: object) -> bool:
    """Whether the store refuses work: its worker threads stopped, or its database
    closed. Neither says so but by refusing a call, so their flags are read here."""
    return bool(store._workers._closed or getattr(backend, "_closed", False))


class SessionRow(NamedTuple):
    """A key's current session as ADK sees it."""

    bound: BoundSession
    """What the tail read (`_tail.read_tail`) needs."""
    version: int
    updated_at: int
    """Microseconds since the epoch: ADK's `last_update_time`."""
    user_id: str | None
    state: dict[str, Any]
    """The session's own state at its leaf."""


class ListedRow(NamedTuple):
    """A session of a listing."""

    key: str
    id: str
    user_id: str
    version: int
    updated_at: int
    state: dict[str, Any]


def session_row(tx: SqlTx, agent_id: str, key: str) -> SessionRow | None:
    """The session bound to `(agent_id, key)`, with its version, time, user and state."""
    row = tx.execute(
        "SELECT s.sid, s.id, s.agent_id, s.leaf_seq, s.compaction_count, s.version,"
        " s.updated_at, s.user_id, s.state"
        " FROM bindings b JOIN sessions s ON s.sid = b.sid"
        " WHERE b.agent_id = ? AND b.key = ?",
        (agent_id, key),
    ).fetchone()
    if row is None:
        return None
    return SessionRow(
        BoundSession(int(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4])),
        int(row[5]),
        int(row[6]),
        row[7],
        dict(tx.decode_json(row[8])),
    )


def listed_rows(
    tx: SqlTx, agent_id: str, key_prefix: str, user_id: str | None
) -> Iterator[ListedRow]:
    """The sessions of `agent_id` (of one user, given `user_id`) whose key starts with
    `key_prefix` and is bound to them, archived ones left out; in no order."""
    sql = (
        "SELECT s.key, s.id, s.user_id, s.version, s.updated_at, s.state FROM sessions s"
        " WHERE s.agent_id = ?"
    )
    params: list[Any] = [agent_id]
    if user_id is not None:
        sql += " AND s.user_id = ?"
        params.append(user_id)
    sql += (
        " AND s.user_id IS NOT NULL AND s.status <> 'archived' AND substr(s.key, 1, ?) = ?"
        " AND EXISTS (SELECT 1 FROM bindings b"
        " WHERE b.agent_id = s.agent_id AND b.key = s.key AND b.sid = s.sid)"
    )
    params.extend((len(key_prefix), key_prefix))
    for row in tx.execute(sql, params).fetchall():
        yield ListedRow(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            int(row[3]),
            int(row[4]),
            dict(tx.decode_json(row[5])),
        )


def shared_rows(
    tx: SqlTx, agent_id: str, user_id: str | None, *, agent: bool = True
) -> Iterator[tuple[str, str | None, str, Any]]:
    """The agent's shared state (unless not `agent`) and its users' (one user's, given
    `user_id`), as (`agent` or `user`, user id, key, value)."""
    parts: list[str] = []
    params: list[Any] = []
    if agent:
        parts.append("SELECT 'agent', NULL, key, value FROM agent_state WHERE agent_id = ?")
        params.append(agent_id)
    user_sql = "SELECT 'user', user_id, key, value FROM user_state WHERE agent_id = ?"
    params.append(agent_id)
    if user_id is not None:
        user_sql += " AND user_id = ?"
        params.append(user_id)
    parts.append(user_sql)
    for scope, user, key, value in tx.execute(" UNION ALL ".join(parts), params).fetchall():
        yield str(scope), user, str(key), tx.decode_json(value)
