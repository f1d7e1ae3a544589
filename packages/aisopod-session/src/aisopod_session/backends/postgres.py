"""PostgreSQL: the same store for several gateway processes on several hosts.

psycopg 3 with a `psycopg_pool` connection pool. Payloads, metadata and
origins are `json` columns, which keep their text as written (jsonb would
not); every bounded read has its index; row locks are taken in
one order (a key's binding, then sessions in id order) and held only for the
statements of one transaction, never across a round trip to the caller.
Migrations run at open inside a transaction holding an advisory lock, so
processes starting together migrate once. A store may live in a schema of its
own (`?schema=name` in the URL), created on first open.

An append is one statement, to a key's session too (the statement finds the
key's binding).
"""

from __future__ import annotations

import re
import select
import threading
import zlib
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import psycopg.conninfo
from psycopg import errors, sql
from psycopg.adapt import Loader
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from aisopod_session._entries import PreparedEntry
from aisopod_session._errors import (
    AisopodError,
    DuplicateEntryId,
    InvalidInput,
    SchemaVersionError,
    SessionExists,
    StoreBusy,
    StoreFull,
    StoreReadOnly,
    StoreUnavailable,
)
from aisopod_session._search import Clause, SearchHit, Term
from aisopod_session.backends._migrations import Migration, apply_migrations
from aisopod_session.backends._sql import (
    ENTRY_INSERT_COLUMNS,
    Appended,
    AppendTarget,
    PathPayloadRow,
    SearchFilter,
    SqlTx,
    StateEdit,
    append_deltas,
    append_update,
    appended_to,
    entry_rows,
    may_append,
    search_hit,
)

