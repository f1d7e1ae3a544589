"""The framework adapters against the stores they replace, through the frameworks' own APIs.

    uv run --group bench python benchmarks/adapters.py             # SQLite (about 3 minutes)
    uv run --group bench python benchmarks/adapters.py --postgres embedded   # and PostgreSQL
    uv run --group bench python benchmarks/adapters.py --quick     # small sizes: a smoke test
    uv run --group bench python benchmarks/adapters.py --postgres DSN --only postgresql,langchain
    uv run --group bench python benchmarks/peers.py --workloads adapters    # the same, from peers

What a user of a framework swaps is one line (`AisopodSession("user-42")` for
`SQLiteSession("user-42")`), so each row times that line's object through
the framework's protocol, against the peer it replaces, in the same process,
rounds of the two alternating; each figure is the median round. Both sides
make every commit durable: the peers' SQLite files are switched to WAL with
synchronous=FULL (their default rollback journal is slower, and the
comparison would flatter us), and ours run at the store's default, FULL.

- OpenAI Agents SDK: `AisopodSession` against `SQLiteSession` (and against
  `SQLAlchemySession` on asyncpg, on PostgreSQL);
- LangChain: `AisopodChatMessageHistory` against `SQLChatMessageHistory`
  (SQLAlchemy, psycopg on PostgreSQL);
- the async store's `history(last=50)` against the same call on the sync store
  (on SQLite such a small read runs on the event loop's own thread when it
  can without waiting, see `AsyncSessionStore`; on PostgreSQL it goes to a
  worker thread, and the row measures that hand-off).

`--only` runs some of the rows: those of the backends (`sqlite`, `postgresql`)
and of the frameworks (`sdk`, `langchain`, `async`) it names, every backend
or framework when it names none of them.

"ratio" is their time over ours (for the async row: the async call's time over
the sync call's), and "target" what the row must reach. The SDK's SQLite adds
also run two references, each through the same thread hand-off as both
stores (`asyncio.to_thread`: SQLite has no asynchronous I/O, and a store that
waits for a durable commit on the event loop's thread stalls everything else
the loop serves):

- "bound": a bare durable commit of the same rows' JSON into a one-column
  table (raw `sqlite3`, WAL, FULL): the most any store could reach;
- "floor": the raw floor on our own schema (`_schema_floor.py`: hand-written
  `sqlite3` storing the same entries, item and native message, with nothing
  of the library around it): the most any implementation of our data model
  could reach.

Each is their time over the reference's. For the 1,000-item add, where the
floor itself falls short of the target, the row is met at 0.9x of the floor's
ratio (the rule the adapters issue sets for batches); for the single add and
the turn the floor is shown, and the target stays.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _postgres import EMBEDDED, postgres_dsn
from _schema_floor import SchemaFloor
from peers import peer, text  # the peer benchmark's imports of peers, and its message texts

from aisopod_session import Message, open_async_store, open_store
from aisopod_shared import TextPart

POSTGRES_ENV = "AISOPOD_TEST_POSTGRES_DSN"
LAST = 50
TURN = 4
CONCURRENT = 64
FLOOR_SHARE = 0.9
"""Where the schema floor cannot reach a target, the share of its ratio a row must reach."""


def sdk_item(n: int) -> dict[str, Any]:
    """The n-th item as the SDK's runner stores it (user input, model output)."""
    if n % 2 == 0:
        return {"role": "user", "content": text(n)}
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text(n), "annotations": []}],
    }


def floor_message(n: int) -> Message:
    """The entry `AisopodSession` stores for `sdk_item(n)`: its native message, which
    keeps the item itself (the payload the schema floor writes)."""
    return Message(
        "user" if n % 2 == 0 else "assistant",
        (TextPart(text(n)),),
        extra={"openaiItem": sdk_item(n)},
    )


def lc_message(n: int) -> Any:
    from langchain_core.messages import AIMessage, HumanMessage

    return HumanMessage(text(n)) if n % 2 == 0 else AIMessage(text(n))


