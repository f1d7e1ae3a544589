"""aisopod-session against its peers, on the same workloads in one process, printed as a table.

    uv run --group bench python benchmarks/peers.py            # the full run (15-20 minutes)
    uv run --group bench python benchmarks/peers.py --quick    # small sizes: a smoke test
    uv run --group bench python benchmarks/peers.py --json     # the results as JSON
    uv run --group bench python benchmarks/peers.py --json results.json  # both
    uv run --group bench python benchmarks/peers.py --postgres postgresql://user@host:5432/db
    uv run --group bench python benchmarks/peers.py --postgres embedded  # a server of its own

The peers come from the `bench` dependency group, which the default sync does
not install. The stores compared, each through its own public API:

- aisopod-session on SQLite (sync at synchronous=FULL and NORMAL, and async),
  and on PostgreSQL when a DSN is given (`--postgres`, else the environment
  variable AISOPOD_TEST_POSTGRES_DSN; `--postgres embedded` starts a
  throwaway server of the benchmark's own, `benchmarks/_postgres.py`);
- the OpenAI Agents SDK: `SQLiteSession`, `SQLAlchemySession` (aiosqlite, and
  asyncpg on PostgreSQL);
- Google ADK: `DatabaseSessionService` (aiosqlite, and asyncpg on PostgreSQL)
  and `SqliteSessionService`;
- LangChain: `SQLChatMessageHistory` (SQLite, and psycopg on PostgreSQL);
- a raw `sqlite3` floor: hand-written SQL on a minimal schema (WAL), the same
  JSON payloads, at synchronous=FULL and NORMAL;
- raw `sqlite3` on aisopod-session's own schema: the store's statements
  hand-written (`_schema_floor.py`), the least any implementation of its
  data model could do; on PostgreSQL, raw psycopg on its schema there
  (`_pg_schema_floor.py`, a batch's entries sent by COPY).

Workloads: one message per append call; 1,000 messages in one call (or the
peer's nearest way to do it); the last 50 messages of a session holding
1,000 / 100,000 / 1,000,000 messages; the 50 most recently updated of 10,000
sessions; the file size per 100,000 messages (SQLite: the database file and
its WAL after a checkpoint). Every store writes the same message texts, each
into a database of its own. Rounds of the stores alternate, and each figure
is the median round. A store that would need more than the build budget
(`--build-budget`, 180 s) to build a session of a size, or to make the
sessions to list, or more than the read budget (`--budget`, 60 s) to read it
once, is skipped at that size, with the reason.

"vs us" is how many times faster (or smaller) aisopod-session, sync API on
SQLite, is than the row's store at the same durability level; below 1.00x
the other store is ahead.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import contextlib
import functools
import gc
import importlib
import itertools
import json
import logging
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson
from _pg_schema_floor import PgSchemaFloor
from _postgres import EMBEDDED, postgres_dsn
from _schema_floor import SchemaFloor as SqliteSchemaFloor

from aisopod_session import Message, open_async_store, open_store
from aisopod_session._store import engine_of

POSTGRES_ENV = "AISOPOD_TEST_POSTGRES_DSN"
BATCH = 1000
LAST = 50
APP = "bench"

TEXTS = (
    "Can you check whether last night's backup finished, and how long it took?",
    "The backup finished at 03:12 after 41 minutes. Two files were skipped because another"
    " process held them open: ~/notes/todo.md and ~/mail/drafts.mbox.",
    "Please remind me to call the dentist on Thursday morning.",
    "Done: a reminder for Thursday at 09:00, 'Call the dentist'. Do you want it to repeat?",
    "What did we decide about the conference budget in the meeting on Monday?",
    "You agreed on 4,800 EUR in total: travel for three people, two nights at the venue"
    " hotel, and registration at the early-bird rate, which ends on the 14th.",
    "Summarise the three longest threads in my inbox from this week.",
    "1. Release planning (23 messages): the date moves to the 21st. 2. Office move"
    " (17 messages): keys on Friday. 3. Hiring (12 messages): two interviews left to schedule.",
)


def text(n: int) -> str:
    """The n-th message text: every store writes exactly the same ones."""
    return f"{TEXTS[n % len(TEXTS)]} (#{n})"


def is_user(n: int) -> bool:
    return n % 2 == 0


def message(n: int) -> Message:
    """The n-th message as aisopod-session's `Message`."""
    return Message.user(text(n)) if is_user(n) else Message.assistant(text(n))


# --- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Durability:
    """What a store does to make a commit durable, as read from its own connection."""

    journal: str  # SQLite journal mode, "" on PostgreSQL
    synchronous: str  # SQLite synchronous, or PostgreSQL synchronous_commit/fsync
    level: str  # the aisopod-session level it compares with: FULL or NORMAL
    source: str  # how it was found

    @property
    def text(self) -> str:
        return f"{self.journal}, {self.synchronous}" if self.journal else self.synchronous


UNKNOWN = Durability("", "?", "FULL", "not read")

_SYNCHRONOUS = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}


def sqlite_durability(journal: object, synchronous: object, source: str) -> Durability:
    mode = _SYNCHRONOUS.get(str(synchronous), str(synchronous).upper())
    # FULL and EXTRA make every commit durable (in WAL and in rollback-journal mode
    # alike); NORMAL and OFF can lose the last commits on power loss.
    level = "FULL" if mode in ("FULL", "EXTRA") else "NORMAL"
    return Durability(str(journal).upper(), mode, level, source)


def pg_durability(synchronous_commit: object, fsync: object, source: str) -> Durability:
    durable = str(synchronous_commit) != "off" and str(fsync) == "on"
    return Durability(
        "",
        f"synchronous_commit={synchronous_commit}, fsync={fsync}",
        "FULL" if durable else "NORMAL",
        source,
    )


@dataclass
class Row:
    workload: str
    group: str  # single, batch, read, list, size
    slug: str
    store: str
    backend: str
    durability: str
    level: str
    kind: str  # rate, batch, time, bytes
    value: float | None  # seconds per operation, or bytes
    status: str  # ok, skipped, no API, not available, failed
    note: str = ""
    samples: int = 0
    ops_per_round: int = 0
    ours: bool = False
    is_sync_us: bool = False  # the "us" of its workload at its level
    ratio: float | None = None
    ratio_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- the stores ------------------------------------------------------------------------


class Contender(abc.ABC):
    """One store under test, opened on one database for one workload."""

    is_async: ClassVar[bool] = False
    batch_api: ClassVar[bool] = True
    list_api: ClassVar[bool] = True
    path: Path | None = None

    @abc.abstractmethod
    async def open(self, target: str) -> None:
        """Each store says how."""

    async def close(self) -> None:  # noqa: B027 - most stores have nothing to close
        """Release the store (nothing, unless the store holds connections)."""

    @abc.abstractmethod
    async def durability(self, handle: Any) -> Durability:
        """Each store says how."""

    @abc.abstractmethod
    async def session(self, name: str) -> Any:
        """Each store says how."""

    @abc.abstractmethod
    def native(self, n: int) -> Any:
        """Each store says how."""

    # The operations: plain functions, or functions returning an awaitable when is_async.
    @abc.abstractmethod
    def append_one(self, handle: Any, message: Any) -> Any:
        """Each store says how."""

    @abc.abstractmethod
    def append_many(self, handle: Any, messages: list[Any]) -> Any:
        """Each store says how."""

    @abc.abstractmethod
    def last50(self, handle: Any) -> Any:
        """Each store says how."""

    def list50(self) -> Any:
        """Only stores with a list API (`list_api`) are asked."""
        raise TypeError(f"{type(self).__name__} has no list API")

    async def make_sessions(self, start: int, stop: int) -> None:
        """Only stores with a list API (`list_api`) are asked."""
        raise TypeError(f"{type(self).__name__} has no list API")


@functools.cache
def peer(module: str) -> Any:
    """A peer library's module, imported on first use: the peers are only installed with
    the bench group, so nothing imports them at the top and they are typed Any."""
    return importlib.import_module(module)


def sqlite_url(path: str) -> str:
    return f"sqlite:///{path}"


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def with_driver(dsn: str, driver: str) -> str:
    """`postgresql+driver://...` for SQLAlchemy."""
    rest = dsn.split("://", 1)[1]
    return f"postgresql+{driver}://{rest}"