__all__ = ["MIGRATIONS", "PostgresBackend", "PostgresTx"]

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        "sessions, bindings and entries",
        (
            """CREATE TABLE sessions (
                sid BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                agent_id TEXT NOT NULL,
                key TEXT,
                status TEXT NOT NULL CHECK (status IN ('active', 'idle', 'archived')),
                title TEXT,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                active_at BIGINT NOT NULL,
                entry_count BIGINT NOT NULL DEFAULT 0,
                message_count BIGINT NOT NULL DEFAULT 0,
                compaction_count BIGINT NOT NULL DEFAULT 0,
                compacted_at BIGINT,
                input_tokens BIGINT NOT NULL DEFAULT 0,
                output_tokens BIGINT NOT NULL DEFAULT 0,
                cache_read_tokens BIGINT NOT NULL DEFAULT 0,
                cache_write_tokens BIGINT NOT NULL DEFAULT 0,
                total_tokens BIGINT NOT NULL DEFAULT 0,
                cost DOUBLE PRECISION NOT NULL DEFAULT 0,
                size_bytes BIGINT NOT NULL DEFAULT 0,
                metadata JSONB NOT NULL DEFAULT '{}',
                origin JSONB NOT NULL DEFAULT '{}',
                channel TEXT,
                fork_parent_id TEXT,
                fork_parent_seq BIGINT,
                leaf_seq BIGINT NOT NULL DEFAULT 0,
                version BIGINT NOT NULL DEFAULT 1
            )""",
            "CREATE INDEX sessions_by_updated ON sessions (updated_at, sid)",
            "CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at, sid)",
            "CREATE INDEX sessions_by_agent_status ON sessions (agent_id, status, updated_at, sid)",
            "CREATE INDEX sessions_by_key ON sessions (agent_id, key, created_at)",
            """CREATE TABLE bindings (
                agent_id TEXT NOT NULL,
                key TEXT NOT NULL,
                sid BIGINT NOT NULL UNIQUE REFERENCES sessions (sid),
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (agent_id, key)
            )""",
            """CREATE TABLE entries (
                row_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                sid BIGINT NOT NULL REFERENCES sessions (sid),
                seq BIGINT NOT NULL,
                id TEXT NOT NULL,
                parent_seq BIGINT,
                type TEXT NOT NULL,
                role TEXT,
                payload JSONB NOT NULL,
                text TEXT NOT NULL DEFAULT '',
                tokens BIGINT NOT NULL DEFAULT 0,
                input_tokens BIGINT,
                output_tokens BIGINT,
                cache_read_tokens BIGINT,
                cache_write_tokens BIGINT,
                total_tokens BIGINT,
                cost DOUBLE PRECISION,
                created_at BIGINT NOT NULL,
                idempotency_key TEXT,
                UNIQUE (sid, seq)
            )""",
            "CREATE UNIQUE INDEX entries_by_id ON entries (sid, id)",
            "CREATE INDEX entries_jumps ON entries (sid, seq)"
            " WHERE parent_seq IS DISTINCT FROM seq - 1",
            "CREATE INDEX entries_compactions ON entries (sid, seq) WHERE type = 'compaction'",
            "CREATE INDEX entries_settings ON entries (sid, seq)"
            " WHERE type IN ('model_change', 'thinking_level_change')",
            "CREATE INDEX entries_by_idempotency_key ON entries (sid, idempotency_key)"
            " WHERE idempotency_key IS NOT NULL",
        ),
    ),
    Migration(
        "full-text search (tsvector + GIN) over entry text",
        (
            # Like SQLite's unicode61 with remove_diacritics: no stemming, no
            # stop words, accents folded (when the server has `unaccent`; it is
            # a trusted extension, in `public` so that dropping a store's
            # schema never drops it from under another store).
            "DO $$ BEGIN CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public;"
            " EXCEPTION WHEN OTHERS THEN NULL; END $$",
            "CREATE TEXT SEARCH CONFIGURATION aisopod_search (COPY = pg_catalog.simple)",
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'unaccent') THEN"
            " ALTER TEXT SEARCH CONFIGURATION aisopod_search ALTER MAPPING FOR hword,"
            " hword_part, word WITH public.unaccent, simple; END IF; END $$",
            "ALTER TABLE entries ADD COLUMN search tsvector"
            " GENERATED ALWAYS AS (to_tsvector('aisopod_search'::regconfig, text)) STORED",
            "CREATE INDEX entries_search ON entries USING GIN (search)",
        ),
    ),
    # SQLite's versions 3 and 4 changed how its index follows new entries; here
    # the generated column has always kept the index, so there is nothing to do.
    Migration("index new entries a batch at a time, not by a per-row trigger", ()),
    Migration("index new entries behind a watermark, a few hundred at a time", ()),
    Migration(
        "JSON columns keep their text as written",
        # jsonb rewrites numbers (1e16 reads back as 10000000000000000, -0.0
        # as 0) and drops duplicate keys; json keeps the text it was given, as
        # SQLite's TEXT columns do. Rows written before keep jsonb's spelling.
        (
            "ALTER TABLE entries ALTER COLUMN payload TYPE json USING payload::json",
            "ALTER TABLE sessions ALTER COLUMN metadata DROP DEFAULT,"
            " ALTER COLUMN origin DROP DEFAULT",
            "ALTER TABLE sessions ALTER COLUMN metadata TYPE json USING metadata::json,"
            " ALTER COLUMN origin TYPE json USING origin::json",
            "ALTER TABLE sessions ALTER COLUMN metadata SET DEFAULT '{}',"
            " ALTER COLUMN origin SET DEFAULT '{}'",
        ),
    ),
    Migration(
        "state: a session's user, its state at the leaf, snapshots, user and agent state",
        (
            "ALTER TABLE sessions ADD COLUMN user_id TEXT,"
            " ADD COLUMN state JSON NOT NULL DEFAULT '{}',"
            " ADD COLUMN state_since_snapshot BIGINT NOT NULL DEFAULT 0",
            "CREATE INDEX sessions_by_user ON sessions (agent_id, user_id, updated_at, sid)",
            # Covering: the changes between two snapshots come from the index alone.
            "CREATE INDEX entries_state ON entries (sid, seq) INCLUDE (payload)"
            " WHERE type = 'state'",
            """CREATE TABLE state_snapshots (
                sid BIGINT NOT NULL REFERENCES sessions (sid),
                seq BIGINT NOT NULL,
                state JSON NOT NULL,
                PRIMARY KEY (sid, seq)
            )""",
            """CREATE TABLE user_state (
                agent_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value JSON NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (agent_id, user_id, key)
            )""",
            """CREATE TABLE agent_state (
                agent_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value JSON NOT NULL,
                updated_at BIGINT NOT NULL,
                PRIMARY KEY (agent_id, key)
            )""",
        ),
    ),
    Migration(
        "index sessions by the session they were forked from",
        # `forks` reads a session's children; without it, a scan of every session.
        # Partial: most sessions are not forks, and the column never changes (so
        # appends, which update the row, keep their heap-only updates).
        (
            "CREATE INDEX sessions_by_fork_parent ON sessions (fork_parent_id, created_at, sid)"
            " WHERE fork_parent_id IS NOT NULL",
        ),
    ),
    Migration(
        "index by user only the sessions that have one",
        # An append moves its session's updated_at, so the update is never heap-only
        # and writes an entry in every index of the row: sessions without a user
        # (those the framework adapters make) no longer write one here. Reads by
        # user name one (`user_id = ?`), which implies the index's predicate.
        (
            "DROP INDEX sessions_by_user",
            "CREATE INDEX sessions_by_user ON sessions (agent_id, user_id, updated_at, sid)"
            " WHERE user_id IS NOT NULL",
        ),
    ),
)