# --- results -----------------------------------------------------------------------------


@dataclass
class Result:
    """One row: a workload on a backend, ours against theirs."""

    workload: str
    backend: str
    theirs_name: str
    theirs: float  # seconds per operation (or per item, for rates)
    ours: float
    target: float  # the least ratio that meets it (or, for `at_most`, the most)
    unit: str  # "call" or "item"
    at_most: bool = False
    bound: float | None = None
    """Their time over a bare durable commit of the same data (raw sqlite3, or one
    psycopg INSERT on PostgreSQL), made as the row's API makes its calls (through a
    thread hand-off for the SDK's async one): the most any store could reach."""
    floor: float | None = None
    """Their time over the raw floor on our own schema (`_schema_floor.py`, through a
    thread hand-off)."""
    floor_sets_target: bool = False
    """Whether a floor short of the target lowers it (batches: see the module docstring)."""

    @property
    def ratio(self) -> float:
        return self.theirs / self.ours

    @property
    def least(self) -> float:
        """The ratio the row must reach: the target, or where the schema floor falls
        short of it, FLOOR_SHARE of the floor's ratio."""
        if (
            self.floor_sets_target
            and self.floor is not None
            and not self.at_most
            and self.floor < self.target
        ):
            return FLOOR_SHARE * self.floor
        return self.target

    @property
    def ok(self) -> bool:
        return self.ratio <= self.target if self.at_most else self.ratio >= self.least


def fmt(seconds: float, unit: str) -> str:
    if unit == "item":
        return f"{1 / seconds:,.0f} items/s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:,.2f} ms"
    return f"{seconds * 1e6:,.0f} µs"