async def read_pragmas(run: Callable[[str], Awaitable[Any]]) -> tuple[Any, Any]:
    return await run("PRAGMA journal_mode"), await run("PRAGMA synchronous")


class Aisopod(Contender):
    """aisopod-session, sync API."""

    def __init__(self, synchronous: str = "FULL") -> None:
        self.synchronous = synchronous
        self.store: Any = None

    async def open(self, target: str) -> None:
        if is_postgres(target):
            self.store = open_store(target)
        else:
            self.path = Path(target)
            self.store = open_store(sqlite_url(target), synchronous=self.synchronous)

    async def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def _sync_store(self) -> Any:
        return self.store

    async def durability(self, handle: Any) -> Durability:
        store = self._sync_store()
        with engine_of(store).backend.read() as tx:
            if self.path is None:
                commit = tx.execute("SHOW synchronous_commit").fetchone()[0]
                fsync = tx.execute("SHOW fsync").fetchone()[0]
                return pg_durability(commit, fsync, "SHOW on its connection")
            journal = tx.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = tx.execute("PRAGMA synchronous").fetchone()[0]
        return sqlite_durability(journal, synchronous, "PRAGMA on its connection")

    async def session(self, name: str) -> Any:
        return self._sync_store().get_or_create(f"agent:main:{name}").id

    def native(self, n: int) -> Any:
        return message(n)

    def append_one(self, handle: Any, message: Any) -> Any:
        return self.store.append(handle, message)

    def append_many(self, handle: Any, messages: list[Any]) -> Any:
        return self.store.append(handle, messages)

    def last50(self, handle: Any) -> Any:
        return self.store.history(handle, last=LAST)

    def list50(self) -> Any:
        return self.store.list(limit=LAST)

    async def make_sessions(self, start: int, stop: int) -> None:
        store = self._sync_store()
        for n in range(start, stop):
            store.get_or_create(f"agent:main:chat-{n}")


class AisopodAsync(Aisopod):
    """aisopod-session, async API (`open_async_store`)."""

    is_async = True

    async def open(self, target: str) -> None:
        if is_postgres(target):
            self.store = open_async_store(target)
        else:
            self.path = Path(target)
            self.store = open_async_store(sqlite_url(target), synchronous=self.synchronous)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.aclose()

    def _sync_store(self) -> Any:
        return self.store.sync