_BEGIN_ATTEMPTS = 3
_MIGRATION_LOCK = 0x41_15_0D
"""The advisory lock taken while migrating (xor'ed with the schema's hash)."""


def redact(url: str) -> str:
    """The URL with any password replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


_ONE_STATEMENT_BYTES: Final = 64 * 1024 * 1024
"""The largest append sent as one statement: its entries travel as one json
value, and PostgreSQL refuses those past about 256 MiB."""

# An append in one statement, from named parts (each a CTE, in the order they run).
_TARGET = (
    # The session, locked, where `{where}` finds it.
    "target AS (SELECT sid AS t_sid, agent_id AS t_agent, version AS t_version,"
    " entry_count AS t_count, leaf_seq AS t_leaf, id AS t_id FROM sessions"
    " WHERE {where} FOR UPDATE)"
)
_BY_ID = "id = ?"  # parameter the session id
# Parameters the agent and the stored key. The binding is read, not locked, as a
# read of the key before the append would read it: a reset that moves the key
# meanwhile leaves the append in the session it archives, as that read would.
_BY_KEY = "sid = (SELECT sid FROM bindings WHERE agent_id = ? AND key = ?)"
_ALLOWED = (
    # The session, when the scope and the expected version allow the append:
    # parameters the agent (twice) and the version (twice), each may be NULL.
    "ok AS (SELECT * FROM target WHERE (?::text IS NULL OR t_agent = ?::text)"
    " AND (?::bigint IS NULL OR t_version = ?::bigint))"
)
_MOVED = (
    # The session row moved on (`append_update`): parameters `append_deltas`, with
    # the entries' count where the new leaf goes (the old count plus it).
    "moved AS ("
    + append_update(alias="s", leaf_seq="s.entry_count + ?")
    + " FROM ok WHERE s.sid = ok.t_sid RETURNING 1)"
)
_NEW_ENTRIES = (
    # The entries, from one json array (parameter), ids made as `entry_id` makes
    # them (the seq in hex, at least 8 digits, then the suffix), each hanging from
    # the one before and the first from the leaf; parameter the idempotency key.
    "added AS (INSERT INTO entries (sid, seq, id, parent_seq, type, role, payload, text,"
    " tokens, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
    " total_tokens, cost, created_at, idempotency_key)"
    " SELECT ok.t_sid, ok.t_count + e.n,"
    " coalesce(e.id, CASE WHEN ok.t_count + e.n < 4294967296"
    " THEN lpad(to_hex(ok.t_count + e.n), 8, '0') ELSE to_hex(ok.t_count + e.n) END"
    " || e.suffix),"
    " CASE WHEN e.n = 1 THEN nullif(ok.t_leaf, 0) ELSE ok.t_count + e.n - 1 END,"
    " e.type, e.role, e.payload, e.text, e.tokens, e.input, e.output, e.cache_read,"
    " e.cache_write, e.total, e.cost, e.created_at, key.value"
    " FROM ok, (SELECT ?::text AS value) AS key,"
    " json_to_recordset(?::json) AS e(n bigint, id text, suffix text, type text, role text,"
    " payload json, text text, tokens bigint, input bigint, output bigint, cache_read bigint,"
    " cache_write bigint, total bigint, cost float8, created_at bigint) RETURNING 1)"
)
_AS_IT_WAS = (
    # The session as it was (an `AppendTarget`), how many entries were added, its id.
    "SELECT t_sid, t_agent, t_version, t_count, t_leaf, (SELECT count(*) FROM added), t_id"
    " FROM target"
)
_APPEND_STATEMENT, _APPEND_TO_KEY_STATEMENT = (
    f"WITH {_TARGET.format(where=where)}, {_ALLOWED}, {_MOVED}, {_NEW_ENTRIES} {_AS_IT_WAS}"
    for where in (_BY_ID, _BY_KEY)
)
"""An append in one statement, to a session by its id or to the one bound to a key;
its parameters are built by `PostgresTx.append_entries`."""
_MOVE_STATEMENT, _MOVE_TO_KEY_STATEMENT = (
    f"WITH {_TARGET.format(where=where)}, {_ALLOWED}, {_MOVED}"
    " SELECT t_sid, t_agent, t_version, t_count, t_leaf, t_id FROM target"
    for where in (_BY_ID, _BY_KEY)
)
"""The session row locked, checked and moved as `_APPEND_STATEMENT` does (and
`_APPEND_TO_KEY_STATEMENT`), the entries left to COPY: the same parameters, less
the idempotency key and the entries."""
_COPY_FROM: Final = 128
"""Appends of this many entries or more are sent as `_MOVE_STATEMENT` and COPY: from
about this size the round trips that adds cost less than what COPY saves over
the one-statement append."""
_COPY_ENTRIES: Final = f"COPY entries ({ENTRY_INSERT_COLUMNS}) FROM STDIN"


class _JsonAsSent(Loader):
    """A json column's value as the server sent it (`bytes`), for `decode_json`."""

    def load(self, data: Any) -> bytes:
        return bytes(data)