def render(results: list[Result], meta: dict[str, Any]) -> str:
    header = (
        "workload",
        "backend",
        "theirs",
        "their time",
        "ours",
        "ratio",
        "target",
        "",
        "bound",
        "floor",
    )
    cells = [
        (
            r.workload,
            r.backend,
            r.theirs_name,
            fmt(r.theirs, r.unit),
            fmt(r.ours, r.unit),
            f"{r.ratio:.2f}x",
            f"{'<=' if r.at_most else '>='} {r.target:.1f}x"
            + (f" (floor: >= {r.least:.2f}x)" if r.least != r.target else ""),
            "ok" if r.ok else "MISSED",
            f"{r.bound:.2f}x" if r.bound is not None else "",
            f"{r.floor:.2f}x" if r.floor is not None else "",
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *cells]) for i in range(len(header))]
    lines = [
        "Through the adapters: their time / ours (async row: async / sync), median of"
        f" {meta['rounds']} alternating rounds; SQLite {meta['sqlite']}, Python {meta['python']}",
        "",
        "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in cells:
        lines.append(
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        )
    missed = [r for r in results if not r.ok]
    lines += [
        "",
        f'{len(results) - len(missed)} of {len(results)} rows meet their targets. "bound":'
        " their time over a bare durable commit of the same rows (raw sqlite3, WAL, FULL;"
        " on PostgreSQL one INSERT of their JSON in autocommit mode), the most any store"
        ' could reach. "floor": their time over hand-written sqlite3 storing the same'
        " entries on our own schema (benchmarks/_schema_floor.py). Both are made as the"
        " row's API makes its calls: through a thread hand-off for the SDK's async API."
        f" Where the floor falls short of a batch's target, the row must reach {FLOOR_SHARE}x"
        " of it.",
    ]
    return "\n".join(lines)


# --- timing ------------------------------------------------------------------------------

Op = Callable[[], Awaitable[Any]]


async def per_call(op: Op, seconds: float) -> float:
    """Seconds per call of `op`, over calls for about `seconds` (at least 3)."""
    calls = 0
    start = time.perf_counter()
    while True:
        await op()
        calls += 1
        elapsed = time.perf_counter() - start
        if calls >= 3 and elapsed >= seconds:
            return elapsed / calls


async def duel(theirs: Op, ours: Op, rounds: int, seconds: float) -> tuple[float, float]:
    """Median seconds per call of each, rounds alternating (who goes first too)."""
    mine: list[float] = []
    other: list[float] = []
    for op in (theirs, ours):  # connections opened, caches warm, before any timing
        await per_call(op, seconds / 4)
    for n in range(rounds):
        pair = [(theirs, other), (ours, mine)]
        for op, into in pair if n % 2 == 0 else reversed(pair):
            into.append(await per_call(op, seconds))
    return statistics.median(other), statistics.median(mine)


def sync(fn: Callable[[], Any]) -> Op:
    async def op() -> Any:
        return fn()

    return op


def to_thread(fn: Callable[[], Any]) -> Op:
    """`fn` on a worker thread, as the SDK's `SQLiteSession` runs its writes."""

    async def op() -> Any:
        return await asyncio.to_thread(fn)

    return op


# --- the stores --------------------------------------------------------------------------


class Bare:
    """The least a durable append can cost on this disk: the rows' JSON inserted into a
    bare table and committed (WAL, synchronous=FULL), on the calling thread or (for an
    async API's row, `off_loop`) on a worker thread."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, data TEXT)")

    def commit(self, items: list[dict[str, Any]], *, off_loop: bool = False) -> Op:
        def insert() -> None:
            self.connection.execute("BEGIN")
            self.connection.executemany(
                "INSERT INTO m (data) VALUES (?)", [(json.dumps(i),) for i in items]
            )
            self.connection.execute("COMMIT")

        return to_thread(insert) if off_loop else sync(insert)

    def close(self) -> None:
        self.connection.close()


class PostgresBare:
    """The same on PostgreSQL: the rows' JSON inserted into a bare table by one statement
    in autocommit mode (its own transaction, one durable commit), with psycopg."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.connection = psycopg.connect(url, autocommit=True)
        self.connection.execute("CREATE TABLE m (id BIGSERIAL PRIMARY KEY, data JSON)")

    def commit(self, items: list[dict[str, Any]]) -> Op:
        rows = json.dumps(items)

        def insert() -> None:
            self.connection.execute(
                "INSERT INTO m (data) SELECT value FROM json_array_elements(%s::json)", (rows,)
            )

        return sync(insert)

    def close(self) -> None:
        self.connection.close()


def wal_full(session: Any) -> None:
    """SQLiteSession's file in WAL mode (synchronous stays FULL, SQLite's default, so every
    commit is durable, as ours)."""
    session._get_connection().execute("PRAGMA journal_mode=WAL")


@contextmanager
def scratch_databases(dsn: str) -> Iterator[Callable[[str], str]]:
    """Databases of the benchmark's own on the server, dropped at the end."""
    import psycopg

    admin = psycopg.connect(dsn, autocommit=True)
    made: list[str] = []
    base, _, _ = dsn.rpartition("/")

    def create(tag: str) -> str:
        name = f"aisopod_adapters_{os.getpid()}_{tag}"
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{base}/{name}"

    try:
        yield create
    finally:
        for name in made:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def asyncpg_url(url: str) -> str:
    return "postgresql+asyncpg://" + url.split("://", 1)[1]


def psycopg_url(url: str) -> str:
    return "postgresql+psycopg://" + url.split("://", 1)[1]


# --- workloads ---------------------------------------------------------------------------


class Bench:
    def __init__(self, root: Path, rounds: int, seconds: float, sizes: tuple[int, ...]) -> None:
        self.root = root
        self.rounds = rounds
        self.seconds = seconds
        self.sizes = sizes
        self.results: list[Result] = []
        self.counter = 0

    def name(self) -> str:
        self.counter += 1
        return f"user-{self.counter}"

    async def row(
        self,
        workload: str,
        backend: str,
        theirs_name: str,
        theirs: Op,
        ours: Op,
        target: float,
        *,
        per: int = 1,
        at_most: bool = False,
        bare: Op | None = None,
        floor: Op | None = None,
        floor_sets_target: bool = False,
    ) -> None:
        their_time, our_time = await duel(theirs, ours, self.rounds, self.seconds)
        bound = floor_ratio = None
        if bare is not None:
            their_again, bare_time = await duel(theirs, bare, self.rounds, self.seconds)
            bound = their_again / bare_time
        if floor is not None:
            their_again, floor_time = await duel(theirs, floor, self.rounds, self.seconds)
            floor_ratio = their_again / floor_time
        unit = "item" if per > 1 and workload.startswith("64") else "call"
        if unit == "item":
            their_time, our_time = their_time / per, our_time / per
        result = Result(
            workload,
            backend,
            theirs_name,
            their_time,
            our_time,
            target,
            unit,
            at_most,
            bound,
            floor_ratio,
            floor_sets_target,
        )
        self.results.append(result)
        print(
            f"  {workload} ({backend}): {fmt(result.theirs, unit)} vs {fmt(result.ours, unit)}"
            f" = {result.ratio:.2f}x ({'ok' if result.ok else 'MISSED'})"
            + (f", floor {floor_ratio:.2f}x" if floor_ratio is not None else ""),
            file=sys.stderr,
            flush=True,
        )

    async def sdk(self, ours_url: str, theirs: Callable[[str], Any], backend: str) -> None:
        """The OpenAI Agents SDK's Session protocol, ours against `theirs(name)`."""
        from aisopod_session.adapters.openai_agents import AisopodSession

        peer_name = "SQLiteSession" if backend == "SQLite" else "SQLAlchemySession"
        read_target, add_target = (1.5, 1.2) if backend == "SQLite" else (2.0, 2.0)
        made: list[Any] = []

        def pair() -> tuple[Any, Any]:
            name = self.name()
            them, us = theirs(name), AisopodSession(name, ours_url)
            made.extend([them, us])
            return them, us

        try:
            for size in self.sizes:
                them, us = pair()
                for start in range(0, size, 1000):
                    batch = [sdk_item(n) for n in range(start, min(size, start + 1000))]
                    await them.add_items(batch)
                    await us.add_items(batch)
                await self.row(
                    f"get_items({LAST}) of {size:,} items",
                    backend,
                    peer_name,
                    functools.partial(them.get_items, LAST),
                    functools.partial(us.get_items, LAST),
                    read_target,
                )
            them, us = pair()
            bare = Bare(self.root / "bare.db") if backend == "SQLite" else None
            made.append(bare)
            floor = SchemaFloor(self.root / "floor.db", "FULL") if bare else None
            made.append(floor)

            def floor_add(count: int) -> Op | None:
                if floor is None:
                    return None
                messages = [floor_message(n) for n in range(count)]
                return to_thread(lambda: floor.append(floor.session_id, messages))

            turn = [sdk_item(n) for n in range(TURN)]
            thousand = [sdk_item(n) for n in range(1000)]
            await self.row(
                "add_items, one item",
                backend,
                peer_name,
                lambda: them.add_items([sdk_item(0)]),
                lambda: us.add_items([sdk_item(0)]),
                add_target,
                bare=bare.commit([sdk_item(0)], off_loop=True) if bare else None,
                floor=floor_add(1),
            )
            if bare is None:
                return
            await self.row(
                f"add_items, a {TURN}-item turn",
                backend,
                peer_name,
                lambda: them.add_items(turn),
                lambda: us.add_items(turn),
                1.2,
                bare=bare.commit(turn, off_loop=True),
                floor=floor_add(TURN),
            )
            await self.row(
                "add_items, 1,000 items in one call",
                backend,
                peer_name,
                lambda: them.add_items(thousand),
                lambda: us.add_items(thousand),
                1.0,
                bare=bare.commit(thousand, off_loop=True),
                floor=floor_add(1000),
                floor_sets_target=True,
            )
            theirs_many = [theirs(self.name()) for _ in range(CONCURRENT)]
            ours_many = [AisopodSession(self.name(), ours_url) for _ in range(CONCURRENT)]
            made.extend(theirs_many + ours_many)

            async def together(sessions: list[Any]) -> None:
                await asyncio.gather(*(s.add_items(turn) for s in sessions))

            await self.row(
                f"{CONCURRENT} conversations adding a turn at once",
                backend,
                peer_name,
                lambda: together(theirs_many),
                lambda: together(ours_many),
                3.0,
                per=CONCURRENT * TURN,
            )
        finally:
            for session in made:
                # SQLAlchemySession has no close: its engine is disposed by its owner.
                if not hasattr(session, "close"):
                    continue
                closing = session.close()
                if asyncio.iscoroutine(closing):
                    await closing

    async def langchain(
        self, ours_url: str, engine: Any, backend: str, size: int, bare: Bare | PostgresBare
    ) -> None:
        """LangChain's chat message history, ours against SQLChatMessageHistory."""
        from langchain_core.messages import message_to_dict

        from aisopod_session.adapters.langchain import AisopodChatMessageHistory

        histories = peer("langchain_community.chat_message_histories")
        SQLChatMessageHistory = histories.SQLChatMessageHistory

        name = self.name()
        them = SQLChatMessageHistory(session_id=name, connection=engine)
        us = AisopodChatMessageHistory(name, ours_url)
        try:
            messages = [lc_message(n) for n in range(size)]
            them.add_messages(messages)
            us.add_messages(messages)
            await self.row(
                f"messages of {size:,} messages",
                backend,
                "SQLChatMessageHistory",
                sync(lambda: them.messages),
                sync(lambda: us.messages),
                1.5,
            )
            pair = [lc_message(0), lc_message(1)]
            await self.row(
                "add_messages, a question and its answer",
                backend,
                "SQLChatMessageHistory",
                sync(lambda: them.add_messages(pair)),
                sync(lambda: us.add_messages(pair)),
                1.5,
                bare=bare.commit([message_to_dict(m) for m in pair]),
            )
        finally:
            us.close()

    async def async_store(self, url: str, backend: str, size: int) -> None:
        """The async store's history(last=50) against the same call, sync."""
        store = open_async_store(url)
        try:
            session = await store.get_or_create(f"agent:main:{self.name()}")
            from aisopod_session import Message

            for start in range(0, size, 1000):
                await store.append(
                    session.id,
                    [Message.user(text(n)) for n in range(start, min(size, start + 1000))],
                )
            sync_store = store.sync
            await self.row(
                f"async history(last={LAST}), against the sync call",
                backend,
                "sync store",
                lambda: store.history(session.id, last=LAST),
                sync(lambda: sync_store.history(session.id, last=LAST)),
                1.3,
                at_most=True,
            )
        finally:
            await store.aclose()


BACKENDS = ("sqlite", "postgresql")
FRAMEWORKS = ("sdk", "langchain", "async")


@dataclass(frozen=True)
class Only:
    """The rows `--only` asks for: its backends and frameworks (each, all when empty)."""

    backends: frozenset[str]
    frameworks: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Only:
        names = {name.strip().lower() for name in text.split(",") if name.strip()}
        unknown = names - {*BACKENDS, *FRAMEWORKS}
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(sorted(unknown))} (known: {', '.join(BACKENDS + FRAMEWORKS)})"
            )
        return cls(frozenset(names & set(BACKENDS)), frozenset(names & set(FRAMEWORKS)))

    def backend(self, name: str) -> bool:
        return not self.backends or name in self.backends

    def framework(self, name: str) -> bool:
        return not self.frameworks or name in self.frameworks