class Floor(Contender):
    """Hand-written sqlite3 on a minimal schema: the least any store could do."""

    def __init__(self, synchronous: str = "FULL") -> None:
        self.synchronous = synchronous
        self.db: sqlite3.Connection | None = None
        self.seqs: dict[int, int] = {}

    async def open(self, target: str) -> None:
        self.path = Path(target)
        db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        db.executescript(
            "CREATE TABLE IF NOT EXISTS sessions (sid INTEGER PRIMARY KEY, key TEXT NOT NULL"
            " UNIQUE, updated_at INTEGER NOT NULL, message_count INTEGER NOT NULL DEFAULT 0);"
            "CREATE INDEX IF NOT EXISTS sessions_by_updated ON sessions (updated_at, sid);"
            "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, sid INTEGER NOT NULL,"
            " seq INTEGER NOT NULL, payload TEXT NOT NULL, UNIQUE (sid, seq));"
        )
        self.db = db

    async def close(self) -> None:
        if self.db is not None:
            self.db.close()

    async def durability(self, handle: Any) -> Durability:
        assert self.db is not None
        journal = self.db.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = self.db.execute("PRAGMA synchronous").fetchone()[0]
        return sqlite_durability(journal, synchronous, "PRAGMA on its connection")

    async def session(self, name: str) -> Any:
        assert self.db is not None
        cursor = self.db.execute(
            "INSERT INTO sessions (key, updated_at) VALUES (?, ?)", (name, time.time_ns())
        )
        sid = cursor.lastrowid
        assert sid is not None
        self.seqs[sid] = 0
        return sid

    def native(self, n: int) -> Any:
        role = "user" if is_user(n) else "assistant"
        return orjson.dumps({"role": role, "content": text(n)}).decode()

    def append_one(self, handle: Any, message: Any) -> Any:
        self.append_many(handle, [message])

    def append_many(self, handle: Any, messages: list[Any]) -> Any:
        db = self.db
        assert db is not None
        first = self.seqs[handle] + 1
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO messages (sid, seq, payload) VALUES (?, ?, ?)",
                [(handle, first + k, payload) for k, payload in enumerate(messages)],
            )
            db.execute(
                "UPDATE sessions SET updated_at = ?, message_count = message_count + ?"
                " WHERE sid = ?",
                (time.time_ns(), len(messages), handle),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.seqs[handle] = first + len(messages) - 1

    def last50(self, handle: Any) -> Any:
        assert self.db is not None
        rows = self.db.execute(
            "SELECT seq, payload FROM messages WHERE sid = ? ORDER BY seq DESC LIMIT ?",
            (handle, LAST),
        ).fetchall()
        return [(seq, orjson.loads(payload)) for seq, payload in reversed(rows)]

    def list50(self) -> Any:
        assert self.db is not None
        return self.db.execute(
            "SELECT sid, key, updated_at, message_count FROM sessions"
            " ORDER BY updated_at DESC, sid DESC LIMIT ?",
            (LAST,),
        ).fetchall()

    async def make_sessions(self, start: int, stop: int) -> None:
        assert self.db is not None
        self.db.execute("BEGIN")
        self.db.executemany(
            "INSERT INTO sessions (key, updated_at) VALUES (?, ?)",
            [(f"chat-{n}", time.time_ns()) for n in range(start, stop)],
        )
        self.db.execute("COMMIT")


class OwnSchemaWork(Protocol):
    """What both raw floors on our own schema do (`_schema_floor.py`, `_pg_schema_floor.py`)."""

    def new_session(self, key: str) -> str: ...
    def append(self, session_id: str, messages: Sequence[Message]) -> None: ...
    def last(self, session_id: str, count: int) -> list[Any]: ...
    def close(self) -> None: ...


class OwnSchemaFloor(Contender):
    """A raw floor on aisopod-session's own schema: what our entries cost to write and
    read with nothing of the library around them, so the least any implementation of
    this data model could do. Each backend's floor says how it opens and how durable it is."""

    list_api = False
    floor: OwnSchemaWork | None = None

    async def close(self) -> None:
        if self.floor is not None:
            self.floor.close()

    async def session(self, name: str) -> Any:
        assert self.floor is not None
        return self.floor.new_session(f"agent:main:{name}")

    def native(self, n: int) -> Any:
        return message(n)

    def append_one(self, handle: Any, message: Any) -> Any:
        assert self.floor is not None
        self.floor.append(handle, [message])

    def append_many(self, handle: Any, messages: list[Any]) -> Any:
        assert self.floor is not None
        self.floor.append(handle, messages)

    def last50(self, handle: Any) -> Any:
        assert self.floor is not None
        return self.floor.last(handle, LAST)


class SchemaFloor(OwnSchemaFloor):
    """Hand-written sqlite3 on our schema (benchmarks/_schema_floor.py)."""

    def __init__(self, synchronous: str = "FULL") -> None:
        self.synchronous = synchronous
        self.sqlite: SqliteSchemaFloor | None = None

    async def open(self, target: str) -> None:
        self.path = Path(target)
        self.floor = self.sqlite = SqliteSchemaFloor(self.path, self.synchronous)

    async def durability(self, handle: Any) -> Durability:
        assert self.sqlite is not None
        journal = self.sqlite.db.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = self.sqlite.db.execute("PRAGMA synchronous").fetchone()[0]
        return sqlite_durability(journal, synchronous, "PRAGMA on its connection")


class PgSchemaFloorContender(OwnSchemaFloor):
    """Hand-written psycopg on our PostgreSQL schema (benchmarks/_pg_schema_floor.py)."""

    def __init__(self) -> None:
        self.pg: PgSchemaFloor | None = None

    async def open(self, target: str) -> None:
        self.floor = self.pg = PgSchemaFloor(target)

    async def durability(self, handle: Any) -> Durability:
        assert self.pg is not None
        found = self.pg.db.execute(
            "SELECT current_setting('synchronous_commit'), current_setting('fsync')"
        ).fetchone()
        assert found is not None
        return pg_durability(found[0], found[1], "SHOW on its connection")


def oa_item(n: int) -> dict[str, Any]:
    return {"role": "user" if is_user(n) else "assistant", "content": text(n)}


class OpenAISession(Contender):
    """The OpenAI Agents SDK's `Session` protocol: what both its stores are driven by."""

    is_async = True
    list_api = False

    def native(self, n: int) -> Any:
        return oa_item(n)

    def append_one(self, handle: Any, message: Any) -> Any:
        return handle.add_items([message])

    def append_many(self, handle: Any, messages: list[Any]) -> Any:
        return handle.add_items(messages)

    def last50(self, handle: Any) -> Any:
        return handle.get_items(limit=LAST)


class OpenAISQLite(OpenAISession):
    """OpenAI Agents SDK `SQLiteSession` (sqlite3 in worker threads)."""

    def __init__(self) -> None:
        self.sessions: list[Any] = []

    async def open(self, target: str) -> None:
        self.path = Path(target)

    async def close(self) -> None:
        for session in self.sessions:
            session.close()

    async def durability(self, handle: Any) -> Durability:
        # The session's own (thread-local) connection, made as its operations make it.
        connection = handle._get_connection()
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
        return sqlite_durability(journal, synchronous, "PRAGMA on its connection")

    async def session(self, name: str) -> Any:
        session = peer("agents").SQLiteSession(name, str(self.path))
        self.sessions.append(session)
        return session


async def sa_async_pragmas(engine: Any) -> Durability:
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":

            async def one(sql: str) -> Any:
                return (await connection.exec_driver_sql(sql)).scalar()

            journal, synchronous = await read_pragmas(one)
            return sqlite_durability(journal, synchronous, "PRAGMA on its engine")
        commit = (await connection.exec_driver_sql("SHOW synchronous_commit")).scalar()
        fsync = (await connection.exec_driver_sql("SHOW fsync")).scalar()
        return pg_durability(commit, fsync, "SHOW on its engine")


class OpenAISQLAlchemy(OpenAISession):
    """OpenAI Agents SDK `SQLAlchemySession` on one shared async engine."""

    def __init__(self) -> None:
        self.engine: Any = None
        self.tables_made = False

    async def open(self, target: str) -> None:
        create_async_engine = peer("sqlalchemy.ext.asyncio").create_async_engine
        if is_postgres(target):
            self.engine = create_async_engine(with_driver(target, "asyncpg"))
        else:
            self.path = Path(target)
            self.engine = create_async_engine(f"sqlite+aiosqlite:///{target}")

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()

    async def durability(self, handle: Any) -> Durability:
        return await sa_async_pragmas(self.engine)

    async def session(self, name: str) -> Any:
        SQLAlchemySession = peer("agents.extensions.memory").SQLAlchemySession
        # The first session object creates the tables, before any timing; the
        # others do not look for them again.
        session = SQLAlchemySession(name, engine=self.engine, create_tables=not self.tables_made)
        if not self.tables_made:
            await session.get_items(limit=1)
            self.tables_made = True
        return session


class AdkBase(Contender):
    """Google ADK session services: one transaction per event, no batch API."""

    is_async = True
    batch_api = False

    def __init__(self) -> None:
        self.service: Any = None
        self.config: Any = None

    async def close(self) -> None:
        if self.service is not None:
            await self.service.close()

    async def session(self, name: str) -> Any:
        config = peer("google.adk.sessions.base_session_service").GetSessionConfig
        self.config = config(num_recent_events=LAST)
        return await self.service.create_session(app_name=APP, user_id="u0", session_id=name)

    def native(self, n: int) -> Any:
        Event = peer("google.adk.events").Event
        types = peer("google.genai.types")
        user = is_user(n)
        return Event(
            invocation_id=f"inv-{n // 2}",
            author="user" if user else "assistant",
            content=types.Content(
                role="user" if user else "model", parts=[types.Part(text=text(n))]
            ),
        )

    def append_one(self, handle: Any, message: Any) -> Any:
        return self.service.append_event(handle, message)

    async def append_many(self, handle: Any, messages: list[Any]) -> Any:
        for message in messages:
            await self.service.append_event(handle, message)

    def last50(self, handle: Any) -> Any:
        return self.service.get_session(
            app_name=APP, user_id=handle.user_id, session_id=handle.id, config=self.config
        )

    async def list50(self) -> Any:
        # No limit or page parameter: every session of the app comes back, oldest first.
        response = await self.service.list_sessions(app_name=APP)
        return response.sessions[-LAST:]

    async def make_sessions(self, start: int, stop: int) -> None:
        for n in range(start, stop):
            await self.service.create_session(
                app_name=APP, user_id=f"user{n % 100}", session_id=f"chat-{n}"
            )


class AdkDatabase(AdkBase):
    """Google ADK `DatabaseSessionService` (SQLAlchemy async engine)."""

    async def open(self, target: str) -> None:
        DatabaseSessionService = peer("google.adk.sessions").DatabaseSessionService
        if is_postgres(target):
            url = with_driver(target, "asyncpg")
        else:
            self.path = Path(target)
            url = f"sqlite+aiosqlite:///{target}"
        self.service = DatabaseSessionService(db_url=url)

    async def durability(self, handle: Any) -> Durability:
        return await sa_async_pragmas(self.service.db_engine)


class AdkSqlite(AdkBase):
    """Google ADK `SqliteSessionService` (aiosqlite, a new connection per call)."""

    async def open(self, target: str) -> None:
        module = peer("google.adk.sessions.sqlite_session_service")
        self.path = Path(target)
        self.service = module.SqliteSessionService(db_path=target)

    async def durability(self, handle: Any) -> Durability:
        # It opens a fresh aiosqlite (sqlite3) connection per call and sets only
        # foreign_keys on it: a fresh connection shows what its calls run with.
        assert self.path is not None
        async with peer("aiosqlite").connect(self.path) as connection:

            async def one(sql: str) -> Any:
                async with connection.execute(sql) as cursor:
                    row = await cursor.fetchone()
                    return row[0] if row else None

            journal, synchronous = await read_pragmas(one)
        return sqlite_durability(journal, synchronous, "PRAGMA on a connection like its own")


class LangChain(Contender):
    """LangChain `SQLChatMessageHistory` (sync SQLAlchemy engine)."""

    list_api = False

    def __init__(self) -> None:
        self.engine: Any = None

    async def open(self, target: str) -> None:
        create_engine = peer("sqlalchemy").create_engine
        if is_postgres(target):
            self.engine = create_engine(with_driver(target, "psycopg"))
        else:
            self.path = Path(target)
            self.engine = create_engine(f"sqlite:///{target}")

    async def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    async def durability(self, handle: Any) -> Durability:
        with self.engine.connect() as connection:
            if self.engine.dialect.name == "sqlite":
                journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
                synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
                return sqlite_durability(journal, synchronous, "PRAGMA on its engine")
            commit = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
            fsync = connection.exec_driver_sql("SHOW fsync").scalar()
        return pg_durability(commit, fsync, "SHOW on its engine")

    async def session(self, name: str) -> Any:
        module = peer("langchain_community.chat_message_histories")
        return module.SQLChatMessageHistory(session_id=name, connection=self.engine)

    def native(self, n: int) -> Any:
        messages = peer("langchain_core.messages")
        return (
            messages.HumanMessage(content=text(n))
            if is_user(n)
            else messages.AIMessage(content=text(n))
        )

    def append_one(self, handle: Any, message: Any) -> Any:
        handle.add_messages([message])

    def append_many(self, handle: Any, messages: list[Any]) -> Any:
        handle.add_messages(messages)

    def last50(self, handle: Any) -> Any:
        # No "last N": the whole session is read and decoded, then sliced.
        return handle.messages[-LAST:]


@dataclass
class Spec:
    """A store under test, as it appears in the table."""

    slug: str
    key: str  # the name --skip takes
    store: str
    backend: str
    make: Callable[[], Contender]
    groups: frozenset[str]
    ours: bool = False
    sync_us: bool = False  # the synchronous aisopod-session store: "us"
    level: str = "FULL"
    twin: str | None = None  # reads and listing reuse this spec's database
    how: dict[str, str] = field(default_factory=dict)


ALL_GROUPS = frozenset({"single", "batch", "read", "list"})
WRITES = frozenset({"single", "batch"})
PEER_KEYS = (
    "aisopod-async",
    "floor",
    "schema-floor",
    "openai-sqlite",
    "openai-sqlalchemy",
    "adk-database",
    "adk-sqlite",
    "langchain",
    "postgresql",
)

HOW = {
    "aisopod": {
        "single": "append(id, message)",
        "batch": "append(id, 1,000 messages): one transaction",
        "read": "history(id, last=50)",
        "list": "list(limit=50)",
    },
    "floor": {
        "single": "INSERT + UPDATE session, one transaction",
        "batch": "executemany + UPDATE, one transaction",
        "read": "SELECT ... ORDER BY seq DESC LIMIT 50, JSON-decoded",
        "list": "SELECT ... ORDER BY updated_at DESC LIMIT 50",
    },
    "schema-floor": {
        "single": "serialize, INSERT entry + UPDATE session (+ FTS per 256 rows), one transaction",
        "batch": "serialize, executemany + FTS + UPDATE session, one transaction",
        "read": "the store's SELECT of an entry's columns, LIMIT 51, payloads JSON-decoded",
    },
    "pg-schema-floor": {
        "single": "serialize, UPDATE session ... RETURNING it as it was (locked), INSERT entry,"
        " one transaction",
        "batch": "serialize, UPDATE session ... RETURNING it as it was (locked), COPY entries,"
        " one transaction",
        "read": "the store's SELECT of an entry's columns, LIMIT 51, payloads JSON-decoded",
    },
    "openai": {
        "single": "await add_items([item])",
        "batch": "await add_items(1,000 items): one transaction",
        "read": "await get_items(limit=50)",
        "list": "no API (the Session protocol has no listing)",
    },
    "adk": {
        "single": "await append_event(session, event)",
        "batch": "no batch API: 1,000 append_event calls, one transaction each",
        "read": "await get_session(config=GetSessionConfig(num_recent_events=50))",
        "list": "await list_sessions(app_name): returns all sessions, sliced to 50",
    },
    "langchain": {
        "single": "add_messages([message])",
        "batch": "add_messages(1,000 messages): one transaction",
        "read": "messages[-50:]: no last-N API, the whole session is loaded",
        "list": "no API",
    },
}


def make_specs(postgres: str | None, skip: set[str]) -> list[Spec]:
    def keep(key: str) -> bool:
        return key not in skip

    specs = [
        Spec(
            "aisopod-full",
            "aisopod",
            "aisopod-session",
            "SQLite",
            functools.partial(Aisopod, "FULL"),
            ALL_GROUPS,
            ours=True,
            sync_us=True,
            level="FULL",
            how=HOW["aisopod"],
        ),
        Spec(
            "aisopod-normal",
            "aisopod",
            "aisopod-session",
            "SQLite",
            functools.partial(Aisopod, "NORMAL"),
            WRITES,
            ours=True,
            sync_us=True,
            level="NORMAL",
            how=HOW["aisopod"],
        ),
    ]
    if keep("aisopod-async"):
        specs.append(
            Spec(
                "aisopod-async",
                "aisopod-async",
                "aisopod-session async",
                "SQLite",
                functools.partial(AisopodAsync, "FULL"),
                ALL_GROUPS,
                ours=True,
                twin="aisopod-full",
                how={k: f"await {v}" for k, v in HOW["aisopod"].items()},
            )
        )
    floors: list[tuple[str, str, str, Callable[[str], Contender], frozenset[str]]] = [
        ("floor", "floor", "raw sqlite3 floor", Floor, ALL_GROUPS),
        (
            "schema-floor",
            "floor-schema",
            "raw sqlite3, aisopod's schema",
            SchemaFloor,
            WRITES | {"read"},
        ),
    ]
    for key, slug, store, floor, groups in floors:
        if keep(key):
            specs.extend(
                Spec(
                    f"{slug}-{level.lower()}",
                    key,
                    store,
                    "SQLite",
                    functools.partial(floor, level),
                    groups if level == "FULL" else WRITES,
                    level=level,
                    how=HOW[key],
                )
                for level in ("FULL", "NORMAL")
            )
    peers = [
        ("openai-sqlite", "openai-agents SQLiteSession", OpenAISQLite, "openai"),
        (
            "openai-sqlalchemy",
            "openai-agents SQLAlchemySession, aiosqlite",
            OpenAISQLAlchemy,
            "openai",
        ),
        ("adk-database", "google-adk DatabaseSessionService, aiosqlite", AdkDatabase, "adk"),
        ("adk-sqlite", "google-adk SqliteSessionService", AdkSqlite, "adk"),
        ("langchain", "langchain SQLChatMessageHistory, SQLite", LangChain, "langchain"),
    ]
    for key, store, cls, family in peers:
        if keep(key):
            specs.append(Spec(key, key, store, "SQLite", cls, ALL_GROUPS, how=HOW[family]))
    if postgres and keep("postgresql"):
        pg_peers: list[tuple[str, str, Callable[[], Contender], str, bool]] = [
            ("aisopod", "aisopod-session, PostgreSQL", Aisopod, "aisopod", True),
            ("aisopod-async", "aisopod-session async, PostgreSQL", AisopodAsync, "aisopod", True),
            (
                "openai-sqlalchemy",
                "openai-agents SQLAlchemySession, PostgreSQL (asyncpg)",
                OpenAISQLAlchemy,
                "openai",
                False,
            ),
            (
                "adk-database",
                "google-adk DatabaseSessionService, PostgreSQL (asyncpg)",
                AdkDatabase,
                "adk",
                False,
            ),
            (
                "langchain",
                "langchain SQLChatMessageHistory, PostgreSQL (psycopg)",
                LangChain,
                "langchain",
                False,
            ),
        ]
        for key, store, factory, family, ours in pg_peers:
            if not keep(key):
                continue
            how = HOW[family]
            if key == "aisopod-async":
                how = {k: f"await {v}" for k, v in how.items()}
            specs.append(
                Spec(
                    f"pg-{key}",
                    key,
                    store,
                    "PostgreSQL",
                    factory,
                    ALL_GROUPS,
                    ours=ours,
                    twin="pg-aisopod" if key == "aisopod-async" else None,
                    how=how,
                )
            )
        if keep("schema-floor"):
            # Its slug is a schema floor's: `targets` holds the batch rows to it.
            specs.append(
                Spec(
                    "floor-schema-pg",
                    "schema-floor",
                    "raw psycopg, aisopod's schema",
                    "PostgreSQL",
                    PgSchemaFloorContender,
                    WRITES | {"read"},
                    how=HOW["pg-schema-floor"],
                )
            )
    return specs


# --- PostgreSQL scratch databases ------------------------------------------------------


class Scratch:
    """Databases of our own on the PostgreSQL server, dropped at the end."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        if dsn.startswith("postgres://"):
            dsn = "postgresql://" + dsn[len("postgres://") :]
        self.dsn = dsn
        self.admin: Any = psycopg.connect(dsn, autocommit=True)
        self.prefix = f"aisopod_peers_{os.getpid()}"
        self.made: list[str] = []

    def settings(self) -> dict[str, str]:
        names = ("server_version", "synchronous_commit", "fsync", "wal_sync_method")
        return {n: str(self.admin.execute(f"SHOW {n}").fetchone()[0]) for n in names}

    def create(self, tag: str) -> str:
        name = re.sub(r"[^a-z0-9_]", "_", f"{self.prefix}_{tag}".lower())[:63]
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        parts = urlsplit(self.dsn)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))

    def close(self) -> None:
        for name in self.made:
            with contextlib.suppress(Exception):
                self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.close()


# --- measuring -------------------------------------------------------------------------


@dataclass
class Config:
    sizes: tuple[int, ...]
    sessions: int
    rounds: int
    round_time: float
    budget: float  # seconds for one read
    build_budget: float  # seconds to build one size, or the sessions to list
    caps: dict[str, float]
    groups: frozenset[str]
    root: Path
    scratch: Scratch | None


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def show(rows: list[Row], workload: str) -> None:
    """Progress: the figures of a workload as soon as they are measured."""
    for r in rows:
        if r.workload == workload:
            durability = f" ({r.durability})" if r.durability else ""
            log(f"    {r.store}{durability}: {fmt_value(r)} {r.note}".rstrip())


async def invoke(c: Contender, fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if c.is_async:
        return await result
    return result


async def timed(c: Contender, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]]) -> float:
    """Seconds per call: a plain loop for a sync API, an awaiting loop for an async one."""
    if c.is_async:
        start = time.perf_counter()
        for args in calls:
            await fn(*args)
        elapsed = time.perf_counter() - start
    else:
        start = time.perf_counter()
        for args in calls:
            fn(*args)
        elapsed = time.perf_counter() - start
    return elapsed / len(calls)


@dataclass
class Trial:
    slug: str
    run: Callable[[int], Awaitable[float]]  # ops -> seconds per op
    cap: float
    max_ops: int = 1
    warmup: Callable[[], Awaitable[Any]] | None = None
    estimate: float | None = None
    samples: list[float] = field(default_factory=list)
    ops: int = 1
    wanted: int = 1
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def describe(err: BaseException) -> str:
    message = " ".join(str(err).split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


async def interleave(trials: list[Trial], rounds: int, round_time: float) -> None:
    """Calibrate each trial, then run rounds of all of them in turn (the first to go
    changes every round); each trial's figure is its median round."""
    live: list[Trial] = []
    for t in trials:
        try:
            if t.warmup is not None and (t.estimate is None or t.estimate < 1.0):
                await t.warmup()
            first = await t.run(1)
        except Exception as err:
            t.error = describe(err)
            continue
        t.ops = max(1, min(t.max_ops, int(round_time / max(first, 1e-9))))
        t.wanted = max(1, min(rounds, int(t.cap / max(t.ops * first, 1e-9))))
        if t.ops == 1:
            t.samples.append(first)  # a whole round already
        live.append(t)
    for r in range(rounds):
        k = r % len(live) if live else 0
        for t in live[k:] + live[:k]:
            if t.error is None and len(t.samples) < t.wanted:
                try:
                    t.samples.append(await t.run(t.ops))
                except Exception as err:
                    t.error = describe(err)


def checkpointed_size(path: Path) -> int:
    """Bytes of the database file and its WAL after a checkpoint."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


# --- the workloads ---------------------------------------------------------------------


@dataclass
class Entrant:
    """A spec opened for one workload."""

    spec: Spec
    contender: Contender
    target: str
    handle: Any = None
    durability: Durability = UNKNOWN
    error: str | None = None


async def enter(spec: Spec, cfg: Config, group: str, targets: dict[str, str]) -> Entrant:
    """Open the spec's store on a database of its own for this workload (for reads and
    listing, an async twin opens its sync twin's database)."""
    contender = spec.make()
    if group in ("read", "list") and spec.twin is not None and spec.twin in targets:
        target = targets[spec.twin]
    elif spec.backend == "PostgreSQL":
        assert cfg.scratch is not None
        target = cfg.scratch.create(f"{spec.slug}_{group}")
    else:
        target = str(cfg.root / f"{spec.slug}-{group}.db")
    targets[spec.slug] = target
    entrant = Entrant(spec, contender, target)
    try:
        await contender.open(target)
    except Exception as err:
        entrant.error = describe(err)
    return entrant


async def leave(entrants: list[Entrant]) -> None:
    for e in reversed(entrants):
        with contextlib.suppress(Exception):
            await e.contender.close()
    gc.collect()


def blank_row(e: Entrant, workload: str, group: str, kind: str) -> Row:
    return Row(
        workload=workload,
        group=group,
        slug=e.spec.slug,
        store=e.spec.store,
        backend=e.spec.backend,
        durability=e.durability.text,
        level=e.durability.level if not e.spec.sync_us else e.spec.level,
        kind=kind,
        value=None,
        status="ok",
        ours=e.spec.ours,
        is_sync_us=e.spec.sync_us,
        extra={"durability_source": e.durability.source},
    )


def failed_row(e: Entrant, workload: str, group: str, kind: str) -> Row:
    row = blank_row(e, workload, group, kind)
    if e.spec.ours and e.spec.backend == "PostgreSQL":
        row.status, row.note = "not available", e.error or ""
    else:
        row.status, row.note = "failed", e.error or ""
    return row


def trial_row(e: Entrant, t: Trial, workload: str, group: str, kind: str) -> Row:
    row = blank_row(e, workload, group, kind)
    if t.error is not None or not t.samples:
        row.status, row.note = "failed", t.error or "no measurement"
        return row
    row.value = t.median
    row.samples = len(t.samples)
    row.ops_per_round = t.ops
    return row


async def prepare(entrants: list[Entrant], name: str) -> None:
    for e in entrants:
        if e.error is not None:
            continue
        try:
            e.handle = await e.contender.session(name)
            e.durability = await e.contender.durability(e.handle)
        except Exception as err:
            e.error = describe(err)


async def bench_writes(specs: list[Spec], cfg: Config, group: str) -> list[Row]:
    """One message per call, or 1,000 per call, into one session per store."""
    workload = "append 1 message per call" if group == "single" else f"append {BATCH:,} messages"
    log(f"{workload}: opening {len(specs)} stores")
    targets: dict[str, str] = {}
    entrants = [await enter(s, cfg, group, targets) for s in specs if group in s.groups]
    await prepare(entrants, group)
    trials: list[tuple[Entrant, Trial]] = []
    for e in entrants:
        if e.error is not None:
            continue
        c, counter = e.contender, itertools.count()

        if group == "single":

            async def run(ops: int, c: Contender = c, e: Entrant = e, n: Any = counter) -> float:
                messages = [c.native(next(n)) for _ in range(ops)]
                return await timed(c, c.append_one, [(e.handle, m) for m in messages])

            async def warm(c: Contender = c, e: Entrant = e) -> None:
                await invoke(c, c.append_one, e.handle, c.native(10**9))

            trial = Trial(e.spec.slug, run, cfg.caps[group], max_ops=500, warmup=warm)
        else:

            async def run(ops: int, c: Contender = c, e: Entrant = e, n: Any = counter) -> float:
                batch = [c.native(next(n)) for _ in range(BATCH)]
                return await timed(c, c.append_many, [(e.handle, batch)])

            async def warm(c: Contender = c, e: Entrant = e) -> None:
                await invoke(c, c.append_many, e.handle, [c.native(10**9 + k) for k in range(10)])

            trial = Trial(e.spec.slug, run, cfg.caps[group], max_ops=1, warmup=warm)
        trials.append((e, trial))
    log(f"{workload}: measuring")
    await interleave([t for _, t in trials], cfg.rounds, cfg.round_time)
    rows = []
    measured = {e.spec.slug: (e, t) for e, t in trials}
    for e in entrants:
        if e.spec.slug not in measured:
            rows.append(failed_row(e, workload, group, "rate" if group == "single" else "batch"))
            continue
        t = measured[e.spec.slug][1]
        row = trial_row(e, t, workload, group, "rate" if group == "single" else "batch")
        if group == "batch" and not e.contender.batch_api:
            row.note = "no batch API: 1,000 append_event calls"
        rows.append(row)
    show(rows, workload)
    await leave(entrants)
    return rows


@dataclass
class Growth:
    """A store's big session, grown size by size."""

    entrant: Entrant
    built: int = 0
    build_seconds: float = 0.0
    size0: int = 0
    last_read: tuple[int, float] | None = None
    stopped: str | None = None  # why it left the workload
    reported: bool = False  # whether a row has shown that reason already
    sizes: dict[int, int] = field(default_factory=dict)  # messages -> bytes


async def grow(g: Growth, size: int, budget: float) -> None:
    """Add messages to the big session up to `size`, in the store's fastest public way."""
    c, e = g.entrant.contender, g.entrant
    if g.built:
        estimate = g.build_seconds / g.built * size
        if estimate > budget:
            rate = g.built / g.build_seconds
            how = "" if c.batch_api else ", one append_event per message"
            g.stopped = (
                f"building {size:,} messages would take ~{estimate:,.0f} s at its"
                f" {rate:,.0f} msg/s{how} (budget {budget:,.0f} s)"
            )
            return
    start = time.perf_counter()
    while g.built < size:
        stop = min(size, g.built + BATCH)
        batch = [c.native(n) for n in range(g.built, stop)]
        await invoke(c, c.append_many, e.handle, batch)
        g.built = stop
        elapsed = time.perf_counter() - start
        if elapsed > budget and g.built < size:
            g.build_seconds += elapsed
            g.stopped = (
                f"building {size:,} messages passed the {budget:,.0f} s budget"
                f" at {g.built:,} messages"
            )
            return
    g.build_seconds += time.perf_counter() - start


async def bench_reads(specs: list[Spec], cfg: Config) -> list[Row]:
    """The last 50 messages of one session as it grows through the sizes; file sizes."""
    group = "read"
    targets: dict[str, str] = {}
    entrants = [await enter(s, cfg, group, targets) for s in specs if group in s.groups]
    await prepare(entrants, "big")
    rows: list[Row] = [
        failed_row(e, f"last {LAST} of {cfg.sizes[0]:,} messages", group, "time")
        for e in entrants
        if e.error is not None
    ]
    growths = [Growth(e) for e in entrants if e.error is None]
    by_slug = {g.entrant.spec.slug: g for g in growths}
    for g in growths:
        path = g.entrant.contender.path
        if path is not None and g.entrant.spec.twin is None:
            with contextlib.suppress(Exception):
                g.size0 = checkpointed_size(path)
    for size in cfg.sizes:
        workload = f"last {LAST} of {size:,} messages"
        for g in growths:
            if g.stopped is not None or g.entrant.spec.twin is not None:
                continue
            log(f"{workload}: building, {g.entrant.spec.store}")
            try:
                await grow(g, size, cfg.build_budget)
            except Exception as err:
                g.stopped = describe(err)
            path = g.entrant.contender.path
            if g.stopped is None and path is not None:
                with contextlib.suppress(Exception):
                    g.sizes[size] = checkpointed_size(path)
        trials: dict[str, Trial] = {}
        for g in growths:
            twin = by_slug.get(g.entrant.spec.twin or "")
            if twin is not None and g.stopped is None:
                # An async twin reads the session its sync twin built.
                g.built = twin.built
                if twin.stopped is not None:
                    g.stopped = "its sync twin has no session of this size"
            if g.stopped is not None:
                continue
            c, e = g.entrant.contender, g.entrant
            estimate = None
            if g.last_read is not None:
                previous_size, previous = g.last_read
                estimate = previous * size / previous_size
                if estimate > cfg.budget:
                    g.stopped = (
                        f"one read would take ~{estimate:,.0f} s ({previous:,.1f} s at"
                        f" {previous_size:,} messages; budget {cfg.budget:,.0f} s)"
                    )
                    continue

            async def run(ops: int, c: Contender = c, e: Entrant = e) -> float:
                return await timed(c, c.last50, [(e.handle,)] * ops)

            async def warm(c: Contender = c, e: Entrant = e) -> None:
                await invoke(c, c.last50, e.handle)

            trials[e.spec.slug] = Trial(e.spec.slug, run, cfg.caps[group], 500, warm, estimate)
        log(f"{workload}: measuring {len(trials)} stores")
        await interleave(list(trials.values()), cfg.rounds, cfg.round_time)
        for g in growths:
            e = g.entrant
            t = trials.get(e.spec.slug)
            if t is None:
                row = blank_row(e, workload, group, "time")
                row.status = "skipped"
                row.note = "skipped at a smaller size" if g.reported else (g.stopped or "")
                g.reported = True
                rows.append(row)
                continue
            row = trial_row(e, t, workload, group, "time")
            row.extra["session_built_seconds"] = round(g.build_seconds, 2)
            if row.status != "ok":
                g.stopped, g.reported = row.note, True
            else:
                g.last_read = (size, t.median)
                if row.samples < 3:
                    row.note = f"{row.samples} read{'s' if row.samples > 1 else ''}"
            rows.append(row)
        show(rows, workload)
    rows.extend(size_rows(growths))
    show(rows, "file size per 100,000 messages")
    await leave(entrants)
    return rows


def size_rows(growths: list[Growth]) -> list[Row]:
    workload = "file size per 100,000 messages"
    rows = []
    for g in growths:
        e = g.entrant
        if e.spec.backend != "SQLite" or e.spec.twin is not None:
            continue
        row = blank_row(e, workload, "size", "bytes")
        if not g.sizes:
            row.status, row.note = "skipped", "no session was built"
        else:
            at = 100_000 if 100_000 in g.sizes else max(g.sizes)
            row.value = (g.sizes[at] - g.size0) * 100_000 / at
            row.samples = 1
            row.extra.update(messages=at, bytes=g.sizes[at], empty_bytes=g.size0)
            if at != 100_000:
                row.note = f"measured at {at:,} messages, scaled"
        rows.append(row)
    return rows


async def make_sessions(c: Contender, count: int, budget: float) -> str | None:
    """Make sessions 1 to count-1 (the first exists) through the store's API, unless that
    would pass the budget: then why not."""
    start, made = time.perf_counter(), 1
    while made < count:
        step = min(count, made + 250)
        await c.make_sessions(made, step)
        made = step
        elapsed = time.perf_counter() - start
        estimate = elapsed / made * count
        if made < count and (estimate > budget * 1.2 or elapsed > budget):
            return (
                f"making {count:,} sessions would take ~{estimate:,.0f} s (budget {budget:,.0f} s)"
            )
    return None


async def bench_list(specs: list[Spec], cfg: Config) -> list[Row]:
    """The 50 most recently updated of `cfg.sessions` sessions."""
    group = "list"
    workload = f"list {LAST} of {cfg.sessions:,} sessions"
    targets: dict[str, str] = {}
    rows: list[Row] = []
    entrants: list[Entrant] = []
    for s in specs:
        if group not in s.groups:
            continue
        if not s.make().list_api:
            rows.append(
                Row(workload, group, s.slug, s.store, s.backend, "", "FULL", "time", None, "no API")
            )
            continue
        entrants.append(await enter(s, cfg, group, targets))
    await prepare(entrants, "first")
    trials: list[tuple[Entrant, Trial]] = []
    for e in entrants:
        if e.error is not None:
            rows.append(failed_row(e, workload, group, "time"))
            continue
        c = e.contender
        if e.spec.twin is None:
            log(f"{workload}: making sessions, {e.spec.store}")
            try:
                skipped = await make_sessions(c, cfg.sessions, cfg.build_budget)
                if skipped is not None:
                    row = blank_row(e, workload, group, "time")
                    row.status, row.note = "skipped", skipped
                    rows.append(row)
                    continue
            except Exception as err:
                e.error = describe(err)
                rows.append(failed_row(e, workload, group, "time"))
                continue

        async def run(ops: int, c: Contender = c) -> float:
            return await timed(c, c.list50, [()] * ops)

        async def warm(c: Contender = c) -> None:
            await invoke(c, c.list50)

        trials.append((e, Trial(e.spec.slug, run, cfg.caps[group], 500, warm)))
    log(f"{workload}: measuring {len(trials)} stores")
    await interleave([t for _, t in trials], cfg.rounds, cfg.round_time)
    for e, t in trials:
        row = trial_row(e, t, workload, group, "time")
        if isinstance(e.contender, AdkBase):
            row.note = f"list_sessions returns all {cfg.sessions:,}"
        rows.append(row)
    order = {s.slug: n for n, s in enumerate(specs)}
    rows.sort(key=lambda r: order[r.slug])
    show(rows, workload)
    await leave(entrants)
    return rows


# --- the table -------------------------------------------------------------------------


def compare(rows: list[Row]) -> None:
    """Fill in "vs us": aisopod-session (sync, SQLite) at the row's level, per workload."""
    us: dict[tuple[str, str], Row] = {}
    for r in rows:
        if r.is_sync_us and r.backend == "SQLite" and r.value is not None:
            us[(r.workload, r.level)] = r
    our_pg = {r.workload: r for r in rows if r.slug == "pg-aisopod" and r.value is not None}
    for r in rows:
        if r.value is None:
            continue
        if r.is_sync_us and r.backend == "SQLite":
            r.ratio_text = f"us ({r.level})" if r.group in WRITES else "us"
            continue
        base = us.get((r.workload, r.level)) or us.get((r.workload, "FULL"))
        if base is None or base.value is None or base.value == 0:
            continue
        r.ratio = r.value / base.value
        r.ratio_text = fmt_ratio(r.ratio)
        pg = our_pg.get(r.workload)
        if r.backend == "PostgreSQL" and not r.ours and pg is not None and pg.value:
            r.extra["vs_aisopod_postgresql"] = r.value / pg.value
            extra = f"vs aisopod-session PostgreSQL: {fmt_ratio(r.value / pg.value)}"
            r.note = f"{r.note}; {extra}" if r.note else extra


def fmt_ratio(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds:,.2f} s"


def fmt_value(r: Row) -> str:
    if r.value is None:
        return r.status
    if r.kind == "rate":
        return f"{1 / r.value:,.0f}/s"
    if r.kind == "batch":
        return f"{BATCH / r.value:,.0f} msg/s"
    if r.kind == "bytes":
        return f"{r.value / 1e6:,.1f} MB"
    return fmt_time(r.value)


def print_table(header: Sequence[str], cells: Sequence[Sequence[str]], out: Any) -> None:
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *cells]
    for n, cell in enumerate(lines):
        joint = "-|-" if n == 1 else " | "
        print(
            joint.join(str(v).ljust(w) for v, w in zip(cell, widths, strict=True)).rstrip(),
            file=out,
        )


