"""The raw `sqlite3` floor on aisopod-session's own schema: what the store's work costs
when hand-written, with nothing of the library around it."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from aisopod_session import open_store
from aisopod_session.backends.sqlite import INDEX_BATCH
from aisopod_shared import Message

_INSERT = (
    "INSERT INTO entries (sid, seq, id, parent_seq, type, role, payload, text, tokens,"
    " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, total_tokens,"
    " cost, created_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
    " ?, ?, ?, ?)"
)


class SchemaFloor:
    """Hand-written sqlite3 on a database with the store's schema and pragmas.

    An append serializes each message, then in one transaction reads the
    session row (where the next seq and the leaf are: another process may have
    appended), inserts the entries, indexes for search the entries waiting for
    it when a row id crosses a multiple of INDEX_BATCH (as the store does) and
    updates the session row's counters; a read is the store's SELECT with the
    payloads decoded. It checks nothing and builds no typed objects, so it is
    the least an implementation of this data model could do.
    """

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        # The store makes the file (in WAL mode) first: a connection opened before
        # would report the rollback journal until its first read of the new file.
        self.session_id = self.new_session("agent:main:floor")
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute(f"PRAGMA synchronous = {synchronous}")
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA temp_store = MEMORY")

    def new_session(self, key: str) -> str:
        """A session made through the store (which also makes the schema); its id."""
        store = open_store(self.path, synchronous=self.synchronous)
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
        self.db.execute("BEGIN IMMEDIATE")
        sid, last_seq, leaf = self.db.execute(
            "SELECT sid, entry_count, leaf_seq FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
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
        self.db.executemany(_INSERT, rows)
        last = self.db.execute("SELECT last_insert_rowid()").fetchone()[0]
        if last // INDEX_BATCH != (last - count) // INDEX_BATCH:
            self.db.execute(
                "INSERT INTO entries_fts (rowid, text) SELECT row_id, text FROM entries"
                " WHERE row_id > (SELECT indexed_through FROM search_state) AND text != ''"
            )
            self.db.execute("UPDATE search_state SET indexed_through = ?", (last,))
        self.db.execute(
            "UPDATE sessions SET entry_count = entry_count + ?, message_count = message_count + ?,"
            " input_tokens = input_tokens + ?, output_tokens = output_tokens + ?,"
            " cache_read_tokens = cache_read_tokens + ?,"
            " cache_write_tokens = cache_write_tokens + ?, total_tokens = total_tokens + ?,"
            " cost = cost + ?, size_bytes = size_bytes + ?, leaf_seq = ?, updated_at = ?,"
            " active_at = ?, version = version + 1 WHERE sid = ?",
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
        self.db.execute("COMMIT")

    def last(self, session_id: str, count: int) -> list[Any]:
        rows = self.db.execute(
            "SELECT seq, id, parent_seq, type, role, payload, text, input_tokens, output_tokens,"
            " cache_read_tokens, cache_write_tokens, total_tokens, cost, created_at,"
            " idempotency_key, tokens FROM entries"
            " WHERE sid = (SELECT sid FROM sessions WHERE id = ?) ORDER BY seq DESC LIMIT ?",
            (session_id, count + 1),
        ).fetchall()
        # Like the store: one row more than the page says whether more follow.
        return [(*row[:5], orjson.loads(row[5]), *row[6:]) for row in reversed(rows[:count])]

    def list(self, count: int) -> list[Any]:
        rows = self.db.execute(
            "SELECT * FROM sessions ORDER BY updated_at DESC, sid DESC LIMIT ?", (count,)
        ).fetchall()
        return [
            (*row[:20], orjson.loads(row[20]), orjson.loads(row[21]), *row[22:]) for row in rows
        ]

    def close(self) -> None:
        self.db.close()
