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
from aisopod_shared import Message

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

COPY_FROM = 2
"""Appends of this many entries or more go through COPY: on a batch of 1,000 it
was faster than `executemany` (which psycopg runs in pipeline mode)."""


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

    An append serializes each message, then in one transaction locks and reads
    the session row (where the next seq and the leaf are: another process may
    append), inserts the entries with every column the store writes (the server
    computes the generated full-text column and its index, as for the store),
    by COPY from `COPY_FROM` entries and by INSERT below, and moves the session
    row's counters; a read is the store's SELECT with the payloads decoded. It
    checks nothing and builds no typed objects, so it is the least an
    implementation of this data model could do.
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
            data = orjson.dumps({"message": m.to_json()})
            prepared.append((m, data.decode(), len(data) // 4))
        count = len(prepared)
        db = self.db
        with db.transaction():
            found = db.execute(
                "SELECT sid, entry_count, leaf_seq FROM sessions WHERE id = %s FOR UPDATE",
                (session_id,),
            ).fetchone()
            assert found is not None
            sid, last_seq, leaf = found
            rows = []
            for seq, (m, payload, tokens) in enumerate(prepared, last_seq + 1):
                usage = m.usage
                rows.append(
                    (
                        sid,
                        seq,
                        os.urandom(8).hex(),
                        (leaf or None) if seq == last_seq + 1 else seq - 1,
                        "message",
                        m.role,
                        payload,
                        m.text,
                        tokens,
                        usage.input if usage else None,
                        usage.output if usage else None,
                        usage.cache_read if usage else None,
                        usage.cache_write if usage else None,
                        usage.total if usage else None,
                        usage.cost if usage else None,
                        now,
                        None,
                    )
                )
            with db.cursor() as cursor:
                if count >= self.copy_from:
                    with cursor.copy(_COPY) as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    cursor.executemany(_INSERT, rows)
            db.execute(
                "UPDATE sessions SET entry_count = entry_count + %s, message_count ="
                " message_count + %s, input_tokens = input_tokens + %s, output_tokens ="
                " output_tokens + %s, cache_read_tokens = cache_read_tokens + %s,"
                " cache_write_tokens = cache_write_tokens + %s, total_tokens = total_tokens"
                " + %s, cost = cost + %s, size_bytes = size_bytes + %s, leaf_seq = %s,"
                " updated_at = %s, active_at = %s, version = version + 1 WHERE sid = %s",
                (
                    count,
                    count,
                    sum(r[9] or 0 for r in rows),
                    sum(r[10] or 0 for r in rows),
                    sum(r[11] or 0 for r in rows),
                    sum(r[12] or 0 for r in rows),
                    sum(r[13] or 0 for r in rows),
                    sum(r[14] or 0.0 for r in rows),
                    sum(len(r[6]) + len(r[7]) for r in rows),
                    last_seq + count,
                    now,
                    now,
                    sid,
                ),
            )

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