def table_cells(rows: list[Row]) -> list[list[str]]:
    cells = []
    previous = None
    for r in rows:
        cells.append(
            [
                r.workload if r.workload != previous else "",
                r.store,
                r.durability,
                fmt_value(r),
                r.ratio_text,
                r.note,
            ]
        )
        previous = r.workload
    return cells


@dataclass
class Target:
    target: str
    ours: str
    best: str
    ratio: str
    verdict: str
    bound: str = (
        ""  # the best peer against the raw floor on our schema: the most any code could reach
    )
    needs: str = ""  # the ratio the row must reach


BATCH_FLOOR_SHARE = 0.9
"""Where the raw floor on our schema cannot reach a batch's target, the share of the
floor's ratio the row must reach instead (what the schema keeps is the design's)."""


def required_ratio(workload: str, floor_ratio: float | None) -> tuple[float, str]:
    """The least ratio to the best peer a row must reach, and how it is spelled.

    Single appends and reads: 2x. Batches of 1,000: no peer ahead (1x), or where
    the raw floor on our own schema falls short of that, BATCH_FLOOR_SHARE of the
    floor's ratio."""
    if not workload.startswith(f"append {BATCH:,}"):
        return 2.0, ">= 2x"
    if floor_ratio is not None and floor_ratio < 1.0:
        least = BATCH_FLOOR_SHARE * floor_ratio
        return least, f">= {least:.2f}x ({BATCH_FLOOR_SHARE}x the floor)"
    return 1.0, ">= 1x"


