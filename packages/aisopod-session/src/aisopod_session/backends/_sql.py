"""The SQL both backends share, and the protocol the store talks to.

Backends know SQL; nothing above them does. Statements here are written once
with `?` placeholders; each backend's `SqlTx` subclass runs them on its
driver (PostgreSQL rewrites the placeholders) and supplies what differs:
row locks, JSON columns, full-text search.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime, timedelta
from typing import Any, Final, NamedTuple, Protocol, TypeAlias

import attrs

from aisopod_session._entries import PreparedEntry
from aisopod_session._ids import entry_id
from aisopod_session._model import (
    AgentStats,
    DailyUsage,
    Entry,
    ForkRef,
    Origin,
    Session,
    role_name,
)
from aisopod_session._search import Clause, SearchHit
from aisopod_shared import TokenUsage, converter, dumps, from_micros, loads, to_micros

__all__ = [
    "append_deltas",
    "append_update",
    "entry_rows",
    "ENTRY_INSERT_COLUMNS",
    "appended_to",
    "may_append",
    "search_hit",
    "BoundSession",
    "MaintenanceRow",
    "PayloadRow",
    "SessionRef",
    "SessionState",
    "StateEdit",
    "StateOwner",
    "SearchFilter",
    "AppendTarget",
    "Appended",
    "SESSION_COLUMNS",
    "Backend",
    "ListFilter",
    "SessionRecord",
    "SqlTx",
    "WouldWait",
]


SESSION_COLUMNS = (
    "sid, id, agent_id, key, status, title, created_at, updated_at, active_at, entry_count,"
    " message_count, compaction_count, compacted_at, input_tokens, output_tokens,"
    " cache_read_tokens, cache_write_tokens, total_tokens, cost, size_bytes, metadata, origin,"
    " fork_parent_id, fork_parent_seq, leaf_seq, version, user_id"
)
_ENTRY_COLUMNS = (
    "seq, id, parent_seq, type, role, payload, text, input_tokens, output_tokens,"
    " cache_read_tokens, cache_write_tokens, total_tokens, cost, created_at, idempotency_key,"
    " tokens"
)


@attrs.frozen
class SessionRecord:
    """A session as stored: its internal row id beside the public value."""

    sid: int
    session: Session


class AppendTarget(NamedTuple):
    """The columns of a session an append reads."""

    sid: int
    agent_id: str
    version: int
    entry_count: int
    leaf_seq: int
    state_since_snapshot: int = 0
    user_id: str | None = None


class Appended(NamedTuple):
    """What `SqlTx.append_entries` did."""

    target: AppendTarget
    """The session as it was before."""
    ids: list[str]
    """The appended entries' ids (empty when nothing was appended)."""
    parents: list[int | None]
    """The appended entries' parents: the first hangs from the leaf, each next
    one from the one before."""
    owner: StateOwner | None = None
    """After a state edit: the changes since the last snapshot, and the owners."""
    session_id: str = ""
    """The session's id (as given, or of the session bound to the key given)."""


class StateEdit(NamedTuple):
    """Keys of the state kept at a session's leaf to set (their JSON) and remove."""

    sets: Mapping[str, bytes]
    removes: Sequence[str]


class SessionState(NamedTuple):
    """A session's state at its leaf, and what its shared scopes belong to."""

    state: dict[str, Any]
    since_snapshot: int
    agent_id: str
    user_id: str | None


class StateOwner(NamedTuple):
    """Changes since a session's last state snapshot, and whom its shared scopes
    belong to."""

    since_snapshot: int
    agent_id: str
    user_id: str | None


class SessionRef(NamedTuple):
    """A session's internal id and agent: what a read needs to check before it reads."""

    sid: int
    agent_id: str


class BoundSession(NamedTuple):
    """What a read of a key's conversation needs of the session bound to the key."""

    sid: int
    id: str
    agent_id: str
    leaf_seq: int
    compaction_count: int


PayloadRow: TypeAlias = tuple[int, str, Any]
"""An entry as a read of payloads alone needs it, (seq, type, payload): no `Entry` is
built."""

PathPayloadRow: TypeAlias = tuple[int, str, Any, "int | None"]
"""A `PayloadRow` with the entry's parent seq: (seq, type, payload, parent_seq)."""


class MaintenanceRow(NamedTuple):
    """A session as retention sees it."""

    sid: int
    id: str
    agent_id: str
    key: str | None
    status: str
    active_at: int
    size_bytes: int
    current: bool
    """Whether it is its key's current session."""
    state_bytes: int
    """The bytes of its state at the leaf."""