async def run(bench: Bench, dsn: str | None, only: Only) -> None:
    if only.backend("sqlite"):
        await run_sqlite(bench, only)
    if dsn and only.backend("postgresql"):
        await run_postgres(bench, dsn, only)


async def run_sqlite(bench: Bench, only: Only) -> None:
    from agents.memory import SQLiteSession

    create_engine = peer("sqlalchemy").create_engine

    ours_sqlite = f"sqlite:///{bench.root / 'ours.db'}"
    open_store(ours_sqlite).close()  # made before any timing

    def sqlite_session(name: str) -> Any:
        session = SQLiteSession(name, str(bench.root / "sdk.db"))
        wal_full(session)
        return session

    if only.framework("sdk"):
        print("OpenAI Agents SDK, SQLite", file=sys.stderr)
        await bench.sdk(ours_sqlite, sqlite_session, "SQLite")
    if only.framework("langchain"):
        print("LangChain, SQLite", file=sys.stderr)
        engine = create_engine(f"sqlite:///{bench.root / 'langchain.db'}")
        with engine.connect() as connection:  # synchronous is FULL by default: durable commits
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        bare = Bare(bench.root / "langchain-bare.db")
        await bench.langchain(ours_sqlite, engine, "SQLite", 1000, bare)
        bare.close()
        engine.dispose()
    if only.framework("async"):
        print("Async store, SQLite", file=sys.stderr)
        await bench.async_store(ours_sqlite, "SQLite", 1000)


