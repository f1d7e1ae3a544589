"""The embedded default: one SQLite file (stdlib `sqlite3`).

WAL journal, `foreign_keys=ON`, a busy timeout, `BEGIN IMMEDIATE` for writes
(so a transaction never has to upgrade its lock and fail), a new file created
with mode 0600 in a folder made 0700. Within a process, writers queue on a
lock rather than spinning on SQLITE_BUSY; between processes the busy timeout
does the waiting, and a lock that outlasts it becomes `StoreBusy`.
"""

from __future__ import annotations

import enum
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote

import orjson

from aisopod_session._errors import (
    AisopodError,
    DuplicateEntryId,
    SchemaVersionError,
    StoreBusy,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from aisopod_session._search import Clause, SearchHit, Term
from aisopod_session.backends._migrations import Migration, apply_migrations
from aisopod_session.backends._sql import (
    SearchFilter,
    SqlTx,
    StateEdit,
    StateOwner,
    WouldWait,
    search_hit,
)
from aisopod_shared import logger

__all__ = ["LATER", "MIGRATIONS", "SqliteBackend", "SqliteTx", "Synchronous", "at_once"]

Synchronous = Literal["FULL", "NORMAL"]

_TOKENIZER: Final = "unicode61 remove_diacritics 2"
"""How FTS5 splits and folds text: words in any script, accents folded."""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        "sessions, bindings and entries",
        (
            """CREATE TABLE sessions (
                sid INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                agent_id TEXT NOT NULL,
                key TEXT,
                status TEXT NOT NULL CHECK (status IN ('active', 'idle', 'archived')),
                title TEXT,
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL,
                active_at INTEGER NOT NULL,
                entry_count INTEGER NOT NULL DEFAULT 0,
                message_count INTEGER NOT NULL DEFAULT 0,
                compaction_count INTEGER NOT NULL DEFAULT 0,
                compacted_at INTEGER,
                input_tokens INTEGER NOT NULL DEFAULT 0,
                output_tokens INTEGER NOT NULL DEFAULT 0,
                cache_read_tokens INTEGER NOT NULL DEFAULT 0,
                cache_write_tokens INTEGER NOT NULL DEFAULT 0,
                total_tokens INTEGER NOT NULL DEFAULT 0,
                cost REAL NOT NULL DEFAULT 0,
                size_bytes INTEGER NOT NULL DEFAULT 0,
                metadata TEXT NOT NULL DEFAULT '{}',
                origin TEXT NOT NULL DEFAULT '{}',
                channel TEXT,
                fork_parent_id TEXT,
                fork_parent_seq INTEGER,
                leaf_seq INTEGER NOT NULL DEFAULT 0,
                version INTEGER NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX sessions_by_updated ON sessions (updated_at, sid)",
            "CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at, sid)",
            "CREATE INDEX sessions_by_agent_status ON sessions (agent_id, status, updated_at, sid)",
            "CREATE INDEX sessions_by_key ON sessions (agent_id, key, created_at)",
            """CREATE TABLE bindings (
                agent_id TEXT NOT NULL,
                key TEXT NOT NULL,
                sid INTEGER NOT NULL UNIQUE REFERENCES sessions (sid),
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (agent_id, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE entries (
                row_id INTEGER PRIMARY KEY,
                sid INTEGER NOT NULL REFERENCES sessions (sid),
                seq INTEGER NOT NULL,
                id TEXT NOT NULL,
                parent_seq INTEGER,
                type TEXT NOT NULL,
                role TEXT,
                payload TEXT NOT NULL,
                text TEXT NOT NULL DEFAULT '',
                tokens INTEGER NOT NULL DEFAULT 0,
                input_tokens INTEGER,
                output_tokens INTEGER,
                cache_read_tokens INTEGER,
                cache_write_tokens INTEGER,
                total_tokens INTEGER,
                cost REAL,
                created_at INTEGER NOT NULL,
                idempotency_key TEXT,
                UNIQUE (sid, seq)
            )""",
            "CREATE UNIQUE INDEX entries_by_id ON entries (sid, id)",
            "CREATE INDEX entries_jumps ON entries (sid, seq) WHERE parent_seq IS NOT seq - 1",
            "CREATE INDEX entries_compactions ON entries (sid, seq) WHERE type = 'compaction'",
            "CREATE INDEX entries_settings ON entries (sid, seq)"
            " WHERE type IN ('model_change', 'thinking_level_change')",
            "CREATE INDEX entries_by_idempotency_key ON entries (sid, idempotency_key)"
            " WHERE idempotency_key IS NOT NULL",
        ),
    ),
    Migration(
        "full-text search (FTS5) over entry text",
        (
            # External content: the text lives once, in `entries`; entries are
            # never updated, so inserts and deletes are all the index follows.
            "CREATE VIRTUAL TABLE entries_fts USING fts5(text, content='entries',"
            f" content_rowid='row_id', tokenize={_TOKENIZER!r})",
            "CREATE TRIGGER entries_fts_insert AFTER INSERT ON entries WHEN new.text != ''"
            " BEGIN INSERT INTO entries_fts (rowid, text) VALUES (new.row_id, new.text); END",
            "CREATE TRIGGER entries_fts_delete AFTER DELETE ON entries WHEN old.text != ''"
            " BEGIN INSERT INTO entries_fts (entries_fts, rowid, text)"
            " VALUES ('delete', old.row_id, old.text); END",
            "INSERT INTO entries_fts (rowid, text) SELECT row_id, text FROM entries"
            " WHERE text != ''",
        ),
    ),
    Migration(
        "index new entries a batch at a time, not by a per-row trigger",
        # The store indexed each insert with one INSERT ... SELECT: a third of
        # the cost of firing a trigger for every row (migration 4 goes further:
        # a batch every INDEX_BATCH rows). Deletes still go through a trigger.
        ("DROP TRIGGER IF EXISTS entries_fts_insert",),
    ),
    Migration(
        "index new entries behind a watermark, a few hundred at a time",
        # Every FTS5 transaction writes a new index segment: indexing each
        # append on its own cost more than the rest of the append, fsync
        # aside. Entries up to `indexed_through` (a row id) are in the index;
        # appends index the rows past it each time a row id crosses a multiple
        # of INDEX_BATCH, and a search first indexes whatever waits.
        (
            "CREATE TABLE search_state (indexed_through INTEGER NOT NULL)",
            "INSERT INTO search_state SELECT coalesce(max(row_id), 0) FROM entries",
            "DROP TRIGGER entries_fts_delete",
            # One trigger, in this order: the index forgets a row only if it
            # holds it, and then the watermark comes down to the highest row
            # left, so that a new row (max + 1) is never taken for indexed.
            "CREATE TRIGGER entries_deleted AFTER DELETE ON entries BEGIN"
            " INSERT INTO entries_fts (entries_fts, rowid, text)"
            " SELECT 'delete', old.row_id, old.text WHERE old.text != ''"
            " AND old.row_id <= (SELECT indexed_through FROM search_state);"
            " UPDATE search_state SET indexed_through ="
            " (SELECT coalesce(max(row_id), 0) FROM entries)"
            " WHERE indexed_through > (SELECT coalesce(max(row_id), 0) FROM entries); END",
        ),
    ),
    # PostgreSQL's version 5 keeps JSON text as written; TEXT columns always have.
    Migration("JSON columns keep their text as written", ()),
    Migration(
        "state: a session's user, its state at the leaf, snapshots, user and agent state",
        (
            "ALTER TABLE sessions ADD COLUMN user_id TEXT",
            "ALTER TABLE sessions ADD COLUMN state TEXT NOT NULL DEFAULT '{}'",
            "ALTER TABLE sessions ADD COLUMN state_since_snapshot INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX sessions_by_user ON sessions (agent_id, user_id, updated_at, sid)",
            # Covering: the changes between two snapshots are read from a few index
            # pages, not one table page each (they lie a hundred entries apart).
            "CREATE INDEX entries_state ON entries (sid, seq, payload) WHERE type = 'state'",
            """CREATE TABLE state_snapshots (
                sid INTEGER NOT NULL REFERENCES sessions (sid),
                seq INTEGER NOT NULL,
                state TEXT NOT NULL,
                PRIMARY KEY (sid, seq)
            ) WITHOUT ROWID""",
            """CREATE TABLE user_state (
                agent_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (agent_id, user_id, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE agent_state (
                agent_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                updated_at INTEGER NOT NULL,
                PRIMARY KEY (agent_id, key)
            ) WITHOUT ROWID""",
        ),
    ),
    Migration(
        "index sessions by the session they were forked from",
        # `forks` reads a session's children; without it, a scan of every session.
        # Partial: most sessions are not forks, and the column never changes.
        (
            "CREATE INDEX sessions_by_fork_parent ON sessions (fork_parent_id, created_at, sid)"
            " WHERE fork_parent_id IS NOT NULL",
        ),
    ),
    Migration(
        "index by user only the sessions that have one",
        # Every append moves its session's updated_at, so every index holding it
        # rewrites a page: sessions without a user (those the framework adapters
        # make) no longer pay for this one. Reads by user name one (`user_id = ?`),
        # which the partial index answers.
        (
            "DROP INDEX sessions_by_user",
            "CREATE INDEX sessions_by_user ON sessions (agent_id, user_id, updated_at, sid)"
            " WHERE user_id IS NOT NULL",
        ),
    ),
)

INLINE_BYTES: Final = 128 * 1024
"""The most payload bytes a read run inline (`SqliteBackend.inline`) parses, and the
longest value it reads: a few hundred typical entries."""
INLINE_STEPS: Final = 10_000
"""The most steps of SQLite's virtual machine a read run inline takes (a 50-entry
page takes about a thousand)."""
_STEPS_PER_CHECK: Final = 500

INDEX_BATCH: Final = 256
"""Appends index pending entries when a row id crosses a multiple of this."""

_INDEX_PENDING = (
    "INSERT INTO entries_fts (rowid, text) SELECT row_id, text FROM entries"
    " WHERE row_id > (SELECT indexed_through FROM search_state) AND text != ''"
    # A process still running the code from before the watermark indexes its
    # appends itself: never index a row twice.
    " AND row_id NOT IN (SELECT id FROM entries_fts_docsize"
    " WHERE id > (SELECT indexed_through FROM search_state))"
)
_ADVANCE_WATERMARK = (
    "UPDATE search_state SET indexed_through = (SELECT coalesce(max(row_id), 0) FROM entries)"
)


class SqliteTx(SqlTx):
    """The store's SQL on a `sqlite3` connection."""

    def __init__(
        self, connection: sqlite3.Connection, url: str, thread: threading.local | None = None
    ) -> None:
        self._connection = connection
        self._url = url
        # The backend's state of the calling thread: whether it defers indexing
        # (`SqliteBackend.defer_indexing`), and where a due batch is noted.
        self._thread = thread

    def decode_json(self, value: Any) -> Any:
        """A JSON column's value: always text here, written by the store itself, so
        parsed without the checks of `loads` (this runs once per entry read)."""
        return orjson.loads(value)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self._connection.execute(sql, params)
        except sqlite3.Error as err:
            raise _translate(err, self._url) from err

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._connection.executemany(sql, rows)
        except sqlite3.Error as err:
            raise _translate(err, self._url) from err

    def entries_inserted(self, count: int, cursor: Any = None) -> None:
        """Index what waits once the rows just inserted cross a multiple of INDEX_BATCH.

        The rows' ids are consecutive (the write lock is held, and a new row
        id is the highest plus one), so a batch of INDEX_BATCH or more always
        crosses one: imports are indexed in their own transaction.
        """
        last = cursor.lastrowid if cursor is not None else None
        if last is None:  # executemany and INSERT ... SELECT leave the cursor's unset
            last = self._connection.execute("SELECT last_insert_rowid()").fetchone()[0]
        if last // INDEX_BATCH != (last - count) // INDEX_BATCH:
            if self._thread is not None and getattr(self._thread, "defer_index", False):
                self._thread.index_due = True  # for `SqliteBackend.index_if_due`
            else:
                self.index_pending()

    def state_edit(self, state: StateEdit) -> tuple[str, list[Any]] | None:
        """SQLite's JSON functions edit the kept state in place (numbers keep their
        spelling), unless a key holds a character its JSON paths cannot name."""
        if any('"' in key or "\\" in key for key in (*state.sets, *state.removes)):
            return None
        edited = "state"
        params: list[Any] = []
        if state.sets:
            edited = (
                f"json_set({edited}" + ", '$.' || json_quote(?), json(?)" * len(state.sets) + ")"
            )
            for key, value in state.sets.items():
                params += [key, value.decode()]
        if state.removes:
            edited = f"json_remove({edited}" + ", '$.' || json_quote(?)" * len(state.removes) + ")"
            params += state.removes
        return (
            f", state = {edited}, state_since_snapshot = state_since_snapshot + 1",
            params,
        )

    def change_session_state(
        self, sid: int, sets: Mapping[str, bytes], removes: Sequence[str]
    ) -> StateOwner:
        """As the generic one, in one statement where `state_edit` can."""
        edit = self.state_edit(StateEdit(sets, removes))
        if edit is None:
            return super().change_session_state(sid, sets, removes)
        row = self.execute(
            "UPDATE sessions SET " + edit[0].removeprefix(", ") + " WHERE sid = ?"
            " RETURNING state_since_snapshot, agent_id, user_id",
            (*edit[1], sid),
        ).fetchone()
        return StateOwner(int(row[0]), str(row[1]), row[2])

    def index_pending(self) -> None:
        """Add every entry past the watermark to the full-text index, and move it."""
        self.execute(_INDEX_PENDING)
        self.execute(_ADVANCE_WATERMARK)

    def search(
        self,
        clauses: Sequence[Clause],
        where: SearchFilter,
        *,
        limit: int,
        offset: int,
        highlight: tuple[str, str],
    ) -> list[SearchHit]:
        """Hits from the index and, read around it, from the entries still waiting
        for it (indexed here into a temporary in-memory index, never into the file)."""
        query = fts5_query(clauses)
        wanted = offset + limit
        hits = self._hits("entries_fts", query, where, wanted, highlight)
        if self._index_waiting():
            hits += self._hits("temp.waiting_fts", query, where, wanted, highlight)
            hits.sort(key=lambda hit: (hit[0], hit[1]))
        # bm25 is lower for better matches; the store's ranks are higher-is-better.
        return [search_hit(row[2:10], -row[10]) for row in hits[offset:wanted]]

    def _hits(
        self, table: str, query: str, where: SearchFilter, wanted: int, highlight: tuple[str, str]
    ) -> list[Any]:
        """The best `wanted` hits of one full-text table: bm25 and row id first (the
        sort key), then the columns of a `SearchHit`, then bm25 again."""
        fts = table.rsplit(".", 1)[-1]
        conditions, params = where.sql()
        return list(
            self.execute(
                f"SELECT bm25({fts}), e.row_id, s.id, s.agent_id, s.key, e.seq, e.id,"
                " coalesce(e.role, e.type),"
                f" e.created_at, snippet({fts}, 0, ?, ?, '…', 16), bm25({fts})"
                f" FROM {table} JOIN entries e ON e.row_id = {fts}.rowid"
                " JOIN sessions s ON s.sid = e.sid"
                f" WHERE {fts} MATCH ?{conditions} ORDER BY bm25({fts}), e.row_id LIMIT ?",
                (*highlight, query, *params, wanted),
            ).fetchall()
        )

    def _index_waiting(self) -> bool:
        """Put the entries waiting for the full-text index into this connection's
        temporary index (memory: `temp_store`), replacing what it held; whether any wait.

        Writes only to the temporary database, which belongs to this connection:
        a read transaction stays a read, and a read-only file stays untouched.
        """
        self.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.waiting_fts USING fts5(text,"
            f" tokenize={_TOKENIZER!r})"
        )
        self.execute("DELETE FROM temp.waiting_fts")
        cursor = self.execute(
            "INSERT INTO temp.waiting_fts (rowid, text) SELECT row_id, text FROM entries"
            " WHERE row_id > (SELECT indexed_through FROM search_state) AND text != ''"
            # Rows a process on the code from before the watermark indexed itself.
            " AND row_id NOT IN (SELECT id FROM entries_fts_docsize"
            " WHERE id > (SELECT indexed_through FROM search_state))"
        )
        return bool(cursor.rowcount)


def fts5_query(clauses: Sequence[Clause]) -> str:
    """The FTS5 MATCH expression of parsed clauses: every word quoted, so user text
    never meets FTS5's own syntax."""

    def term(t: Term) -> str:
        quoted = '"' + " ".join(w.replace('"', '""') for w in t.words) + '"'
        return quoted + "*" if t.prefix else quoted

    def group(c: Clause) -> str:
        return "(" + " OR ".join(term(t) for t in c.terms) + ")"

    positive = " AND ".join(group(c) for c in clauses if not c.negated)
    negative = [group(c) for c in clauses if c.negated]
    return f"({positive}) NOT ({' OR '.join(negative)})" if negative else positive


class SqliteBackend:
    """A store's database in one SQLite file, or in memory (`path=None`)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        synchronous: Synchronous = "FULL",
        busy_timeout: float = 30.0,
        migrate: bool = True,
        max_pages: int | None = None,
        read_only: bool = False,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        self.path = Path(path).expanduser().absolute() if path is not None else None
        self.url = f"sqlite://{self.path}" if self.path is not None else "sqlite:///:memory:"
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self.max_pages = max_pages
        self.read_only = read_only and self.path is not None
        self._immutable = False
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._inline_connections: dict[threading.Thread, sqlite3.Connection] = {}
        self._registry_lock = threading.Lock()
        # One writer at a time inside this process: threads queue here
        # instead of polling SQLite's lock; other processes are kept out by
        # the database lock and the busy timeout.
        self._write_lock = threading.RLock()
        self._memory: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False
        self.migrations = MIGRATIONS
        if self.path is not None:
            self._open_file(self.path, migrate=migrate)
        elif migrate:
            self._migrate()

    def _open_file(self, path: Path, *, migrate: bool) -> None:
        """Open an existing file without writing to it until it is known to be ours
        and writable, or make a new one.

        A file of another application, or one written by a newer version, is
        refused before anything touches it (no switch to WAL, no migration).
        A file or folder that cannot be written is opened read-only.
        """
        if not path.exists():
            if self.read_only:
                raise StoreUnavailable(f"{self.url}: there is no store here")
            _create_private_file(path)
        elif not self.read_only and not _writable(path):
            logger.info("{} is not writable: opened read-only", path)
            self.read_only = True
        version = self._inspect(path)
        if version > len(MIGRATIONS):
            raise SchemaVersionError(version, len(MIGRATIONS))
        if version < len(MIGRATIONS):
            if self.read_only:
                raise StoreReadOnly(
                    f"{self.url}: the store is read-only and at schema version {version} of"
                    f" {len(MIGRATIONS)}; open it once with write access to upgrade it"
                )
            if migrate:
                self._migrate()

    def _inspect(self, path: Path) -> int:
        """The schema version of the file (0: empty), read without writing a byte.

        Raises:
            StoreUnavailable: when the file holds tables that are not a store's.
        """
        try:
            probe = self._raw_connection(read_only=True)
        except sqlite3.Error as err:
            raise _translate(err, self.url) from err
        try:
            names = {
                str(row[0])
                for row in probe.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                    " AND name NOT LIKE 'sqlite_%'"
                )
            }
            if not names:
                return 0
            record = (
                {str(row[1]) for row in probe.execute("PRAGMA table_info(schema_migrations)")}
                if "schema_migrations" in names
                else set()
            )
            if record == {"version", "name", "applied_at"}:
                (version,) = probe.execute("SELECT max(version) FROM schema_migrations").fetchone()
                if not version or {"sessions", "bindings", "entries"} <= names:
                    return int(version or 0)
        except sqlite3.Error as err:
            raise _translate(err, self.url) from err
        finally:
            probe.close()
        listed = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        raise StoreUnavailable(
            f"{self.url}: not an aisopod-session store (it holds other tables: {listed});"
            " nothing was changed"
        )

    def __repr__(self) -> str:
        return f"SqliteBackend({self.url!r})"

    # --- connections ------------------------------------------------------------

    def _raw_connection(
        self, *, read_only: bool, timeout: float | None = None
    ) -> sqlite3.Connection:
        """A connection to the file (read-only: `mode=ro`, which never writes it;
        `immutable=1` where SQLite cannot even make the -shm file of a WAL store);
        its busy timeout is the store's unless `timeout` is given."""
        timeout = self.busy_timeout if timeout is None else timeout
        if self.path is None:
            return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if not read_only:
            return sqlite3.connect(
                str(self.path),
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        for immutable in (self._immutable, True):
            target = f"file:{quote(str(self.path))}?mode=ro" + ("&immutable=1" if immutable else "")
            connection = sqlite3.connect(
                target,
                uri=True,
                timeout=timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError as err:
                connection.close()
                if immutable or err_code(err) & 0xFF not in _CANNOT_OPEN_READ_ONLY:
                    raise
                # A WAL store whose -shm file nobody can make here (a read-only
                # folder): nothing can be writing it either, so read it as it is.
                self._immutable = True
                continue
            return connection
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = self._raw_connection(read_only=self.read_only)
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA temp_store = MEMORY")
            if not self.read_only:
                connection.execute(f"PRAGMA synchronous = {self.synchronous}")
                if self.max_pages is not None:
                    # A hard cap on the file's size: writes past it fail with
                    # SQLITE_FULL (StoreFull) and change nothing.
                    connection.execute(f"PRAGMA max_page_count = {int(self.max_pages)}")
                if self.path is not None:
                    _retry_busy(self.busy_timeout, lambda: _enable_wal(connection))
        except sqlite3.Error as err:
            raise _translate(err, self.url) from err
        with self._registry_lock:
            self._connections.append(connection)
        return connection

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        if os.getpid() != self._pid:
            # A forked child must not share its parent's connections.
            self._pid = os.getpid()
            self._local = threading.local()
            self._connections = []
            self._inline_connections = {}
            self._memory = None
            self._write_lock = threading.RLock()
            self._registry_lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        self._check_open()
        if self.path is None:
            if self._memory is None:
                self._memory = self._connect()
            return self._memory
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def _inline_connection(self) -> sqlite3.Connection:
        """The calling thread's connection for reads run inline: read-only, a busy
        timeout of zero (SQLite fails at once where it would wait for a lock), no
        value longer than INLINE_BYTES (the `_Inline` block checked the store is open)."""
        connection: sqlite3.Connection | None = getattr(self._local, "inline_connection", None)
        if connection is None:
            connection = self._raw_connection(read_only=True, timeout=0)
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, INLINE_BYTES)
            with self._registry_lock:
                # Event loops may come and go with their threads (a loop per
                # request): the connections of threads that ended are closed.
                ended = [t for t in self._inline_connections if not t.is_alive()]
                for thread in ended:
                    self._inline_connections.pop(thread).close()
                self._inline_connections[threading.current_thread()] = connection
            self._local.inline_connection = connection
        return connection

    def close(self) -> None:
        """Close every connection this backend opened."""
        with self._registry_lock:
            connections, self._connections = self._connections, []
            connections += self._inline_connections.values()
            self._inline_connections = {}
            self._closed = True
        for connection in connections:
            connection.close()

    # --- the full-text index, off the append path --------------------------------

    def defer_indexing(self) -> None:
        """Appends on the calling thread leave a due batch of the full-text index to
        `index_if_due`: the async store's committer indexes after answering its
        appends, while their callers go on, instead of making one of them wait for it
        (searches read what waits either way)."""
        self._local.defer_index = True

    def index_if_due(self) -> None:
        """Index what waits, in a write transaction of its own, if an append on this
        thread left a batch due."""
        if not getattr(self._local, "index_due", False):
            return
        self._local.index_due = False
        with self.write() as tx:
            tx.index_pending()

    # --- transactions -----------------------------------------------------------

    def inline(self) -> _Inline | None:
        """Reads that run on the calling thread without ever waiting, for an event
        loop to run small reads on its own thread (`None` in memory, where readers
        queue with writers): see `_Inline`."""
        return _Inline(self) if self.path is not None else None

    def read(self) -> _Transaction | _InlineRead:
        """A read transaction: one consistent snapshot (WAL lets it run beside a writer)."""
        inline: _Inline | None = getattr(self._local, "inline", None)
        if inline is not None:
            return _InlineRead(inline)
        # An in-memory database is one connection: its readers queue with its writers.
        lock = self._write_lock if self.path is None else None
        return _Transaction(self, "BEGIN", lock)

    def write(self) -> _Transaction:
        """A write transaction, begun IMMEDIATE so it holds the write lock from the start.

        Raises:
            StoreReadOnly: on a store opened read-only (nothing is attempted).
        """
        if self.read_only:
            raise StoreReadOnly(f"{self.url}: the store is read-only")
        if getattr(self._local, "inline", None) is not None:
            raise WouldWait("a write waits for the write lock")  # nothing was attempted
        return _Transaction(self, "BEGIN IMMEDIATE", self._write_lock)

    def write_append(self) -> _Transaction:
        """An append: a write like any other here."""
        return self.write()

    def read_statement(self) -> _Transaction | _InlineRead:
        """A one-statement read: a read like any other here."""
        return self.read()

    # --- schema -----------------------------------------------------------------

    def _migrate(self) -> None:
        with self.write() as tx:
            apply_migrations(tx, MIGRATIONS, integer="INTEGER")

    def check_integrity(self) -> list[str]:
        """`PRAGMA integrity_check`, `foreign_key_check`, and the full-text index held
        against the entries (every entry with text up to the watermark in it, nothing
        else): the problems found (a file too damaged to check is one). Reads only."""
        try:
            return self._integrity_problems()
        except StoreUnavailable as err:
            return [str(err)]

    def _integrity_problems(self) -> list[str]:
        with self.read() as tx:
            problems = [str(row[0]) for row in tx.execute("PRAGMA integrity_check").fetchall()]
            problems = [p for p in problems if p != "ok"]
            for table, rowid, parent, _ in tx.execute("PRAGMA foreign_key_check").fetchall():
                problems.append(f"{table} row {rowid} references a missing {parent} row")
            if problems:
                return problems
            # FTS5 keeps one docsize row per indexed document.
            missing, stray = tx.execute(
                "SELECT (SELECT count(*) FROM entries e WHERE e.text != ''"
                " AND e.row_id <= (SELECT indexed_through FROM search_state)"
                " AND NOT EXISTS (SELECT 1 FROM entries_fts_docsize d WHERE d.id = e.row_id)),"
                " (SELECT count(*) FROM entries_fts_docsize d WHERE NOT EXISTS"
                " (SELECT 1 FROM entries e WHERE e.row_id = d.id AND e.text != ''"
                " AND e.row_id <= (SELECT indexed_through FROM search_state)))"
            ).fetchone()
        if missing:
            problems.append(f"full-text index: {missing} entries are missing from it")
        if stray:
            problems.append(f"full-text index: {stray} entries are in it that should not be")
        return problems

    def schema_version(self) -> int:
        """The schema version recorded in the database (0 for a new one)."""
        with self.read() as tx:
            exists = tx.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'"
            ).fetchone()
            if exists is None:
                return 0
            row = tx.execute("SELECT max(version) FROM schema_migrations").fetchone()
            return int(row[0] or 0)

    def diagnostics(self) -> dict[str, Any]:
        """Settings and facts worth checking: pragmas, sizes, file permissions."""
        facts: dict[str, Any] = {"backend": "sqlite", "url": self.url}
        with self.read() as tx:
            for pragma in (
                "journal_mode",
                "synchronous",
                "foreign_keys",
                "busy_timeout",
                "page_size",
                "page_count",
                "freelist_count",
            ):
                facts[pragma] = tx.execute(f"PRAGMA {pragma}").fetchone()[0]
        facts["sqlite_version"] = sqlite3.sqlite_version
        facts["read_only"] = self.read_only
        if self.path is not None:
            modes = {}
            for path in (
                self.path,
                *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm")),
            ):
                if path.exists():
                    modes[path.name] = oct(path.stat().st_mode & 0o777)
            modes[str(self.path.parent)] = oct(self.path.parent.stat().st_mode & 0o777)
            facts["permissions"] = modes
        return facts


def _enable_wal(connection: sqlite3.Connection) -> None:
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreUnavailable(f"could not switch the database to WAL (it is in {mode} mode)")


def _create_private_file(path: Path) -> None:
    """Create the database file 0600 (its folder 0700 when we make it) before SQLite does.

    SQLite gives its -wal and -shm files the mode of the database file.
    """
    if path.exists():
        return
    try:
        missing = [folder for folder in path.parents if not folder.exists()]
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
    except FileExistsError:
        pass  # another process made it first; it made it the same way
    except OSError as err:
        raise StoreUnavailable(f"cannot create {path}: {err.strerror}") from err


class _Transaction:
    """One transaction on the calling thread's connection, as a context manager.

    A class rather than a generator-based context manager: every append and
    read goes through here, and this costs a third as much per transaction.
    """

    __slots__ = ("_backend", "_begin", "_connection", "_lock")

    def __init__(self, backend: SqliteBackend, begin: str, lock: threading.RLock | None) -> None:
        self._backend = backend
        self._begin = begin
        self._lock = lock

    def __enter__(self) -> SqliteTx:
        backend = self._backend
        if self._lock is not None:
            self._lock.acquire()
        try:
            self._connection = connection = backend._connection()
            started = time.monotonic()
            try:
                connection.execute(self._begin)
            except sqlite3.OperationalError as err:
                if not _is_busy(err):
                    raise
                # The first try waited inside SQLite; retries get what is left.
                left = backend.busy_timeout - (time.monotonic() - started)
                _retry_busy(max(left, 0.0), lambda: connection.execute(self._begin))
        except sqlite3.Error as err:
            self._release()
            raise _translate(err, backend.url) from err
        except BaseException:
            self._release()
            raise
        return SqliteTx(connection, backend.url, backend._local)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            if kind is None:
                try:
                    self._connection.execute("COMMIT")
                except sqlite3.Error as err:
                    _rollback(self._connection)
                    raise _translate(err, self._backend.url) from err
            else:
                _rollback(self._connection)
                if isinstance(error, sqlite3.Error):
                    raise _translate(error, self._backend.url) from error
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()


_T = TypeVar("_T")


class _Later(enum.Enum):
    LATER = "later"


LATER: Final = _Later.LATER
"""What `at_once` returns for a read it could not make on the calling thread."""


def at_once(backend: object, read: Callable[[], _T]) -> _T | Literal[_Later.LATER]:
    """`read()` made on the calling thread without waiting (`SqliteBackend.inline`), or
    `LATER` when it cannot be: the backend is not an SQLite file, or the read would
    wait or grow past the bounds. Nothing was changed then (it is a read): the caller
    makes it on a thread that may wait. Any other error is the read's own."""
    inline = backend.inline() if isinstance(backend, SqliteBackend) else None
    if inline is None:
        return LATER
    try:
        with inline:
            return read()
    except WouldWait:
        return LATER


class _Inline:
    """Reads on the calling thread that never wait and stay small, inside
    `with backend.inline():` (an event loop runs small reads so, on its own thread).

    The block's reads run on a connection of the thread's own that only reads
    and never waits: where SQLite would wait for a lock (another process's
    exclusive lock, a recovery under way), it fails at once. A read also stops
    once it has taken INLINE_STEPS steps of SQLite's virtual machine, met a
    value longer than INLINE_BYTES or parsed INLINE_BYTES of payloads; a write
    is refused before it starts. Each of these raises `WouldWait`, with nothing
    changed, and the caller runs the read on a worker thread instead, where it
    may wait; any other error is the read's own. What is left is what the
    synchronous call does: parsing what it reads, from the operating system's
    page cache or, for pages not in it, the disk.
    """

    __slots__ = ("_backend", "bytes_left", "checks_left")

    def __init__(self, backend: SqliteBackend) -> None:
        self._backend = backend
        self.bytes_left = INLINE_BYTES
        self.checks_left = INLINE_STEPS // _STEPS_PER_CHECK

    def __enter__(self) -> None:
        backend = self._backend
        backend._check_open()  # in a forked child, this thread's state starts afresh first
        backend._local.inline = self

    def __exit__(self, *exc: object) -> None:
        self._backend._local.inline = None

    def connection(self) -> sqlite3.Connection:
        connection = self._backend._inline_connection()
        connection.set_progress_handler(self._step, _STEPS_PER_CHECK)
        return connection

    def _step(self) -> int:
        """SQLite's progress handler: nonzero interrupts the statement (SQLITE_INTERRUPT)."""
        self.checks_left -= 1
        return self.checks_left < 0

    @property
    def url(self) -> str:
        return self._backend.url


class _InlineRead:
    """One read transaction of an `_Inline` block."""

    __slots__ = ("_connection", "_inline")

    def __init__(self, inline: _Inline) -> None:
        self._inline = inline

    def __enter__(self) -> SqliteTx:
        try:
            self._connection = connection = self._inline.connection()
            connection.execute("BEGIN")
        except (sqlite3.Error, AisopodError) as err:
            raise WouldWait(str(err)) from err
        return _InlineTx(connection, self._inline)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            try:
                self._connection.execute("COMMIT")
            except sqlite3.Error as err:
                _rollback(self._connection)
                raise WouldWait(str(err)) from err
            return
        _rollback(self._connection)
        # A database error here (busy, interrupted, a value too long, ...) is one a
        # worker thread may not meet: the read is made again there.
        if isinstance(error, sqlite3.Error) or isinstance(
            getattr(error, "__cause__", None), sqlite3.Error
        ):
            raise WouldWait(str(error)) from error


class _InlineTx(SqliteTx):
    """The statements of an inline read, counting the payload bytes it parses."""

    def __init__(self, connection: sqlite3.Connection, inline: _Inline) -> None:
        super().__init__(connection, inline.url)
        self._inline = inline

    def decode_json(self, value: Any) -> Any:
        inline = self._inline
        inline.bytes_left -= len(value)
        if inline.bytes_left < 0:
            raise WouldWait(f"over {INLINE_BYTES} bytes of payloads")
        return orjson.loads(value)


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the connection is unusable; the transaction is gone either way


def _is_busy(err: sqlite3.Error) -> bool:
    return err_code(err) & 0xFF in _BUSY


def _retry_busy(timeout: float, action: Any) -> Any:
    """Run `action`, retrying while SQLite reports the database busy.

    The busy timeout covers most waits inside SQLite; a few paths (WAL
    recovery, a snapshot that cannot be upgraded) return SQLITE_BUSY at once,
    and those are retried here until the same deadline.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return action()
        except sqlite3.OperationalError as err:
            if not _is_busy(err) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _translate(err: sqlite3.Error, url: str) -> AisopodError:
    """A driver error as the store's typed error, by SQLite's result code (the caller
    chains the original)."""
    text = str(err)
    code = err_code(err) & 0xFF
    if code in _BUSY:
        return StoreBusy(f"{url}: the database stayed locked past the busy timeout ({text})")
    if code == _FULL:
        return StoreFull(f"{url}: no room left in the database ({text})")
    if code in _IO_ERRORS:
        room = _out_of_room(url)
        if room is not None:
            return StoreFull(f"{url}: {room} ({text})")
    if code == _READONLY:
        return StoreReadOnly(f"{url}: the database cannot be written ({text})")
    if code == _NOTADB:
        return StoreUnavailable(f"{url}: the file is not a SQLite database")
    if code == _CORRUPT:
        return StoreUnavailable(f"{url}: the database file is damaged ({text})")
    if code == _CONSTRAINT:
        if "entries.sid, entries.id" in text:
            return DuplicateEntryId("an entry with this id is already in the session", field="id")
        return AisopodError(f"{url}: a constraint failed: {text}")
    return StoreUnavailable(f"{url}: {text}")


# SQLite's primary result codes (the low byte of the extended codes).
_BUSY: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
_READONLY: Final = 8
_CORRUPT: Final = 11
_FULL: Final = 13
_CONSTRAINT: Final = 19
_NOTADB: Final = 26
_CANNOT_OPEN_READ_ONLY: Final = frozenset({8, 14})  # SQLITE_READONLY, SQLITE_CANTOPEN


def _writable(path: Path) -> bool:
    """Whether this process can write the file and what SQLite makes beside it."""
    folder = path.parent
    beside = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    return os.access(path, os.W_OK) and (
        os.access(folder, os.W_OK) or all(os.access(p, os.W_OK) for p in beside)
    )


def err_code(err: sqlite3.Error) -> int:
    """SQLite's extended result code of an error (0 when the driver gave none)."""
    return int(getattr(err, "sqlite_errorcode", 0) or 0)


# SQLITE_IOERR and SQLITE_CANTOPEN: what SQLite reports when a write, or the
# creation of the -wal and -shm files at open, finds no room (it says
# SQLITE_FULL only when a write comes back short).
_IO_ERRORS: Final = frozenset({10, 14})
_LOW_ROOM: Final = 1 << 20  # less free than this, and an I/O error is the disk being full


def _out_of_room(url: str) -> str | None:
    """Why the database file cannot grow, when that explains an I/O error: its
    disk is full, or the process may not write files that large (`ulimit -f`)."""
    path = Path(url.removeprefix("sqlite://"))
    if not path.is_absolute():
        return None  # in memory
    try:
        disk = os.statvfs(path.parent)
    except OSError:
        return None
    free = disk.f_bavail * disk.f_frsize
    if free < _LOW_ROOM:
        return f"the disk holding {path.parent} is full ({free:,} bytes free)"
    try:
        import resource

        cap = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    if cap != resource.RLIM_INFINITY:
        files = [path, path.with_name(path.name + "-wal")]
        largest = max((f.stat().st_size for f in files if f.exists()), default=0)
        if largest + _LOW_ROOM > cap:
            return f"the file size limit of this process (ulimit -f, {cap:,} bytes) is reached"
    return None
