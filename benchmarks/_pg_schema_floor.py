"""The raw psycopg floor on aisopod-session's own PostgreSQL schema: what the store's
work costs when hand-written, with nothing of the library around it."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from aisopod_session import open_store
from aisopod_shared import Message, TokenUsage

_COLUMNS = (
    "sid, seq, id, parent_seq, type, role, payload, text, tokens, input_tokens,"
    " output_tokens, cache_read_tokens, cache_write_tokens, total_tokens, cost, created_at,"
    " idempotency_key"
)
_INSERT = (
    f"INSERT INTO entries ({_COLUMNS}) VALUES"
    " (%s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_COPY = f"COPY entries ({_COLUMNS}) FROM STDIN"
_NO_USAGE: tuple[Any, ...] = (None,) * 6
_MOVE = (
    "UPDATE sessions AS s SET entry_count = s.entry_count + %s, message_count ="
    " s.message_count + %s, input_tokens = s.input_tokens + %s, output_tokens ="
    " s.output_tokens + %s, cache_read_tokens = s.cache_read_tokens + %s,"
    " cache_write_tokens = s.cache_write_tokens + %s, total_tokens = s.total_tokens + %s,"
    " cost = s.cost + %s, size_bytes = s.size_bytes + %s, leaf_seq = s.entry_count + %s,"
    " updated_at = %s, active_at = %s, version = s.version + 1"
    " FROM (SELECT sid, entry_count, leaf_seq FROM sessions WHERE id = %s FOR UPDATE) AS old"
    " WHERE s.sid = old.sid RETURNING old.sid, old.entry_count, old.leaf_seq"
)

COPY_FROM = 2
"""Appends of this many entries or more go through COPY: on a batch of 1,000 it
was faster than `executemany` (which psycopg runs in pipeline mode)."""


def usage_columns(usage: TokenUsage | None) -> tuple[Any, ...]:
    """An entry's input, output, cache read, cache write, total tokens and cost columns."""
    if usage is None:
        return _NO_USAGE
    return (usage.input, usage.output, usage.cache_read, usage.cache_write, usage.total, usage.cost)


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to the store at `url` (a DSN, with `?schema=name` or
    `&schema=name` for a store in a schema of its own), its JSON decoded by orjson."""
    dsn, schema = url, ""
    for mark in ("?schema=", "&schema="):
        if mark in url:
            dsn, schema = url.rsplit(mark, 1)
    db = psycopg.connect(dsn, autocommit=True)
    set_json_loads(orjson.loads, db)
    if schema:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return db


class PgSchemaFloor:
    """Hand-written psycopg on a database with the store's schema.

    An append serializes each message and sums its usage and size, then in one
    transaction locks the session row, moves its counters and reads it as it was
    (where the next seq and the leaf are: another process may append), in one
    statement, and inserts the entries with every column the store writes (the
    server computes the generated full-text column and its index, as for the
    store), by COPY from `COPY_FROM` entries and by INSERT below; a read is the
    store's SELECT with the payloads decoded. It checks nothing and builds no
    typed objects, so it is the least an implementation of this data model
    could do.
    """

    def __init__(self, url: str, *, copy_from: int = COPY_FROM) -> None:
        self.url = url
        self.copy_from = copy_from
        # The store makes the schema (and migrates it) before the floor uses it.
        open_store(url).close()
        self.db = connect(url)

    def new_session(self, key: str) -> str:
        """A session made through the store; its id."""
        store = open_store(self.url, pool_max=1)
        session_id = store.get_or_create(key).id
        store.close()
        return session_id

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        now = time.time_ns() // 1000
        prepared = []
        for m in messages:
            data = orjson.dumps({"message": m.to_json()}).decode()
            prepared.append((m, data, usage_columns(m.usage)))
        count = len(prepared)
        used = [columns for _, _, columns in prepared if columns is not _NO_USAGE]
        sums = [sum(columns[k] for columns in used) for k in range(6)]
        size = sum(len(data) + len(m.text) for m, data, _ in prepared)
        db = self.db
        with db.transaction():
            # The row locked, moved and read as it was, in one statement.
            found = db.execute(
                _MOVE, (count, count, *sums, size, count, now, now, session_id)
            ).fetchone()
            assert found is not None
            sid, last_seq, leaf = found
            rows = (
                (
                    sid,
                    seq,
                    os.urandom(8).hex(),
                    (leaf or None) if seq == last_seq + 1 else seq - 1,
                    "message",
                    m.role,
                    payload,
                    m.text,
                    len(payload) // 4,
                    *columns,
                    now,
                    None,
                )
                for seq, (m, payload, columns) in enumerate(prepared, last_seq + 1)
            )
            with db.cursor() as cursor:
                if count >= self.copy_from:
                    with cursor.copy(_COPY) as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    cursor.executemany(_INSERT, rows)

    def last(self, session_id: str, count: int) -> list[Any]:
        """The store's page of the last `count` entries (one row more says whether more
        follow), in one statement: the session looked up by its id inside it."""
        rows = self.db.execute(
            "SELECT seq, id, parent_seq, type, role, payload, text, input_tokens, output_tokens,"
            " cache_read_tokens, cache_write_tokens, total_tokens, cost, created_at,"
            " idempotency_key, tokens FROM entries"
            " WHERE sid = (SELECT sid FROM sessions WHERE id = %s) ORDER BY seq DESC LIMIT %s",
            (session_id, count + 1),
        ).fetchall()
        return rows[:count][::-1]

    def close(self) -> None:
        self.db.close()