def targets(rows: list[Row], sizes: tuple[int, ...]) -> list[Target]:
    """Our targets (same backend, equal durability), against the best peer: >= 2x on
    single appends and reads; on batches no peer ahead, or, where the raw floor on our
    schema cannot get ahead either, `BATCH_FLOOR_SHARE` of the floor's ratio; and a
    last-50 read that stays flat as the session grows."""
    out: list[Target] = []
    workloads: dict[str, list[Row]] = {}
    for r in rows:
        if r.group != "size":
            workloads.setdefault(r.workload, []).append(r)
    for workload, group_rows in workloads.items():
        for backend in ("SQLite", "PostgreSQL"):
            us = [
                r
                for r in group_rows
                if r.backend == backend and r.ours and r.value is not None and r.level == "FULL"
            ]
            peers = [
                r
                for r in group_rows
                if r.backend == backend
                and not r.ours
                and not r.slug.startswith("floor")
                and r.value is not None
                and r.level == "FULL"
            ]
            if not us or not peers:
                continue
            best = min(peers, key=lambda r: r.value or 0.0)
            assert best.value is not None
            schema_floor = [
                r
                for r in group_rows
                if r.backend == backend
                and r.slug.startswith("floor-schema")
                and r.value is not None
                and r.level == "FULL"
            ]
            floor_ratio = (
                best.value / schema_floor[0].value
                if schema_floor and schema_floor[0].value
                else None
            )
            least, needs = required_ratio(workload, floor_ratio)
            for mine in us:
                assert mine.value is not None
                ratio = best.value / mine.value
                label = "async" if "async" in mine.store else "sync"
                out.append(
                    Target(
                        f"{workload} ({backend}, {label} API)",
                        fmt_value(mine),
                        f"{best.store}: {fmt_value(best)}",
                        fmt_ratio(ratio),
                        "ok" if ratio >= least else "MISSED",
                        fmt_ratio(floor_ratio) if floor_ratio is not None else "",
                        needs,
                    )
                )
    if len(sizes) > 1:
        first, last = sizes[0], sizes[-1]
        reads = [r for r in rows if r.group == "read"]
        by_slug: dict[str, dict[str, Row]] = {}
        for r in reads:
            by_slug.setdefault(r.slug, {})[r.workload] = r
        w_first = f"last {LAST} of {first:,} messages"
        w_last = f"last {LAST} of {last:,} messages"
        for found in by_slug.values():
            a, b = found.get(w_first), found.get(w_last)
            if a is None or a.value is None:
                continue
            name = a.store
            if b is None or b.value is None:
                out.append(
                    Target(
                        f"last-{LAST} read, {first:,} -> {last:,} messages",
                        "",
                        name,
                        "",
                        f"not measured at {last:,}",
                    )
                )
                continue
            growth = b.value / a.value
            flat = growth <= 1.5
            out.append(
                Target(
                    f"last-{LAST} read, {first:,} -> {last:,} messages",
                    f"{fmt_value(a)} -> {fmt_value(b)}",
                    name,
                    f"{growth:.2f}x the {first:,} time",
                    ("ok" if flat else "MISSED")
                    if a.ours and "async" not in a.store
                    else ("flat" if flat else "grows"),
                )
            )
    return out