class PostgresTx(SqlTx):
    """The store's SQL on a psycopg connection."""

    lock_clause = " FOR UPDATE"
    json_param = "?::json"
    jump_predicate = "parent_seq IS DISTINCT FROM seq - 1"
    size_expression = "octet_length(payload::text) + length(text)"

    def json_bytes(self, column: str) -> str:
        return f"octet_length({column}::text)"

    def json_differs(self, left: str, right: str) -> str:
        # json has no equality operator: compare the text, which json keeps as written.
        return f"{left}::text IS DISTINCT FROM {right}::text"

    def decode_json(self, value: Any) -> Any:
        """psycopg has decoded the json column already (a JSON string is a `str`),
        except for the payloads `stored_path_payloads` leaves as the server sent
        them: the only `bytes`, as JSON has no such value."""
        return orjson.loads(value) if type(value) is bytes else value

    def stored_path_payloads(
        self, sid: int, first: int, last: int, kinds: Collection[str] | None = None
    ) -> list[PathPayloadRow]:
        # The payloads as sent, parsed by `decode_json` one at a time as the reader
        # takes them: what it drops of each is freed at once, instead of a page of
        # parsed payloads living together for the garbage collector to walk (for a
        # page of 1,000 messages, half the time of the read).
        self._json_as_sent = True
        try:
            return super().stored_path_payloads(sid, first, last, kinds)
        finally:
            self._json_as_sent = False

    _translated: ClassVar[dict[str, str]] = {}

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
        if state is None and (
            len(entries) >= _COPY_FROM or sum(e.size for e in entries) > _ONE_STATEMENT_BYTES
        ):
            return self._append_by_copy(
                session_id,
                entries,
                suffixes=suffixes,
                agent_id=agent_id,
                expected_version=expected_version,
                idempotency_key=idempotency_key,
                now=now,
                key=key,
            )
        if state is not None:
            # A state edit (done in Python): the statements of the generic path, in a
            # transaction of their own (a savepoint when one is open already).
            with self._connection.transaction():
                return super().append_entries(
                    session_id,
                    entries,
                    suffixes=suffixes,
                    agent_id=agent_id,
                    expected_version=expected_version,
                    idempotency_key=idempotency_key,
                    now=now,
                    state=state,
                    key=key,
                )
        # One statement, so one round trip, and outside a transaction one
        # commit: find the session (by its key's binding, given a key), lock
        # the row, check it, move it, insert the entries, and return the row
        # as it was. The entries travel as one JSON array,
        # payloads embedded as they are: one parameter to send, not fifteen
        # per entry (or fifteen arrays, which psycopg dumps slowly).
        rows = []
        for n, (entry, suffix) in enumerate(zip(entries, suffixes, strict=True), 1):
            usage = entry.usage
            row: dict[str, Any] = {
                "n": n,
                "id": entry.id,
                "suffix": suffix,
                "type": entry.type,
                "role": entry.role,
                "payload": orjson.Fragment(entry.payload),
                "text": entry.text,
                "tokens": entry.tokens,
                "created_at": entry.created_at,
            }
            if usage is not None:
                row.update(
                    input=usage.input,
                    output=usage.output,
                    cache_read=usage.cache_read,
                    cache_write=usage.cache_write,
                    total=usage.total,
                    cost=usage.cost,
                )
            rows.append(row)
        found = self.execute(
            _APPEND_STATEMENT if key is None else _APPEND_TO_KEY_STATEMENT,
            (
                *((session_id,) if key is None else key),
                agent_id,
                agent_id,
                expected_version,
                expected_version,
                *append_deltas(entries, len(entries), now),
                idempotency_key,
                orjson.dumps(rows).decode(),
            ),
        ).fetchone()
        if found is None:
            return None
        target, session_id = AppendTarget(*found[:5]), found[6]
        if not may_append(target, agent_id, expected_version):
            return Appended(target, [], [], session_id=session_id)
        if found[5] != len(entries):  # pragma: no cover - a guard on the statement itself
            raise AisopodError(f"an append wrote {found[5]} of {len(entries)} entries")
        # The ids the statement built, by the same rule (entry_id).
        return appended_to(target, entries, suffixes, session_id)

    def _append_by_copy(
        self,
        session_id: str,
        entries: Sequence[PreparedEntry],
        *,
        suffixes: Sequence[str],
        agent_id: str | None,
        expected_version: int | None,
        idempotency_key: str | None,
        now: int,
        key: tuple[str, str] | None,
    ) -> Appended | None:
        """`append_entries` for a batch, or an append too big for one json value, in
        a transaction of its own (a savepoint when one is open already): one
        statement locks, checks and moves the session row and returns it as it
        was, then the entries go by COPY (`insert_entries`), which the server takes
        in less time than the same rows as INSERTs or as one json array."""
        with self._connection.transaction():
            found = self.execute(
                _MOVE_STATEMENT if key is None else _MOVE_TO_KEY_STATEMENT,
                (
                    *((session_id,) if key is None else key),
                    agent_id,
                    agent_id,
                    expected_version,
                    expected_version,
                    *append_deltas(entries, len(entries), now),
                ),
            ).fetchone()
            if found is None:
                return None
            target, session_id = AppendTarget(*found[:5]), found[5]
            if not may_append(target, agent_id, expected_version):
                return Appended(target, [], [], session_id=session_id)  # the row did not move
            appended = appended_to(target, entries, suffixes, session_id)
            self._copy_entries(
                entry_rows(
                    target.sid,
                    entries,
                    ids=appended.ids,
                    first_seq=target.entry_count + 1,
                    parents=appended.parents,
                    idempotency_key=idempotency_key,
                )
            )
            return appended

    def __init__(self, connection: psycopg.Connection[Any], url: str) -> None:
        self._connection = connection
        self._url = url
        self._json_as_sent = False

    @classmethod
    def _sql(cls, statement: str) -> str:
        # Statements are written with `?` placeholders, as sqlite3 takes them.
        translated = cls._translated.get(statement)
        if translated is None:
            translated = statement.replace("%", "%%").replace("?", "%s")
            cls._translated[statement] = translated
        return translated

    def execute(self, sql_text: str, params: Sequence[Any] = ()) -> Any:
        try:
            cursor = self._connection.cursor()
            if self._json_as_sent:
                cursor.adapters.register_loader("json", _JsonAsSent)
            return cursor.execute(self._sql(sql_text), params)
        except psycopg.Error as err:
            raise translate(err, self._url) from err

    def executemany(self, sql_text: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            with self._connection.cursor() as cursor:
                cursor.executemany(self._sql(sql_text), rows)
        except psycopg.Error as err:
            raise translate(err, self._url) from err

    def insert_rows(self, rows: Iterator[tuple[Any, ...]], count: int) -> None:
        """`SqlTx.insert_rows`; from `_COPY_FROM` rows by COPY."""
        if count < _COPY_FROM:
            super().insert_rows(rows, count)
        else:
            self._copy_entries(rows)

    def _copy_entries(self, rows: Iterable[Sequence[Any]]) -> None:
        """Insert rows of `ENTRY_INSERT_COLUMNS` by COPY, each sent as it is made."""
        try:
            with (
                self._connection.cursor() as cursor,
                cursor.copy(_COPY_ENTRIES) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as err:
            raise translate(err, self._url) from err

    def entries_inserted(self, count: int, cursor: Any = None) -> None:
        """Nothing to do: the `search` column is generated from the text on insert."""

    def create_schema(self, name: str) -> None:
        """Create a schema (the store's own) unless it exists."""
        self._connection.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name))
        )

    def search(
        self,
        clauses: Sequence[Clause],
        where: SearchFilter,
        *,
        limit: int,
        offset: int,
        highlight: tuple[str, str],
    ) -> list[SearchHit]:
        query, query_params = tsquery(clauses)
        conditions, params = where.sql()
        options = f"StartSel={highlight[0]}, StopSel={highlight[1]}, MaxWords=24, MinWords=8"
        # Rank and cut first; ts_headline (costly) only for the page returned.
        rows = self.execute(
            "WITH q AS (SELECT " + query + " AS query),"
            " hits AS (SELECT e.row_id, ts_rank_cd(e.search, q.query) AS rank"
            " FROM entries e JOIN sessions s ON s.sid = e.sid, q"
            f" WHERE e.search @@ q.query{conditions}"
            " ORDER BY rank DESC, e.row_id LIMIT ? OFFSET ?)"
            " SELECT s.id, s.agent_id, s.key, e.seq, e.id, coalesce(e.role, e.type), e.created_at,"
            " ts_headline('aisopod_search', e.text, q.query, ?), hits.rank"
            " FROM hits JOIN entries e ON e.row_id = hits.row_id"
            " JOIN sessions s ON s.sid = e.sid, q ORDER BY hits.rank DESC, e.row_id",
            (*query_params, *params, limit, offset, options),
        ).fetchall()
        return [search_hit(row[:8], float(row[8])) for row in rows]