@attrs.frozen
class SearchFilter:
    """What a search is restricted to (besides its query)."""

    agent_id: str | None = None
    key_prefix: str | None = None
    roles: tuple[str, ...] | None = None
    """A message's role, or the type of a non-message entry (`_model.stored_forms`)."""
    session_id: str | None = None
    created_after: int | None = None
    created_before: int | None = None

    def sql(self) -> tuple[str, list[Any]]:
        """` AND ...` conditions on `e` (entries) and `s` (sessions), and their parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("s.agent_id = ?", self.agent_id),
            ("s.id = ?", self.session_id),
            ("e.created_at > ?", self.created_after),
            ("e.created_at < ?", self.created_before),
        ):
            if value is not None:
                clauses.append(column)
                params.append(value)
        if self.roles:
            clauses.append(f"coalesce(e.role, e.type) IN ({', '.join('?' * len(self.roles))})")
            params.extend(self.roles)
        if self.key_prefix is not None:
            clauses.append("substr(s.key, 1, ?) = ?")
            params.extend((len(self.key_prefix), self.key_prefix))
        return "".join(f" AND {c}" for c in clauses), params


def search_hit(row: Sequence[Any], rank: float) -> SearchHit:
    """A hit from a row of session id, agent id, key, seq, entry id, role (else the
    entry type), created_at (micros) and snippet, with its rank (higher is better)."""
    return SearchHit(
        session_id=row[0],
        agent_id=row[1],
        key=row[2],
        seq=row[3],
        entry_id=row[4],
        role=role_name(row[5], None),
        created_at=from_micros(row[6]),
        snippet=row[7],
        rank=rank,
    )


@attrs.frozen
class ListFilter:
    """Which sessions `list` returns."""

    agent_id: str | None = None
    status: str | None = None
    channel: str | None = None
    key_prefix: str | None = None
    updated_after: int | None = None
    updated_before: int | None = None
    key: str | None = None
    user_id: str | None = None


class WouldWait(Exception):
    """A read run on the calling thread without waiting (`SqliteBackend.inline`) stopped
    where it would have waited, or grown past what such a read may be: nothing was
    changed (it is a read), and the caller runs it on a worker thread instead."""


class Backend(Protocol):
    """A database the store can run transactions on."""

    url: str

    def read(self) -> AbstractContextManager[SqlTx]:
        """A read transaction (a consistent snapshot)."""
        ...

    def write(self) -> AbstractContextManager[SqlTx]:
        """A write transaction: committed on success, rolled back on any error."""
        ...

    def read_statement(self) -> AbstractContextManager[SqlTx]:
        """A read made of one statement, which PostgreSQL runs outside a transaction
        (one round trip instead of three; a statement sees one snapshot anyway);
        SQLite runs it as any read."""
        ...

    def write_append(self) -> AbstractContextManager[SqlTx]:
        """A write made of one `SqlTx.append_entries` call and nothing else, which
        PostgreSQL runs as a single statement outside a transaction (one round trip
        instead of three); SQLite runs it as any write."""
        ...

    def close(self) -> None:
        """Release every connection."""
        ...

    def defer_indexing(self) -> None:
        """From now on, appends made on the calling thread leave the full-text index's
        batches to `index_if_due` (the async store's committer: it answers its appends
        first). A no-op where the index follows each statement (PostgreSQL)."""
        ...

    def index_if_due(self) -> None:
        """Index the entries waiting for the full-text index, in a write transaction of
        its own, if an append on this thread left a batch due (see `defer_indexing`)."""
        ...

    def check_integrity(self) -> list[str]:
        """The database engine's own consistency check: the problems found, if any."""
        ...

    def schema_version(self) -> int:
        """The schema version recorded in the database (0 for a new one)."""
        ...

    def diagnostics(self) -> dict[str, Any]:
        """Settings and facts worth checking (for `doctor`)."""
        ...

    @property
    def migrations(self) -> Sequence[Any]:
        """The migrations this code knows, in order."""
        ...