NOTES = """\
Notes
- "vs us": the time per operation (or the file size) of the row's store divided by
  aisopod-session's (sync API, SQLite) at the same durability level; 2.00x means
  aisopod-session is twice as fast (or half the size), below 1.00x the other store is
  ahead. PostgreSQL rows compare with aisopod-session on SQLite too, and say how they
  compare with aisopod-session on PostgreSQL when it ran.
- Durability was read from each store's own connection: SQLite journal mode and
  synchronous (FULL: every acknowledged commit survives a power cut, in WAL and in
  rollback-journal mode; NORMAL may lose the last commits), PostgreSQL
  synchronous_commit and fsync. Every peer runs at FULL by default (the ADK services and
  LangChain in rollback-journal mode, which costs more fsyncs per commit), so FULL is
  the level they are compared at; aisopod-session and the floor also run at NORMAL.
- Our target: at equal durability, at least 2x the best peer on single appends and
  reads; on batches of 1,000 no peer ahead, or where the raw floor on our schema cannot
  get ahead either, 0.9x of the floor's ratio ("needs" says which); and a last-50 read
  whose cost stays flat as the session grows where the peers' grows.
  "raw floor on our schema" is the same ratio for hand-written sqlite3 (or psycopg, on
  PostgreSQL) doing the store's work on the store's schema (benchmarks/_schema_floor.py,
  benchmarks/_pg_schema_floor.py): no implementation of this data model (ids, tree,
  counters, per-entry usage, full-text index, typed entries) could beat the best peer
  by more than that on that backend.
- Same message texts for every store (alternating user and assistant, 60-230
  characters), built outside the timed loops, each store in a database of its own;
  rounds of the stores alternate and each figure is the median round.
- Reads are measured on one session grown through the sizes with each store's fastest
  public way to add messages: batches of 1,000 where there is a batch API, one
  append_event per message for ADK. A store is skipped at a size when building it would
  pass the build budget or one read the read budget; the reason is given.
- Reads do not depend on synchronous: the read and list rows use the FULL stores.
"""