def tsquery(clauses: Sequence[Clause]) -> tuple[str, list[str]]:
    """A tsquery expression (and its parameters) of parsed clauses: user text only
    ever enters as parameters of PostgreSQL's own query parsers."""
    params: list[str] = []

    def term(t: Term) -> str:
        params.append(" ".join(t.words))
        if t.prefix:
            return "(plainto_tsquery('aisopod_search', ?)::text || ':*')::tsquery"
        if t.is_phrase:
            return "phraseto_tsquery('aisopod_search', ?)"
        return "plainto_tsquery('aisopod_search', ?)"

    def group(c: Clause) -> str:
        return "(" + " || ".join(term(t) for t in c.terms) + ")"

    parts = [group(c) for c in clauses if not c.negated]
    parts += ["!!" + group(c) for c in clauses if c.negated]
    return " && ".join(parts), params


class PostgresBackend:
    """A store's database in PostgreSQL (in one schema of a database)."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        pool_min: int = 1,
        pool_max: int = 10,
        pool_timeout: float = 30.0,
        migrate: bool = True,
        read_only: bool = False,
    ) -> None:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", schema)
        pool_min = _number(query.pop("pool_min", pool_min), int, "pool_min", minimum=0)
        pool_max = _number(query.pop("pool_max", pool_max), int, "pool_max", minimum=1)
        pool_timeout = _number(query.pop("pool_timeout", pool_timeout), float, "pool_timeout")
        read_only = query.pop("read_only", "1" if read_only else "0").lower() in _TRUE
        conninfo = urlunsplit(parts._replace(query=urlencode(query)))
        self.url = redact(url)
        self.schema = schema
        self.read_only = read_only
        self._conninfo = conninfo
        self._connect_timeout = None if "connect_timeout" in query else _CONNECT_TIMEOUT
        self._pool_timeout = pool_timeout
        # One direct connection first: a wrong host, port, user, password or
        # database fails at once, in the server's own words, and only once.
        problem = self._unreachable()
        if problem is not None:
            raise problem
        self._pool = ConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=max(pool_min, pool_max),
            kwargs={"autocommit": True},
            configure=self._configure,
            timeout=pool_timeout,
            name="aisopod-session",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=pool_timeout)
        except PoolTimeout as err:
            self._pool.close()
            raise self._unreachable() or StoreUnavailable(
                f"{self.url}: PostgreSQL did not answer"
            ) from err
        self._check_lock = threading.Lock()
        self.migrations = MIGRATIONS
        try:
            if migrate:
                self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _unreachable(self) -> StoreUnavailable | None:
        """Why a new connection to the server fails now (its own words), or None."""
        conninfo = self._conninfo
        if self._connect_timeout is not None:
            conninfo = psycopg.conninfo.make_conninfo(
                conninfo, connect_timeout=self._connect_timeout
            )
        try:
            psycopg.connect(conninfo, autocommit=True).close()
        except psycopg.Error as err:
            return StoreUnavailable(f"{self.url}: {_reason(err)}")
        return None

    def __repr__(self) -> str:
        return f"PostgresBackend({self.url!r})"

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        """Set up a new pooled connection; it never writes (the schema is made by
        the migration that needs it)."""
        set_json_loads(orjson.loads, connection)
        if self.schema:
            connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        if self.read_only:
            connection.execute("SET default_transaction_read_only = on")

    def defer_indexing(self) -> None:
        """Nothing to defer: the generated search column indexes each entry as it is written."""

    def index_if_due(self) -> None:
        """Nothing is ever due (see `defer_indexing`)."""

    def close(self) -> None:
        """Close the pool and every connection in it."""
        self._pool.close()

    # --- transactions -----------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[PostgresTx]:
        """A read transaction: one snapshot (REPEATABLE READ, READ ONLY)."""
        with self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") as tx:
            yield tx

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        """A write transaction (READ COMMITTED; rows the store changes are locked first).

        Raises:
            StoreReadOnly: on a store opened read-only (nothing is attempted).
        """
        if self.read_only:
            raise StoreReadOnly(f"{self.url}: the store is read-only")
        with self._transaction("BEGIN") as tx:
            yield tx

    @contextmanager
    def read_statement(self) -> Iterator[PostgresTx]:
        """One read statement, sent alone in autocommit mode: it sees one snapshot by
        itself (one round trip instead of BEGIN, it and COMMIT)."""
        with self._transaction(None) as tx:
            yield tx

    @contextmanager
    def write_append(self) -> Iterator[PostgresTx]:
        """One append, which is one statement: sent alone, in autocommit mode, it is
        its own transaction (one round trip instead of BEGIN, it and COMMIT)."""
        if self.read_only:
            raise StoreReadOnly(f"{self.url}: the store is read-only")
        with self._transaction(None) as tx:
            yield tx

    @contextmanager
    def _transaction(self, begin: str | None) -> Iterator[PostgresTx]:
        try:
            with self._connection(begin) as connection:
                tx = PostgresTx(connection, self.url)
                try:
                    yield tx
                except BaseException:
                    if begin is not None and not connection.broken:
                        connection.execute("ROLLBACK")
                    raise
                if begin is not None:
                    tx.execute("COMMIT")
        except PoolTimeout as err:
            # No connection within the timeout: the server is gone (say why), or
            # every connection is busy (contention).
            raise self._unreachable() or StoreBusy(
                f"{self.url}: no connection free within {self._pool_timeout}s"
            ) from err
        except StoreUnavailable:
            # Connections broken by a server restart: drop the idle ones too, so
            # the next call connects afresh instead of failing on another.
            self._check_pool()
            raise
        except psycopg.Error as err:
            self._check_pool()
            raise translate(err, self.url) from err

    @contextmanager
    def _connection(self, begin: str | None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection with a transaction begun on it (none when `begin` is None).

        A connection the server closed while it sat in the pool (a restart)
        fails at BEGIN, before anything was asked of it: that is safe to try
        again on another connection, so callers only see failures that
        happened during their transaction. Without a BEGIN, a connection the
        server has something to say to while idle (its goodbye) is not used.
        """
        for attempt in range(_BEGIN_ATTEMPTS):
            with self._pool.connection() as connection:
                try:
                    if begin is not None:
                        connection.execute(begin)
                    elif _server_spoke(connection):
                        connection.close()  # the pool replaces a closed connection
                        raise psycopg.OperationalError("the server closed the connection")
                except psycopg.OperationalError:
                    if attempt + 1 == _BEGIN_ATTEMPTS:
                        raise
                    self._check_pool()
                    continue  # the pool discards the broken connection on return
                yield connection
                return

    def _check_pool(self) -> None:
        if self._check_lock.acquire(blocking=False):
            try:
                self._pool.check()
            except psycopg.Error:
                pass  # the server is down; the next call reports it
            finally:
                self._check_lock.release()

    # --- schema -----------------------------------------------------------------

    def _migrate(self) -> None:
        """Bring the schema up to date; a store that is up to date is only read."""
        version = self.schema_version()
        if version > len(MIGRATIONS):
            raise SchemaVersionError(version, len(MIGRATIONS))
        if version == len(MIGRATIONS):
            return
        if self.read_only:
            raise StoreReadOnly(
                f"{self.url}: the store is read-only and at schema version {version} of"
                f" {len(MIGRATIONS)}; open it once with write access to upgrade it"
            )
        with self.write() as tx:
            tx.execute(
                "SELECT pg_advisory_xact_lock(?)",
                # crc32, not hash(): the key must be the same in every process.
                (_MIGRATION_LOCK ^ zlib.crc32((self.schema or "").encode()),),
            )
            if self.schema:
                tx.create_schema(self.schema)
            apply_migrations(tx, MIGRATIONS, integer="BIGINT")

    def schema_version(self) -> int:
        """The schema version recorded in the database (0 for a new one)."""
        with self.read() as tx:
            exists = tx.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]
            if exists is None:
                return 0
            row = tx.execute("SELECT max(version) FROM schema_migrations").fetchone()
            return int(row[0] or 0)

    def diagnostics(self) -> dict[str, Any]:
        """Server facts worth checking."""
        facts: dict[str, Any] = {"backend": "postgresql", "url": self.url, "schema": self.schema}
        with self.read() as tx:
            facts["server_version"] = tx.execute("SHOW server_version").fetchone()[0]
            facts["synchronous_commit"] = tx.execute("SHOW synchronous_commit").fetchone()[0]
            # Read-only by our URL option, or by the server (a standby, a role's default).
            server_read_only = tx.execute(
                "SELECT current_setting('default_transaction_read_only') = 'on'"
                " OR pg_is_in_recovery()"
            ).fetchone()[0]
            facts["read_only"] = self.read_only or bool(server_read_only)
            facts["size_bytes"] = int(
                tx.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
                ).fetchone()[0]
            )
        return facts

    def check_integrity(self) -> list[str]:
        """References the schema relies on: no entry, binding or leaf points nowhere."""
        checks = {
            "entries of a missing session": "SELECT count(*) FROM entries e"
            " WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = e.sid)",
            "bindings to a missing session": "SELECT count(*) FROM bindings b"
            " WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.sid = b.sid)",
            "sessions whose leaf is past their last entry": "SELECT count(*) FROM sessions"
            " WHERE leaf_seq > entry_count",
        }
        problems = []
        with self.read() as tx:
            for what, query in checks.items():
                count = int(tx.execute(query).fetchone()[0])
                if count:
                    problems.append(f"{count} {what}")
        return problems