async def run_postgres(bench: Bench, dsn: str, only: Only) -> None:
    SQLAlchemySession = peer("agents.extensions.memory").SQLAlchemySession
    create_engine = peer("sqlalchemy").create_engine
    create_async_engine = peer("sqlalchemy.ext.asyncio").create_async_engine

    with scratch_databases(dsn) as create:
        ours_url = create("ours")
        open_store(ours_url).close()
        if only.framework("sdk"):
            sa_engine = create_async_engine(asyncpg_url(create("theirs")))
            made_tables = False

            def sqlalchemy_session(name: str) -> Any:
                nonlocal made_tables
                session = SQLAlchemySession(name, engine=sa_engine, create_tables=not made_tables)
                made_tables = True
                return session

            first = sqlalchemy_session("warm-up")
            await first.get_items(1)  # creates the tables before any timing
            print("OpenAI Agents SDK, PostgreSQL", file=sys.stderr)
            await bench.sdk(ours_url, sqlalchemy_session, "PostgreSQL")
            await sa_engine.dispose()
        if only.framework("langchain"):
            print("LangChain, PostgreSQL", file=sys.stderr)
            engine = create_engine(psycopg_url(create("langchain")))
            postgres_bare = PostgresBare(create("bare"))
            await bench.langchain(ours_url, engine, "PostgreSQL", 1000, postgres_bare)
            postgres_bare.close()
            engine.dispose()
        if only.framework("async"):
            print("Async store, PostgreSQL", file=sys.stderr)
            await bench.async_store(ours_url, "PostgreSQL", 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument(
        "--postgres",
        metavar="DSN",
        default=os.environ.get(POSTGRES_ENV) or None,
        help=f"also run on PostgreSQL (default: ${POSTGRES_ENV}); {EMBEDDED!r} runs a"
        " throwaway server",
    )
    parser.add_argument("--rounds", type=int, help="alternating rounds per row (default 9)")
    parser.add_argument(
        "--only",
        type=Only.parse,
        default=Only(frozenset(), frozenset()),
        metavar="NAMES",
        help="run only the rows of these backends and frameworks, comma-separated:"
        f" {', '.join(BACKENDS + FRAMEWORKS)} (all of a kind it names none of)",
    )
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import platform
    import sqlite3

    rounds = args.rounds or (3 if args.quick else 9)
    sizes = (1_000,) if args.quick else (1_000, 100_000)
    meta = {"rounds": rounds, "sqlite": sqlite3.sqlite_version, "python": platform.python_version()}
    with (
        tempfile.TemporaryDirectory(prefix="aisopod-adapters-") as folder,
        postgres_dsn(args.postgres or "") as dsn,
    ):
        bench = Bench(Path(folder), rounds, 0.05 if args.quick else 0.25, sizes)
        asyncio.run(run(bench, dsn or None, args.only))
    print(render(bench.results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