def render(rows: list[Row], meta: dict[str, Any], checks: list[Target], specs: list[Spec]) -> str:
    import io

    out = io.StringIO()
    postgres = meta.get("postgresql")
    server = f", PostgreSQL {postgres['server_version']}" if postgres else ""
    print(
        f"# aisopod-session vs peers (SQLite {meta['sqlite']}, Python {meta['python']},"
        f" {meta['cpus']} cores{server})",
        file=out,
    )
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    if meta.get("source"):
        versions = versions.replace(
            "aisopod-session " + meta["versions"].get("aisopod-session", ""),
            f"aisopod-session {meta['versions'].get('aisopod-session', '')}"
            f" (commit {meta['source']})",
            1,
        )
    print(f"# {versions}", file=out)
    print(
        f"# {meta['rounds']} rounds; budgets: {meta['build_budget_seconds']:,.0f} s to build a"
        f" size, {meta['budget_seconds']:,.0f} s for one read; run took {meta['seconds']:,.0f} s",
        file=out,
    )
    print(file=out)
    print_table(
        ("workload", "store", "durability", "result", "vs us", "notes"), table_cells(rows), out
    )
    print(file=out)
    if checks:
        print_table(
            (
                "target (equal durability, same backend)",
                "us",
                "best peer",
                "ratio",
                "needs",
                "",
                "raw floor on our schema",
            ),
            [[c.target, c.ours, c.best, c.ratio, c.needs, c.verdict, c.bound] for c in checks],
            out,
        )
        print(file=out)
    print(NOTES, file=out)
    print("How each store does each operation", file=out)
    seen: set[str] = set()
    for s in specs:
        if s.store in seen:
            continue
        seen.add(s.store)
        ops = "; ".join(f"{g}: {h}" for g, h in s.how.items())
        print(f"- {s.store}: {ops}", file=out)
    return out.getvalue()