def _server_spoke(connection: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection has something to read: a server that ends a
    session (a restart, a terminated backend) says so, then closes the socket."""
    # poll, not select: select cannot watch descriptors numbered 1024 and up.
    poller = select.poll()
    try:
        poller.register(connection.fileno(), select.POLLIN)
    except psycopg.Error:
        return True  # psycopg knows the connection is closed
    return bool(poller.poll(0))


def translate(err: psycopg.Error, url: str) -> AisopodError:
    """A driver error as the store's typed error (the caller chains the original)."""
    if isinstance(err, errors.UniqueViolation):
        constraint = getattr(err.diag, "constraint_name", None)
        if constraint == "entries_by_id":
            return DuplicateEntryId("an entry with this id is already in the session", field="id")
        if constraint == "sessions_id_key":
            # Another writer made a session with this id first (two imports of the same
            # data at once): what SQLite's write lock makes the check before the insert.
            found = re.search(r"\(id\)=\((.*)\) already exists", err.diag.message_detail or "")
            return SessionExists(found.group(1) if found else "?")
        return AisopodError(f"{url}: a constraint failed ({constraint})")
    if isinstance(err, errors.DiskFull | errors.OutOfMemory | errors.ProgramLimitExceeded):
        return StoreFull(f"{url}: no room left in the database ({err.sqlstate})")
    if isinstance(
        err, errors.DeadlockDetected | errors.SerializationFailure | errors.LockNotAvailable
    ):
        return StoreBusy(f"{url}: the database gave up waiting for a lock; retry ({err.sqlstate})")
    if isinstance(err, errors.ReadOnlySqlTransaction):
        return StoreReadOnly(f"{url}: the database cannot be written here ({err.sqlstate})")
    if isinstance(err, errors.InsufficientPrivilege):
        # The store opened (reading the schema version), so what is refused is a write.
        return StoreReadOnly(f"{url}: the role may not write here ({_reason(err)})")
    if isinstance(err, errors.CharacterNotInRepertoire | errors.UntranslatableCharacter):
        return InvalidInput("text the database cannot store", field="payload")
    if isinstance(err, psycopg.OperationalError | errors.AdminShutdown | psycopg.InterfaceError):
        return StoreUnavailable(f"{url}: the database is unavailable; retry later ({_reason(err)})")
    return StoreUnavailable(f"{url}: {type(err).__name__} ({err.sqlstate})")


def _reason(err: psycopg.Error) -> str:
    """The server's (or the driver's) own words about an error, on one line."""
    text = str(err).strip() or type(err).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq repeats itself once per address it tried; one is enough.
    return " ".join(dict.fromkeys(lines))[:500]


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_CONNECT_TIMEOUT: Final = 5
"""Seconds a new connection may take, unless the URL says (`connect_timeout`)."""


def _number(value: Any, kind: type[int] | type[float], field: str, *, minimum: float = 0) -> Any:
    """A numeric option from a keyword or the URL's query, checked."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"must be a number, not {value!r}", field=field) from None
    if number < minimum:
        raise InvalidInput(f"must be at least {minimum:g}", field=field)
    return number
