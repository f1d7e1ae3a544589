"""Databases written by an earlier schema version, for the upgrade tests.

Today's code cannot write an old schema (it writes today's columns), so these
helpers build the schema with the first migrations only and write one session
with plain SQL, as the code of that version wrote it: the columns every
version has, a binding, and the entries (indexed for search the way that
version indexed them, by `index_rows`).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg

from aisopod_session.backends import postgres, sqlite
from aisopod_session.backends._migrations import apply_migrations
from aisopod_session.backends._sql import SqlTx
from aisopod_shared import Message

IndexRows = Callable[[SqlTx, int], None]
"""Called after the entries are inserted, with their count."""

_SESSION = (
    "INSERT INTO sessions (id, agent_id, key, status, created_at, updated_at, active_at,"
    " entry_count, message_count, leaf_seq, version) VALUES (?, 'main', ?, 'active', 1, 1, 1,"
    " ?, ?, ?, ?) RETURNING sid"
)
_BINDING = "INSERT INTO bindings (agent_id, key, sid, updated_at) VALUES ('main', ?, ?, 1)"
_ENTRY = (
    "INSERT INTO entries (sid, seq, id, parent_seq, type, role, payload, text, created_at)"
    " VALUES (?, ?, ?, ?, 'message', ?, {json}, ?, 1)"
)


def _write_session(
    tx: SqlTx, json_param: str, messages: Sequence[Message], index_rows: IndexRows | None
) -> str:
    session_id = str(uuid.uuid4())
    key = "agent:main:main"
    count = len(messages)
    (sid,) = tx.execute(_SESSION, (session_id, key, count, count, count, 1 + count)).fetchone()
    tx.execute(_BINDING, (key, sid))
    for seq, message in enumerate(messages, start=1):
        payload = orjson.dumps({"message": message.to_json()}).decode()
        tx.execute(
            _ENTRY.format(json=json_param),
            (sid, seq, f"{seq:08x}old0", seq - 1 or None, message.role, payload, message.text),
        )
    if index_rows is not None:
        index_rows(tx, count)
    return session_id


def write_sqlite_at_version(
    path: Path, version: int, messages: Sequence[Message], index_rows: IndexRows | None = None
) -> str:
    """A new file at schema `version` holding one session of `messages`; its id."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        tx = sqlite.SqliteTx(connection, f"sqlite://{path}")
        tx.execute("BEGIN IMMEDIATE")
        apply_migrations(tx, sqlite.MIGRATIONS[:version], integer="INTEGER")
        session_id = _write_session(tx, "?", messages, index_rows)
        tx.execute("COMMIT")
    finally:
        connection.close()
    return session_id


def write_postgres_at_version(
    dsn: str, schema: str, version: int, messages: Sequence[Message]
) -> str:
    """Schema `schema` (existing, empty) at `version`, holding one session; its id."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f'SET search_path TO "{schema}"')
        tx = postgres.PostgresTx(connection, dsn)
        with connection.transaction():
            apply_migrations(tx, postgres.MIGRATIONS[:version], integer="BIGINT")
            # Until version 5 the JSON columns were jsonb.
            json_param = "?::jsonb" if version < 5 else "?::json"
            return _write_session(tx, json_param, messages, None)


def index_each_insert(tx: Any, count: int) -> None:
    """How version 3 indexed: every appended row at once, into the FTS5 table."""
    tx.execute(
        "INSERT INTO entries_fts (rowid, text) SELECT row_id, text FROM entries"
        " WHERE row_id > last_insert_rowid() - ? AND text != ''",
        (count,),
    )