# --- main ------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "aisopod-session",
        "openai-agents",
        "google-adk",
        "langchain-community",
        "langchain-core",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "psycopg",
    ):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = package_version(name)
    return found


def source_state() -> str:
    """The commit the measured code comes from, and whether the package was modified."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "packages"],
            cwd=here,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return ""
    if not commit:
        return ""
    return f"{commit}, with uncommitted changes" if changed else commit


def missing_peers() -> list[str]:
    missing = []
    for module in ("agents", "google.adk", "langchain_community", "aiosqlite", "greenlet"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    return missing


@contextlib.contextmanager
def workdir(given: str | None) -> Iterator[Path]:
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        yield Path(tempfile.mkdtemp(prefix="aisopod-peers-", dir=path))
        return
    with tempfile.TemporaryDirectory(prefix="aisopod-peers-") as name:
        yield Path(name)


async def run_all(specs: list[Spec], cfg: Config) -> list[Row]:
    rows: list[Row] = []
    if "single" in cfg.groups:
        rows += await bench_writes(specs, cfg, "single")
    if "batch" in cfg.groups:
        rows += await bench_writes(specs, cfg, "batch")
    if "read" in cfg.groups:
        rows += await bench_reads(specs, cfg)
    if "list" in cfg.groups:
        rows += await bench_list(specs, cfg)
    return rows


def parse_sizes(value: str) -> tuple[int, ...]:
    sizes = tuple(sorted({int(v.replace("_", "")) for v in value.split(",") if v.strip()}))
    if not sizes or sizes[0] < LAST:
        raise argparse.ArgumentTypeError(f"sizes are message counts of at least {LAST}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        epilog=f"--skip takes: {', '.join(PEER_KEYS)}",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="print the results as JSON instead of the table, or with PATH write them there"
        " and print the table too",
    )
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        default=os.environ.get(POSTGRES_ENV) or None,
        help=f"also run on PostgreSQL (default: ${POSTGRES_ENV}); scratch databases are"
        f" created and dropped on that server; {EMBEDDED!r} runs a throwaway server",
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        help="messages in the read session (default 1000,100000,1000000)",
    )
    parser.add_argument("--sessions", type=int, help="sessions for the listing (default 10000)")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 15)")
    parser.add_argument(
        "--budget", type=float, help="seconds a store may take to read once (default 60)"
    )
    parser.add_argument(
        "--build-budget",
        type=float,
        help="seconds a store may take to build a session of one size, or to make the"
        " sessions to list (default 180)",
    )
    parser.add_argument(
        "--skip", action="append", default=[], metavar="PEER", help="leave a store out (repeatable)"
    )
    parser.add_argument(
        "--workloads",
        default="single,batch,read,list,adapters",
        help="a subset of single,batch,read,list,adapters (read includes the file size;"
        " adapters runs benchmarks/adapters.py, the framework adapters against the stores"
        " they replace)",
    )
    parser.add_argument("--dir", help="where the SQLite files go (default: a temporary folder)")
    args = parser.parse_args(argv)

    skip = {k.strip() for item in args.skip for k in item.split(",") if k.strip()}
    unknown = skip - set(PEER_KEYS)
    if unknown:
        parser.error(f"unknown --skip {', '.join(sorted(unknown))}; known: {', '.join(PEER_KEYS)}")
    groups = frozenset(w.strip() for w in args.workloads.split(",") if w.strip())
    adapters = "adapters" in groups
    groups -= {"adapters"}
    if not groups <= ALL_GROUPS:
        parser.error(f"--workloads takes {', '.join(sorted(ALL_GROUPS | {'adapters'}))}")
    # The peers' imports and calls warn about deprecations and experimental features,
    # and ADK logs at WARNING; none of it is about this benchmark.
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    missing = missing_peers()
    if missing:
        print(
            f"the peers are not installed ({', '.join(missing)} missing): run with"
            " `uv run --group bench python benchmarks/peers.py`",
            file=sys.stderr,
        )
        return 2

    quick = args.quick
    sizes = args.sizes or ((1_000, 10_000) if quick else (1_000, 100_000, 1_000_000))
    caps = (
        {"single": 1.0, "batch": 3.0, "read": 2.0, "list": 2.0}
        if quick
        else {"single": 4.0, "batch": 25.0, "read": 15.0, "list": 10.0}
    )
    with postgres_dsn(args.postgres or "") as dsn:
        status = 0
        if groups:
            status = run_peers(
                args, quick=quick, sizes=sizes, caps=caps, groups=groups, skip=skip, dsn=dsn
            )
        if adapters and status == 0:
            # The same stores through the frameworks' protocols (benchmarks/adapters.py).
            import adapters as through_adapters

            status = through_adapters.main(
                [*(["--quick"] if quick else []), *(["--postgres", dsn] if dsn else [])]
            )
        return status


def run_peers(
    args: argparse.Namespace,
    *,
    quick: bool,
    sizes: tuple[int, ...],
    caps: dict[str, float],
    groups: frozenset[str],
    skip: set[str],
    dsn: str,
) -> int:
    scratch: Scratch | None = None
    pg_settings: dict[str, str] | None = None
    if dsn:
        try:
            scratch = Scratch(dsn)
            pg_settings = scratch.settings()
        except Exception as err:
            print(f"PostgreSQL at {dsn} is not usable: {describe(err)}", file=sys.stderr)
            return 2
    specs = make_specs(dsn if scratch else None, skip)
    meta: dict[str, Any] = {
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "versions": versions(),
        "source": source_state(),
        "postgresql": pg_settings,
        "sizes": sizes,
        "sessions": args.sessions or (1_000 if quick else 10_000),
        "rounds": args.rounds or (3 if quick else 15),
        "budget_seconds": args.budget or (10.0 if quick else 60.0),
        "build_budget_seconds": args.build_budget or (15.0 if quick else 180.0),
        "quick": quick,
    }
    started = time.perf_counter()
    try:
        with workdir(args.dir) as root:
            cfg = Config(
                sizes=sizes,
                sessions=meta["sessions"],
                rounds=meta["rounds"],
                round_time=0.05 if quick else 0.2,
                budget=meta["budget_seconds"],
                build_budget=meta["build_budget_seconds"],
                caps=caps,
                groups=groups,
                root=root,
                scratch=scratch,
            )
            rows = asyncio.run(run_all(specs, cfg))
    finally:
        if scratch is not None:
            scratch.close()
    meta["seconds"] = round(time.perf_counter() - started, 1)
    compare(rows)
    checks = targets(rows, sizes)
    document = {
        "meta": meta,
        "rows": [asdict(r) for r in rows],
        "targets": [asdict(c) for c in checks],
    }
    if args.json == "-":
        print(json.dumps(document, indent=2, default=str))
    else:
        if args.json:
            Path(args.json).write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(render(rows, meta, checks, specs))
    log(f"done in {meta['seconds']:,.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