class SqlTx(abc.ABC):
    """One transaction's worth of the store's SQL."""

    # --- driver seam ------------------------------------------------------------

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return a cursor."""

    @abc.abstractmethod
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for many parameter rows."""

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: rolled back alone if its block raises."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.execute(f"RELEASE SAVEPOINT {name}")

    _savepoints = 0
    """Savepoints opened so far in this transaction (their names must differ)."""

    lock_clause = ""
    """Appended to a SELECT that must lock the rows it reads (PostgreSQL: FOR UPDATE)."""

    jump_predicate = "parent_seq IS NOT seq - 1"
    """True for entries that do not hang from the entry just before them (a partial index)."""

    json_param = "?"
    """The placeholder of a JSON column (PostgreSQL casts to json)."""

    @abc.abstractmethod
    def search(
        self,
        clauses: Sequence[Clause],
        where: SearchFilter,
        *,
        limit: int,
        offset: int,
        highlight: tuple[str, str],
    ) -> list[SearchHit]:
        """Entries whose text matches every clause, best first (the engine's full-text index)."""

    @abc.abstractmethod
    def decode_json(self, value: Any) -> Any:
        """A JSON column's value as Python data (SQLite keeps text and parses it;
        psycopg decodes json columns itself, so there a `str` is a JSON string)."""

    # --- sessions ---------------------------------------------------------------

    def session_by_id(self, session_id: str, *, lock: bool = False) -> SessionRecord | None:
        row = self.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
            + (self.lock_clause if lock else ""),
            (session_id,),
        ).fetchone()
        return self._session(row) if row is not None else None

    def append_target(self, session_id: str) -> AppendTarget | None:
        """What an append needs to know of a session, with the row locked."""
        row = self.execute(
            "SELECT sid, agent_id, version, entry_count, leaf_seq, state_since_snapshot, user_id"
            " FROM sessions WHERE id = ?" + self.lock_clause,
            (session_id,),
        ).fetchone()
        return AppendTarget(*row) if row is not None else None

    def key_append_target(self, agent_id: str, key: str) -> tuple[str, AppendTarget] | None:
        """The id of the session bound to `(agent_id, key)` and what an append needs to
        know of it, with its row locked (the binding is read, not locked), in one
        statement."""
        lock = f"{self.lock_clause} OF s" if self.lock_clause else ""
        row = self.execute(
            "SELECT s.id, s.sid, s.agent_id, s.version, s.entry_count, s.leaf_seq,"
            " s.state_since_snapshot, s.user_id FROM bindings b JOIN sessions s ON s.sid = b.sid"
            " WHERE b.agent_id = ? AND b.key = ?" + lock,
            (agent_id, key),
        ).fetchone()
        return (str(row[0]), AppendTarget(*row[1:])) if row is not None else None

    def session_ref(self, session_id: str) -> SessionRef | None:
        """A session's internal id and agent, for reads that need no more of it."""
        row = self.execute(
            "SELECT sid, agent_id FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        return SessionRef(int(row[0]), str(row[1])) if row is not None else None

    def session_by_sid(self, sid: int, *, lock: bool = False) -> SessionRecord | None:
        row = self.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE sid = ?"
            + (self.lock_clause if lock else ""),
            (sid,),
        ).fetchone()
        return self._session(row) if row is not None else None

    def insert_session(self, session: Session) -> int:
        """Insert a new session row; return its internal id."""
        usage = session.usage
        fork = session.fork_parent
        row = self.execute(
            "INSERT INTO sessions (id, agent_id, key, status, title, created_at, updated_at,"
            " active_at, entry_count, message_count, compaction_count, compacted_at,"
            " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, total_tokens,"
            " cost, size_bytes, metadata, origin, channel, fork_parent_id, fork_parent_seq,"
            " leaf_seq, version, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            f" ?, ?, ?, {self.json_param}, {self.json_param}, ?, ?, ?, ?, ?, ?) RETURNING sid",
            (
                session.id,
                session.agent_id,
                session.key,
                session.status,
                session.title,
                to_micros(session.created_at),
                to_micros(session.updated_at),
                to_micros(session.active_at),
                session.entry_count,
                session.message_count,
                session.compaction_count,
                to_micros(session.compacted_at) if session.compacted_at else None,
                usage.input,
                usage.output,
                usage.cache_read,
                usage.cache_write,
                usage.total,
                usage.cost,
                session.size_bytes,
                dumps(dict(session.metadata), field="metadata").decode(),
                _origin_json(session.origin),
                # Listing by channel matches channel names as keys do: trimmed, any case.
                session.origin.channel.strip().lower() if session.origin.channel else None,
                fork.session_id if fork else None,
                fork.seq if fork else None,
                session.leaf_seq,
                session.version,
                session.user_id,
            ),
        ).fetchone()
        return int(row[0])

    def append_entries(
        self,
        session_id: str,
        entries: Sequence[PreparedEntry],
        *,
        suffixes: Sequence[str],
        agent_id: str | None,
        expected_version: int | None,
        idempotency_key: str | None,
        now: int,
        state: StateEdit | None = None,
        key: tuple[str, str] | None = None,
    ) -> Appended | None:
        """Append `entries` to a session: lock it, move its counters, usage totals,
        size, leaf and version (and, given `state`, edit its kept state), and insert
        the entries from seq `entry_count + 1`, the first hanging from the leaf
        (None when there is no such session). Given `key` (agent, stored key), the
        session is the one bound to it, whose id the result carries (None when the
        key is bound to none), and `session_id` is not read.

        Nothing is appended when the session belongs to another agent than
        `agent_id` or its version is not `expected_version` (either given); the
        caller sees that in the returned target and raises, which rolls back
        whatever was done. Generated ids are `entry_id(seq, suffix)`.
        """
        if key is not None:
            found = self.key_append_target(*key)
            if found is None:
                return None
            session_id, target = found
        else:
            by_id = self.append_target(session_id)
            if by_id is None:
                return None
            target = by_id
        if not may_append(target, agent_id, expected_version):
            return Appended(target, [], [], session_id=session_id)
        count = len(entries)
        deltas = append_deltas(entries, target.entry_count + count, now)
        edit = self.state_edit(state) if state is not None else None
        owner = None
        if edit is not None:
            # The state edit rides on the append's own update of the row (whose
            # count of changes and owners the target read already).
            self.execute(
                append_update() + edit[0] + " WHERE sid = ?", (*deltas, *edit[1], target.sid)
            )
            owner = StateOwner(target.state_since_snapshot + 1, target.agent_id, target.user_id)
        else:
            self.execute(append_update() + " WHERE sid = ?", (*deltas, target.sid))
            if state is not None:
                owner = self.change_session_state(target.sid, state.sets, state.removes)
        appended = appended_to(target, entries, suffixes, session_id)._replace(owner=owner)
        self.insert_entries(
            target.sid,
            entries,
            ids=appended.ids,
            first_seq=target.entry_count + 1,
            parents=appended.parents,
            idempotency_key=idempotency_key,
        )
        return appended

    def update_session(self, sid: int, *, now: int, **fields: Any) -> None:
        """Set some of a session's columns, bump its version and `updated_at`."""
        assignments = ["updated_at = ?", "version = version + 1"]
        params: list[Any] = [now]
        for column, value in fields.items():
            if column not in _UPDATABLE:
                raise ValueError(f"not an updatable session column: {column}")
            if column == "metadata":
                assignments.append(f"metadata = {self.json_param}")
                params.append(dumps(value, field="metadata").decode())
            else:
                assignments.append(f"{column} = ?")
                params.append(value)
        params.append(sid)
        self.execute(f"UPDATE sessions SET {', '.join(assignments)} WHERE sid = ?", params)

    def delete_session(self, sid: int) -> None:
        """Remove a session, its entries and any binding to it."""
        self.execute("DELETE FROM bindings WHERE sid = ?", (sid,))
        self.execute("DELETE FROM state_snapshots WHERE sid = ?", (sid,))
        self.execute("DELETE FROM entries WHERE sid = ?", (sid,))
        self.execute("DELETE FROM sessions WHERE sid = ?", (sid,))

    def list_sessions(
        self,
        where: ListFilter,
        *,
        limit: int,
        after: tuple[int, int] | None,
        before: tuple[int, int] | None = None,
    ) -> list[SessionRecord]:
        """Sessions matching `where`, most recently updated first: the first `limit`
        after a keyset (`updated_at`, `sid`), or the last `limit` before one."""
        clauses: list[str] = []
        params: list[Any] = []
        if where.agent_id is not None:
            clauses.append("agent_id = ?")
            params.append(where.agent_id)
        if where.status is not None:
            clauses.append("status = ?")
            params.append(where.status)
        if where.channel is not None:
            clauses.append("channel = ?")
            params.append(where.channel)
        if where.key is not None:
            clauses.append("key = ?")
            params.append(where.key)
        if where.user_id is not None:
            clauses.append("user_id = ?")
            params.append(where.user_id)
        if where.key_prefix is not None:
            clauses.append("substr(key, 1, ?) = ?")
            params.extend((len(where.key_prefix), where.key_prefix))
        if where.updated_after is not None:
            clauses.append("updated_at > ?")
            params.append(where.updated_after)
        if where.updated_before is not None:
            clauses.append("updated_at < ?")
            params.append(where.updated_before)
        if after is not None:
            clauses.append("(updated_at < ? OR (updated_at = ? AND sid < ?))")
            params.extend((after[0], after[0], after[1]))
        if before is not None:
            # Backwards: the comparison and the order turn round, so the index
            # walks from the keyset towards the newest; the rows turn back below.
            clauses.append("(updated_at > ? OR (updated_at = ? AND sid > ?))")
            params.extend((before[0], before[0], before[1]))
        sql = f"SELECT {SESSION_COLUMNS} FROM sessions"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        order = "ASC" if before is not None else "DESC"
        sql += f" ORDER BY updated_at {order}, sid {order} LIMIT ?"
        params.append(limit)
        records = [self._session(row) for row in self.execute(sql, params).fetchall()]
        if before is not None:
            records.reverse()
        return records

    def largest_sessions(
        self, agent_id: str | None, updated_after: int | None, limit: int
    ) -> list[SessionRecord]:
        """The `limit` sessions with the most tokens (then the most bytes), of one
        agent or any, updated after `updated_after` when given. No index orders by
        tokens: the database reads the matching rows once and keeps the top `limit`."""
        clauses: list[str] = []
        params: list[Any] = []
        if agent_id is not None:
            clauses.append("agent_id = ?")
            params.append(agent_id)
        if updated_after is not None:
            clauses.append("updated_at > ?")
            params.append(updated_after)
        sql = f"SELECT {SESSION_COLUMNS} FROM sessions"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY total_tokens DESC, size_bytes DESC, sid DESC LIMIT ?"
        params.append(limit)
        return [self._session(row) for row in self.execute(sql, params).fetchall()]

    def forks_of(self, session_id: str, agent_id: str | None, limit: int) -> list[SessionRecord]:
        """The sessions forked from `session_id` (of one agent, or any), the newest
        `limit` first (by `sessions_by_fork_parent`)."""
        sql = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE fork_parent_id = ?"
        params: list[Any] = [session_id]
        if agent_id is not None:
            sql += " AND agent_id = ?"
            params.append(agent_id)
        sql += " ORDER BY created_at DESC, sid DESC LIMIT ?"
        params.append(limit)
        return [self._session(row) for row in self.execute(sql, params).fetchall()]

    def agent_stats(self, agent_id: str | None) -> list[AgentStats]:
        """Per agent: sessions, active sessions, entries, messages, tokens, cost, bytes."""
        sql = (
            "SELECT agent_id, count(*), sum(CASE WHEN status = 'active' THEN 1 ELSE 0 END),"
            " sum(entry_count), sum(message_count), sum(total_tokens), sum(cost),"
            " sum(size_bytes) FROM sessions"
        )
        params: tuple[Any, ...] = ()
        if agent_id is not None:
            sql += " WHERE agent_id = ?"
            params = (agent_id,)
        return [
            AgentStats(
                str(row[0]),
                int(row[1]),
                int(row[2] or 0),
                int(row[3] or 0),
                int(row[4] or 0),
                int(row[5] or 0),
                float(row[6] or 0.0),
                int(row[7] or 0),
            )
            for row in self.execute(sql + " GROUP BY agent_id ORDER BY agent_id", params)
        ]

    def usage_by_day(self, agent_id: str | None, since: int, until: int) -> list[DailyUsage]:
        """Per agent per day (UTC): total tokens, cost and count of the entries with
        usage made in `since <= created_at < until`, by day then agent.

        Only sessions updated since `since` can hold such entries (an append moves
        `updated_at` to its entries' time), found by the `updated_at` indexes; their
        entries are read by session. Entries a fork copied (older than the fork)
        were counted in their own session and are left out."""
        sql = (
            f"SELECT s.agent_id, e.created_at / {_MICROS_PER_DAY} AS day,"
            " sum(coalesce(e.total_tokens, 0)), sum(coalesce(e.cost, 0)), count(*)"
            " FROM sessions s JOIN entries e ON e.sid = s.sid"
            " WHERE s.updated_at >= ? AND e.created_at >= ? AND e.created_at < ?"
            " AND (e.total_tokens IS NOT NULL OR e.cost IS NOT NULL)"
            " AND (s.fork_parent_id IS NULL OR e.created_at >= s.created_at)"
        )
        params: list[Any] = [since, since, until]
        if agent_id is not None:
            sql += " AND s.agent_id = ?"
            params.append(agent_id)
        sql += " GROUP BY s.agent_id, day ORDER BY day, s.agent_id"
        return [
            DailyUsage(
                str(row[0]),
                _EPOCH_DAY + timedelta(days=int(row[1])),
                int(row[2] or 0),
                float(row[3] or 0.0),
                int(row[4]),
            )
            for row in self.execute(sql, params).fetchall()
        ]

    def maintenance_rows(self, agent_id: str | None) -> list[MaintenanceRow]:
        """Every session (of one agent, or all) with what retention decides by."""
        sql = (
            "SELECT s.sid, s.id, s.agent_id, s.key, s.status, s.active_at, s.size_bytes,"
            f" b.sid IS NOT NULL, {self.json_bytes('s.state')}"
            " FROM sessions s LEFT JOIN bindings b ON b.sid = s.sid"
        )
        params: tuple[Any, ...] = ()
        if agent_id is not None:
            sql += " WHERE s.agent_id = ?"
            params = (agent_id,)
        return [
            MaintenanceRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), int(r[8]))
            for r in self.execute(sql, params)
        ]

    def shared_state_bytes(self, agent_id: str | None) -> int:
        """The bytes of `user:` and `agent:` state (of one agent, or all)."""
        where, params = (" WHERE agent_id = ?", (agent_id,)) if agent_id is not None else ("", ())
        row = self.execute(
            f"SELECT (SELECT coalesce(sum({self.json_bytes('value')}), 0) FROM user_state{where})"
            f" + (SELECT coalesce(sum({self.json_bytes('value')}), 0) FROM agent_state{where})",
            params * 2,
        ).fetchone()
        return int(row[0])

    def json_bytes(self, column: str) -> str:
        """SQL for the bytes of a JSON column's text."""
        return f"length(CAST({column} AS BLOB))"

    def json_differs(self, left: str, right: str) -> str:
        """SQL that is true when two JSON columns' texts differ."""
        return f"{left} IS NOT {right}"

    # --- bindings ---------------------------------------------------------------

    def binding(self, agent_id: str, key: str, *, lock: bool = False) -> int | None:
        """The internal id of the session bound to `(agent_id, key)`."""
        row = self.execute(
            "SELECT sid FROM bindings WHERE agent_id = ? AND key = ?"
            + (self.lock_clause if lock else ""),
            (agent_id, key),
        ).fetchone()
        return int(row[0]) if row is not None else None

    def bound_session(self, agent_id: str, key: str) -> BoundSession | None:
        """The session bound to `(agent_id, key)`, in the statement that finds the binding."""
        row = self.execute(
            "SELECT s.sid, s.id, s.agent_id, s.leaf_seq, s.compaction_count"
            " FROM bindings b JOIN sessions s ON s.sid = b.sid"
            " WHERE b.agent_id = ? AND b.key = ?",
            (agent_id, key),
        ).fetchone()
        return BoundSession(*row) if row is not None else None

    def bind_if_unbound(self, agent_id: str, key: str, sid: int, now: int) -> bool:
        """Bind the key to `sid` unless it is bound already; whether this call bound it."""
        cursor = self.execute(
            "INSERT INTO bindings (agent_id, key, sid, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (agent_id, key) DO NOTHING",
            (agent_id, key, sid, now),
        )
        return bool(cursor.rowcount == 1)

    def rebind(self, agent_id: str, key: str, sid: int, now: int) -> None:
        """Point the key at `sid`, whatever it pointed at before."""
        self.execute(
            "INSERT INTO bindings (agent_id, key, sid, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (agent_id, key) DO UPDATE SET sid = excluded.sid,"
            " updated_at = excluded.updated_at",
            (agent_id, key, sid, now),
        )

    def lock_bindings_of(self, sid: int) -> None:
        """Lock the binding pointing at `sid`, if any (before locking the session)."""
        self.execute("SELECT agent_id FROM bindings WHERE sid = ?" + self.lock_clause, (sid,))

    def is_bound(self, sid: int) -> bool:
        """Whether some key's current session is `sid`."""
        row = self.execute("SELECT 1 FROM bindings WHERE sid = ?", (sid,)).fetchone()
        return row is not None

    # --- entries ----------------------------------------------------------------

    def insert_entries(
        self,
        sid: int,
        entries: Sequence[PreparedEntry],
        *,
        ids: Sequence[str],
        first_seq: int,
        parents: Sequence[int | None],
        idempotency_key: str | Sequence[str | None] | None,
    ) -> None:
        """Insert entries with the given seqs (from `first_seq`), ids and parents.

        `idempotency_key` is one key for the whole batch (an append) or one per
        entry (a copy of a session).
        """
        rows = entry_rows(
            sid,
            entries,
            ids=ids,
            first_seq=first_seq,
            parents=parents,
            idempotency_key=idempotency_key,
        )
        self.insert_rows(rows, len(entries))

    def insert_rows(self, rows: Iterator[tuple[Any, ...]], count: int) -> None:
        """Insert `count` rows of `entry_rows`, the driver's best way (PostgreSQL sends
        many by COPY)."""
        values = f"(?, ?, ?, ?, ?, ?, {self.json_param}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        sql = f"INSERT INTO entries ({ENTRY_INSERT_COLUMNS}) VALUES "
        if count <= _FEW_ROWS:
            # A few rows (a turn, a message with its state change): one statement,
            # cheaper than executemany, and its cursor knows the last row.
            cursor = self.execute(
                sql + ", ".join([values] * count), [v for row in rows for v in row]
            )
            self.entries_inserted(count, cursor)
        else:
            self.executemany(sql + values, rows)
            self.entries_inserted(count)

    @abc.abstractmethod
    def entries_inserted(self, count: int, cursor: Any = None) -> None:
        """This transaction's last statement (run on `cursor`, when given) inserted
        `count` entries: the full-text index follows, when the engine does not do it
        itself (PostgreSQL's generated column does; SQLite indexes a batch at a time)."""

    def entries_by_idempotency_key(self, session_id: str, key: str) -> list[Entry]:
        """The entries an earlier append with this idempotency key wrote."""
        rows = self.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries"
            " WHERE sid = (SELECT sid FROM sessions WHERE id = ?) AND idempotency_key = ?"
            " ORDER BY seq",
            (session_id, key),
        ).fetchall()
        return self._entries(session_id, rows)

    def entries_page(
        self,
        session_id: str,
        agent_id: str | None,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int,
    ) -> tuple[list[Entry], bool]:
        """Up to `limit` entries of a session (of agent `agent_id`, when given),
        chronological: the last ones before `before`, or the first ones after
        `after`; and whether more lie beyond them. One statement, a keyset read on
        (sid, seq), never OFFSET; no entries when there is no such session."""
        session = (
            "sid = (SELECT sid FROM sessions WHERE id = ?"
            " AND (CAST(? AS TEXT) IS NULL OR agent_id = ?))"
        )
        if after is not None:
            rows = self.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM entries"
                f" WHERE {session} AND seq > ? ORDER BY seq LIMIT ?",
                (session_id, agent_id, agent_id, after, limit + 1),
            ).fetchall()
            return self._entries(session_id, rows[:limit]), len(rows) > limit
        rows = self.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries"
            f" WHERE {session} AND seq < ? ORDER BY seq DESC LIMIT ?",
            (session_id, agent_id, agent_id, before if before is not None else 2**62, limit + 1),
        ).fetchall()
        # The one row past the page only says that there is more: no entry is built for it.
        page = self._entries(session_id, rows[:limit][::-1])
        return page, len(rows) > limit

    def entries_by_seq(self, sid: int, session_id: str, seqs: Sequence[int]) -> list[Entry]:
        """The entries with these seqs, in seq order."""
        if not seqs:
            return []
        marks = ", ".join("?" * len(seqs))
        rows = self.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries WHERE sid = ? AND seq IN ({marks}) ORDER BY seq",
            (sid, *seqs),
        ).fetchall()
        return self._entries(session_id, rows)

    def seq_of_id(self, sid: int, entry_id: str) -> int | None:
        row = self.execute(
            "SELECT seq FROM entries WHERE sid = ? AND id = ?", (sid, entry_id)
        ).fetchone()
        return int(row[0]) if row is not None else None

    def entry_ids(self, sid: int, seqs: Sequence[int]) -> dict[int, str]:
        """The ids of the entries with these seqs."""
        if not seqs:
            return {}
        marks = ", ".join("?" * len(seqs))
        rows = self.execute(
            f"SELECT seq, id FROM entries WHERE sid = ? AND seq IN ({marks})",
            (sid, *seqs),
        ).fetchall()
        return {int(seq): str(entry_id) for seq, entry_id in rows}

    def segment_start(self, sid: int, seq: int) -> tuple[int, int | None]:
        """The start of the straight run of entries that ends at `seq`.

        Entries mostly hang from the entry just before them; the exceptions
        ("jumps": roots, and the first entry of each branch) are indexed, so a
        walk from a leaf to the root costs one lookup per branch point it
        crosses, not one per entry. Returns (first seq of the run, its parent).
        """
        row = self.execute(
            "SELECT seq, parent_seq FROM entries WHERE sid = ? AND seq <= ? AND "
            f"{self.jump_predicate} ORDER BY seq DESC LIMIT 1",
            (sid, seq),
        ).fetchone()
        if row is None:  # pragma: no cover - seq 1 is always a jump
            return 1, None
        return int(row[0]), row[1]

    def jumps(self, sid: int) -> list[tuple[int, int | None]]:
        """Every entry that does not hang from the entry just before it, as (seq, parent)."""
        rows = self.execute(
            f"SELECT seq, parent_seq FROM entries WHERE sid = ? AND {self.jump_predicate}"
            " ORDER BY seq",
            (sid,),
        ).fetchall()
        return [(int(seq), parent) for seq, parent in rows]

    def compactions_before(self, sid: int, at_most: int, limit: int) -> list[int]:
        """Seqs of compaction entries at or before `at_most`, newest first (a partial index)."""
        rows = self.execute(
            "SELECT seq FROM entries WHERE sid = ? AND type = 'compaction' AND seq <= ?"
            " ORDER BY seq DESC LIMIT ?",
            (sid, at_most, limit),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def settings_before(self, sid: int, at_most: int, limit: int) -> list[tuple[int, str]]:
        """(seq, type) of model and thinking-level changes at or before `at_most`, newest
        first (a partial index)."""
        rows = self.execute(
            "SELECT seq, type FROM entries WHERE sid = ?"
            " AND type IN ('model_change', 'thinking_level_change') AND seq <= ?"
            " ORDER BY seq DESC LIMIT ?",
            (sid, at_most, limit),
        ).fetchall()
        return [(int(seq), str(kind)) for seq, kind in rows]

    def parent_of(self, sid: int, seq: int) -> int | None:
        """The parent seq of entry `seq` (None for a root or a missing entry)."""
        row = self.execute(
            "SELECT parent_seq FROM entries WHERE sid = ? AND seq = ?", (sid, seq)
        ).fetchone()
        return row[0] if row is not None else None

    def tokens_between(self, sid: int, first: int, last: int) -> list[tuple[int, int]]:
        """(seq, tokens) of the entries `first..last`, newest first."""
        rows = self.execute(
            "SELECT seq, tokens FROM entries WHERE sid = ? AND seq BETWEEN ? AND ?"
            " ORDER BY seq DESC",
            (sid, first, last),
        ).fetchall()
        return [(int(seq), int(tokens)) for seq, tokens in rows]

    def entries_between(self, sid: int, session_id: str, first: int, last: int) -> list[Entry]:
        """The entries `first..last`, in seq order."""
        rows = self.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM entries"
            " WHERE sid = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (sid, first, last),
        ).fetchall()
        return self._entries(session_id, rows)

    def payloads_between(self, sid: int, first: int, last: int) -> list[PayloadRow]:
        """(seq, type, payload) of the entries `first..last`, in seq order: for reads
        that want payloads and nothing else of an entry (the adapters')."""
        decode = self.decode_json
        # Plain tuples: this runs for every entry an adapter reads.
        return [
            (seq, kind, decode(payload))
            for seq, kind, payload, _ in self.stored_path_payloads(sid, first, last)
        ]

    def stored_path_payloads(
        self, sid: int, first: int, last: int, kinds: Collection[str] | None = None
    ) -> list[PathPayloadRow]:
        """(seq, type, payload, parent_seq) of the entries `first..last`, in seq order,
        each payload as the driver gives it (`decode_json` reads it, so a reader that
        decodes one at a time keeps only what it takes of each). With the parents, a
        reader walking a path back from its leaf sees where it jumps from the rows
        themselves, without looking up the start of each straight run on its own.
        With `kinds`, only the entries of those types, and those where the path jumps
        (whose parent is not the entry before): the jumps of the others too."""
        sql = (
            "SELECT seq, type, payload, parent_seq FROM entries"
            " WHERE sid = ? AND seq BETWEEN ? AND ?"
        )
        params: list[Any] = [sid, first, last]
        if kinds is not None:
            wanted = sorted(kinds)
            sql += (
                " AND (parent_seq IS NULL OR parent_seq <> seq - 1"
                + "".join(" OR type = ?" for _ in wanted)
                + ")"
            )
            params += wanted
        rows: list[PathPayloadRow] = self.execute(sql + " ORDER BY seq", params).fetchall()
        return rows

    def copy_range(self, source: int, target: int, first: int, last: int, new_first: int) -> None:
        """Copy entries `first..last` of one session to another as a straight run from
        `new_first` (each entry's parent the one before it), payloads untouched."""
        offset = first - new_first
        self.execute(
            "INSERT INTO entries (sid, seq, id, parent_seq, type, role, payload, text, tokens,"
            " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, total_tokens,"
            " cost, created_at) SELECT ?, seq - ?, id, CASE WHEN seq - ? = 1 THEN NULL"
            " ELSE seq - ? - 1 END, type, role, payload, text, tokens, input_tokens,"
            " output_tokens, cache_read_tokens, cache_write_tokens, total_tokens, cost,"
            " created_at FROM entries WHERE sid = ? AND seq BETWEEN ? AND ? ORDER BY seq",
            (target, offset, offset, offset, source, first, last),
        )
        self.entries_inserted(last - first + 1)

    def restore_state(
        self, sid: int, *, leaf_seq: int, version: int, updated_at: int, active_at: int
    ) -> None:
        """Set what a copied session had: its leaf, version and times."""
        self.execute(
            "UPDATE sessions SET leaf_seq = ?, version = ?, updated_at = ?, active_at = ?"
            " WHERE sid = ?",
            (leaf_seq, version, updated_at, active_at, sid),
        )

    def sessions_after(self, sid: int, limit: int, agent_id: str | None) -> list[SessionRecord]:
        """Sessions in the order they were stored, after internal id `sid` (for streaming)."""
        where = "sid > ?" + (" AND agent_id = ?" if agent_id is not None else "")
        params: tuple[Any, ...] = (sid, agent_id, limit) if agent_id is not None else (sid, limit)
        rows = self.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE {where} ORDER BY sid LIMIT ?", params
        ).fetchall()
        return [self._session(row) for row in rows]

    def recount(self, sid: int, now: int) -> None:
        """Set a session's counters, usage totals, size and leaf from its entries."""
        self.execute(
            "UPDATE sessions SET (entry_count, message_count, compaction_count, compacted_at,"
            " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, total_tokens,"
            " cost, size_bytes, leaf_seq) = (SELECT count(*),"
            " count(*) FILTER (WHERE type = 'message'),"
            " count(*) FILTER (WHERE type = 'compaction'),"
            " max(created_at) FILTER (WHERE type = 'compaction'),"
            " coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
            " coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0),"
            " coalesce(sum(total_tokens), 0), coalesce(sum(cost), 0),"
            f" coalesce(sum({self.size_expression}), 0), coalesce(max(seq), 0)"
            " FROM entries WHERE sid = ?), updated_at = ?, version = version + 1 WHERE sid = ?",
            (sid, now, sid),
        )

    size_expression = "length(CAST(payload AS BLOB)) + length(text)"
    """SQL for the bytes an entry adds to its session's size (as `PreparedEntry.size`)."""

    # --- state -----------------------------------------------------------------

    def session_state(self, sid: int) -> SessionState:
        """A session's state at its leaf, the changes since the last snapshot on the
        leaf's path, and whom its `user:` and `agent:` keys belong to."""
        row = self.execute(
            "SELECT state, state_since_snapshot, agent_id, user_id FROM sessions WHERE sid = ?",
            (sid,),
        ).fetchone()
        return SessionState(self.decode_json(row[0]), int(row[1]), str(row[2]), row[3])

    def change_session_state(
        self, sid: int, sets: Mapping[str, bytes], removes: Sequence[str]
    ) -> StateOwner:
        """Set (JSON) and remove keys of the state kept at a session's leaf, and count
        one more change since the last snapshot; the count after, and the owners."""
        current = self.session_state(sid)
        state = current.state
        for key, value in sets.items():
            state[key] = loads(value)
        for key in removes:
            state.pop(key, None)
        since = current.since_snapshot + 1
        self.set_session_state(sid, dumps(state, field="state"), since)
        return StateOwner(since, current.agent_id, current.user_id)

    def state_edit(self, state: StateEdit) -> tuple[str, list[Any]] | None:
        """`, state = ...` assignments (and their parameters) that edit the kept state
        in SQL, counting the change; `None` where only Python can (the default)."""
        return None

    def state_owner(self, sid: int) -> StateOwner:
        """Whom a session's `user:` and `agent:` keys belong to."""
        row = self.execute(
            "SELECT state_since_snapshot, agent_id, user_id FROM sessions WHERE sid = ?", (sid,)
        ).fetchone()
        return StateOwner(int(row[0]), str(row[1]), row[2])

    def set_session_state(self, sid: int, state: bytes, since_snapshot: int) -> None:
        """Keep `state` (JSON) as the state at the session's leaf."""
        self.execute(
            f"UPDATE sessions SET state = {self.json_param}, state_since_snapshot = ?"
            " WHERE sid = ?",
            (state.decode(), since_snapshot, sid),
        )

    def add_state_snapshot(self, sid: int, seq: int, state: bytes) -> None:
        """Keep the state at entry `seq` (JSON), to fold later changes onto."""
        self.execute(
            f"INSERT INTO state_snapshots (sid, seq, state) VALUES (?, ?, {self.json_param})"
            " ON CONFLICT (sid, seq) DO UPDATE SET state = excluded.state",
            (sid, seq, state.decode()),
        )

    def state_snapshots_before(self, sid: int, at_most: int, limit: int) -> list[int]:
        """Seqs of the snapshots at or before `at_most`, newest first."""
        rows = self.execute(
            "SELECT seq FROM state_snapshots WHERE sid = ? AND seq <= ? ORDER BY seq DESC LIMIT ?",
            (sid, at_most, limit),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def state_snapshot(self, sid: int, seq: int) -> dict[str, Any]:
        row = self.execute(
            "SELECT state FROM state_snapshots WHERE sid = ? AND seq = ?", (sid, seq)
        ).fetchone()
        return dict(self.decode_json(row[0])) if row is not None else {}

    def state_changes_between(self, sid: int, first: int, last: int) -> list[tuple[int, Any]]:
        """(seq, payload) of the `state` entries `first..last`, in seq order (a partial
        index)."""
        rows = self.execute(
            "SELECT seq, payload FROM entries WHERE sid = ? AND type = 'state'"
            " AND seq BETWEEN ? AND ? ORDER BY seq",
            (sid, first, last),
        ).fetchall()
        return [(int(row[0]), self.decode_json(row[1])) for row in rows]

    def shared_state(self, table: str, agent_id: str, user_id: str | None) -> dict[str, Any]:
        """One agent's `agent_state`, or one user's `user_state` of that agent."""
        if table == "user_state":
            rows = self.execute(
                "SELECT key, value FROM user_state WHERE agent_id = ? AND user_id = ? ORDER BY key",
                (agent_id, user_id),
            ).fetchall()
        else:
            rows = self.execute(
                "SELECT key, value FROM agent_state WHERE agent_id = ? ORDER BY key",
                (agent_id,),
            ).fetchall()
        return {str(key): self.decode_json(value) for key, value in rows}

    def change_shared_state(
        self,
        table: str,
        agent_id: str,
        user_id: str | None,
        changes: Mapping[str, bytes | None],
        now: int,
    ) -> None:
        """Set (JSON) or remove (`None`) keys of a shared scope, in key order (so two
        writers lock the rows they share in one order)."""
        owner: tuple[str, tuple[str | None, ...]] = (
            ("agent_id = ? AND user_id = ?", (agent_id, user_id))
            if table == "user_state"
            else ("agent_id = ?", (agent_id,))
        )
        columns = "agent_id, user_id, key" if table == "user_state" else "agent_id, key"
        for key in sorted(changes):
            value = changes[key]
            if value is None:
                self.execute(f"DELETE FROM {table} WHERE {owner[0]} AND key = ?", (*owner[1], key))
                continue
            marks = "?, ?, ?" if table == "user_state" else "?, ?"
            self.execute(
                f"INSERT INTO {table} ({columns}, value, updated_at)"
                f" VALUES ({marks}, {self.json_param}, ?) ON CONFLICT ({columns})"
                " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
                # The same value again changes nothing (and writes no page).
                f" WHERE {self.json_differs(f'{table}.value', 'excluded.value')}",
                (*owner[1], key, value.decode(), now),
            )

    def shared_state_page(
        self, table: str, agent_id: str | None, after: tuple[str, ...], limit: int
    ) -> list[tuple[Any, ...]]:
        """A page of a shared scope's rows, in key order, after the row `after` (its
        key columns; empty for the first page): (agent, user, key, value) for
        `user_state`, (agent, key, value) for `agent_state`, values decoded."""
        columns = ("agent_id", "user_id", "key") if table == "user_state" else ("agent_id", "key")
        where: list[str] = []
        params: list[Any] = []
        if agent_id is not None:
            where.append("agent_id = ?")
            params.append(agent_id)
        if after:
            where.append(f"({', '.join(columns)}) > ({', '.join('?' * len(columns))})")
            params.extend(after)
        rows = self.execute(
            f"SELECT {', '.join(columns)}, value FROM {table}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY {', '.join(columns)} LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [(*row[:-1], self.decode_json(row[-1])) for row in rows]

    # --- row decoding -----------------------------------------------------------

    def _session(self, row: Sequence[Any]) -> SessionRecord:
        origin = self.decode_json(row[21])
        return SessionRecord(
            sid=int(row[0]),
            session=Session(
                id=row[1],
                agent_id=row[2],
                key=row[3],
                status=row[4],
                title=row[5],
                created_at=from_micros(row[6]),
                updated_at=from_micros(row[7]),
                active_at=from_micros(row[8]),
                entry_count=row[9],
                message_count=row[10],
                compaction_count=row[11],
                compacted_at=from_micros(row[12]) if row[12] is not None else None,
                usage=TokenUsage.trusted(row[13], row[14], row[15], row[16], row[17], row[18]),
                size_bytes=row[19],
                metadata=self.decode_json(row[20]),
                origin=converter.structure(origin, Origin),
                fork_parent=ForkRef(row[22], row[23]) if row[22] is not None else None,
                leaf_seq=row[24],
                version=row[25],
                user_id=row[26],
            ),
        )

    def _entries(self, session_id: str, rows: Sequence[Sequence[Any]]) -> list[Entry]:
        """Entries from rows of `_ENTRY_COLUMNS`, in the rows' order."""
        entries = []
        decode = self.decode_json
        instants: dict[int, datetime] = {}
        for row in rows:
            usage = (
                TokenUsage.trusted(row[7], row[8], row[9], row[10], row[11], row[12])
                if row[7] is not None
                else None
            )
            # The entries of one append share their instant: one datetime serves them
            # all (datetimes are immutable).
            created = instants.get(row[13])
            if created is None:
                created = instants[row[13]] = from_micros(row[13])
            # Positional, in Entry's field order: reads build many, and keywords cost a third more.
            entries.append(
                Entry(
                    session_id,
                    row[0],
                    row[1],
                    row[2],
                    row[3],
                    row[4],
                    decode(row[5]),
                    row[6] or "",
                    usage,
                    created,
                    row[14],
                    row[15],
                )
            )
        return entries


ENTRY_INSERT_COLUMNS: Final = (
    "sid, seq, id, parent_seq, type, role, payload, text, tokens, input_tokens, output_tokens,"
    " cache_read_tokens, cache_write_tokens, total_tokens, cost, created_at, idempotency_key"
)
"""The columns `entry_rows` gives, in its order."""


def entry_rows(
    sid: int,
    entries: Sequence[PreparedEntry],
    *,
    ids: Sequence[str],
    first_seq: int,
    parents: Sequence[int | None],
    idempotency_key: str | Sequence[str | None] | None,
) -> Iterator[tuple[Any, ...]]:
    """The rows `insert_entries` writes, one per entry, in `ENTRY_INSERT_COLUMNS` order.

    A generator: the driver takes each row as it is made, and a thousand rows
    never live at once for the garbage collector to walk.
    """
    keys = (
        [idempotency_key] * len(entries)
        if idempotency_key is None or isinstance(idempotency_key, str)
        else idempotency_key
    )
    return (
        (
            sid,
            first_seq + offset,
            given_id,
            parent,
            entry.type,
            entry.role,
            entry.payload.decode(),
            entry.text,
            entry.tokens,
            *_usage_columns(entry.usage),
            entry.created_at,
            key,
        )
        for offset, (entry, given_id, parent, key) in enumerate(
            zip(entries, ids, parents, keys, strict=True)
        )
    )


def append_update(*, alias: str = "", leaf_seq: str = "?") -> str:
    """The UPDATE of a session's row for an append (without its WHERE): counters,
    usage totals and size move by the deltas `append_deltas` gives, in its order,
    the leaf becomes `leaf_seq` (SQL; `?` takes it from the deltas), `updated_at`
    and `active_at` become the append's time, and the version moves on.

    `alias` names the table (`AS s`) for a statement that joins other rows.
    """
    table = f"sessions AS {alias}" if alias else "sessions"
    return (
        f"UPDATE {table} SET entry_count = entry_count + ?,"
        " message_count = message_count + ?, compaction_count = compaction_count + ?,"
        " compacted_at = CASE WHEN ? > 0 THEN ? ELSE compacted_at END,"
        " input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
        " cache_read_tokens = cache_read_tokens + ?,"
        " cache_write_tokens = cache_write_tokens + ?, total_tokens = total_tokens + ?,"
        f" cost = cost + ?, size_bytes = size_bytes + ?, leaf_seq = {leaf_seq},"
        " updated_at = ?, active_at = ?, version = version + 1"
    )


def append_deltas(entries: Sequence[PreparedEntry], leaf_seq: int, now: int) -> tuple[Any, ...]:
    """The parameters of `append_update`, in its order."""
    # Plain sums: this runs on every append, inside the write lock.
    counts = [0, 0, 0, 0, 0]
    cost = 0.0
    messages = compactions = size = 0
    for entry in entries:
        size += entry.size
        if entry.type == "message":
            messages += 1
        elif entry.type == "compaction":
            compactions += 1
        usage = entry.usage
        if usage is not None:
            counts[0] += usage.input
            counts[1] += usage.output
            counts[2] += usage.cache_read
            counts[3] += usage.cache_write
            counts[4] += usage.total
            cost += usage.cost
    return (
        len(entries),
        messages,
        compactions,
        compactions,
        now,
        *counts,
        cost,
        size,
        leaf_seq,
        now,
        now,
    )


def appended_to(
    target: AppendTarget, entries: Sequence[PreparedEntry], suffixes: Sequence[str], session_id: str
) -> Appended:
    """`entries` appended to `target` (the session `session_id`, as it was): their ids
    (generated where none was given) and parents."""
    first = target.entry_count + 1
    ids = [
        p.id if p.id is not None else entry_id(first + n, suffixes[n])
        for n, p in enumerate(entries)
    ]
    parents = [target.leaf_seq or None, *range(first, first + len(entries) - 1)]
    return Appended(target, ids, parents, session_id=session_id)


def may_append(target: AppendTarget, agent_id: str | None, expected_version: int | None) -> bool:
    """Whether an append of agent `agent_id` (when given) expecting `expected_version`
    (when given) may go to `target`."""
    return (agent_id is None or target.agent_id == agent_id) and (
        expected_version is None or target.version == expected_version
    )


_MICROS_PER_DAY: Final = 86_400_000_000
_EPOCH_DAY: Final = date(1970, 1, 1)
_NO_USAGE = (None,) * 6
_FEW_ROWS: Final = 16
"""Entries inserted by one multi-row statement; more go through executemany."""


def _usage_columns(usage: TokenUsage | None) -> tuple[Any, ...]:
    """An entry's input, output, cache read, cache write, total tokens and cost columns."""
    if usage is None:
        return _NO_USAGE
    return (usage.input, usage.output, usage.cache_read, usage.cache_write, usage.total, usage.cost)


_UPDATABLE = frozenset({"title", "metadata", "status", "leaf_seq", "key", "user_id"})


def _origin_json(origin: Origin) -> str:
    return dumps(converter.unstructure(origin, Origin), field="origin").decode()
