"""PostgreSQL benchmarks beside a raw psycopg floor, printed as a table.

    uv run python benchmarks/postgres.py                      # $AISOPOD_TEST_POSTGRES_DSN
    uv run python benchmarks/postgres.py --postgres embedded  # a throwaway server of its own
    uv run python benchmarks/postgres.py --postgres postgresql://postgres@127.0.0.1/test --quick

Without a DSN (neither `--postgres` nor the environment), it runs on a
throwaway server of its own, as `--postgres embedded` does.

Rows: the append rate with 1, 2, 4 and 8 processes, each appending single
messages to a session of its own, the median of three runs alternating with
the floor's (target: 4 processes >= 2.5x one; the floor's own scaling is
printed beside ours); `history(last=50)` at 1,000 and 1,000,000 entries
(target: <= 1.5x); and `list(limit=50)` over 100,000 sessions. Each row runs,
in the same schema, the hand-written psycopg floor on the store's schema
(`_pg_schema_floor.py`) doing the same writes or reads: for an append, the
session row locked, moved and read as it was, then the entry inserted, in a
transaction (BEGIN, UPDATE ... RETURNING, INSERT, COMMIT: four round trips,
where the store sends one statement); for reads, the same SELECTs. Everything
runs in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from typing import Any

import psycopg
from _pg_schema_floor import PgSchemaFloor
from _postgres import EMBEDDED, postgres_dsn
from _timing import median_round
from psycopg import sql

from aisopod_session import SessionStore, open_store
from aisopod_shared import Message, TokenUsage

TEXT = "The quick brown fox jumps over the lazy dog; how far can it go today?"


def message(n: int) -> Message:
    if n % 2:
        return Message.assistant(f"{TEXT} ({n})", usage=TokenUsage(input=900, output=40))
    return Message.user(f"{TEXT} ({n})")


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


# --- appends from several processes ----------------------------------------------------


def ours_appender(url: str, seconds: float, barrier: Any, out: Any) -> None:
    store = open_store(url, pool_max=1)
    session_id = store.get_or_create(f"agent:main:w-{uuid.uuid4().hex[:8]}").id
    barrier.wait()
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        store.append(session_id, message(count))
        count += 1
    store.close()
    out.put(count)


def floor_appender(url: str, seconds: float, barrier: Any, out: Any) -> None:
    floor = PgSchemaFloor(url)
    session_id = floor.new_session(f"agent:main:f-{uuid.uuid4().hex[:8]}")
    barrier.wait()
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        floor.append(session_id, [message(count)])
        count += 1
    floor.close()
    out.put(count)


def append_rate(target: Any, url: str, processes: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    out = context.Queue()
    workers = [
        context.Process(target=target, args=(url, seconds, barrier, out)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = sum(out.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join()
    return float(total) / seconds


# --- reads ------------------------------------------------------------------------------


def fill(store: SessionStore, key: str, entries: int) -> str:
    session_id = store.get_or_create(key).id
    batch = [message(n) for n in range(1000)]
    for start in range(0, entries, 1000):
        store.append(session_id, batch[: min(1000, entries - start)])
    return session_id


def timed(run: Any) -> float:
    return median_round(run, 200, 7)


def list_floor(db: psycopg.Connection[Any]) -> Any:
    with db.transaction():
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return db.execute(
            "SELECT * FROM sessions ORDER BY updated_at DESC, sid DESC LIMIT 51"
        ).fetchall()


def seed_sessions(db: psycopg.Connection[Any], count: int) -> None:
    db.execute(
        "INSERT INTO sessions (id, agent_id, key, status, created_at, updated_at, active_at)"
        " SELECT 'bench-' || i, 'main', 'agent:main:chat-' || i, 'active', i, i * 1000, i"
        " FROM generate_series(1, %s) AS i",
        (count,),
    )
    db.execute("ANALYZE sessions")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        "--dsn",
        dest="dsn",
        metavar="DSN",
        default=os.environ.get("AISOPOD_TEST_POSTGRES_DSN") or EMBEDDED,
        help=f"the server (default: $AISOPOD_TEST_POSTGRES_DSN, else {EMBEDDED!r}: a throwaway"
        " server of the benchmark's own)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    args = parser.parse_args(argv)
    with postgres_dsn(args.dsn) as dsn:
        return run(dsn, quick=args.quick)


def run(dsn: str, *, quick: bool) -> int:
    big = 50_000 if quick else 1_000_000
    sessions = 10_000 if quick else 100_000
    seconds = 2.0 if quick else 5.0
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    url = with_schema(dsn, schema)
    rows: list[tuple[str, str, str, str, str]] = []
    admin = psycopg.connect(dsn, autocommit=True)
    try:
        store = open_store(url)
        rates: dict[int, tuple[float, float]] = {}
        for processes in (1, 2, 4, 8):
            # Alternate ours and the floor, three runs each: the median of each.
            runs = [
                (
                    append_rate(ours_appender, url, processes, seconds),
                    append_rate(floor_appender, url, processes, seconds),
                )
                for _ in range(3)
            ]
            ours = statistics.median(r[0] for r in runs)
            floor = statistics.median(r[1] for r in runs)
            rates[processes] = (ours, floor)
            rows.append(
                (
                    f"append, {processes} process(es)",
                    f"{ours:,.0f}/s",
                    f"{floor:,.0f}/s",
                    f"{ours / floor:.2f}x floor",
                    f"{ours / rates[1][0]:.2f}x one process (floor: {floor / rates[1][1]:.2f}x)",
                )
            )
        raw = PgSchemaFloor(url)
        db = raw.db
        small = fill(store, "agent:main:small", 1000)
        large = fill(store, "agent:main:large", big)
        t_small = timed(lambda: store.history(small, last=50))
        t_large = timed(lambda: store.history(large, last=50))
        f_small = timed(lambda: raw.last(small, 50))
        f_large = timed(lambda: raw.last(large, 50))
        rows.append(
            (
                "history(last=50), 1,000 entries",
                f"{t_small * 1e6:,.0f} µs",
                f"{f_small * 1e6:,.0f} µs",
                f"{t_small / f_small:.2f}x floor time",
                "",
            )
        )
        rows.append(
            (
                f"history(last=50), {big:,} entries",
                f"{t_large * 1e6:,.0f} µs",
                f"{f_large * 1e6:,.0f} µs",
                f"{t_large / f_large:.2f}x floor time",
                f"{t_large / t_small:.2f}x the 1k time (target <= 1.5x)",
            )
        )
        seed_sessions(db, sessions)
        t_list = timed(lambda: store.list(limit=50))
        f_list = timed(lambda: list_floor(db))
        rows.append(
            (
                f"list(limit=50), {sessions:,} sessions",
                f"{t_list * 1e6:,.0f} µs",
                f"{f_list * 1e6:,.0f} µs",
                f"{t_list / f_list:.2f}x floor time",
                "",
            )
        )
        raw.close()
        store.close()
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        admin.close()
    header = ("workload", "aisopod-session", "psycopg floor", "ratio", "scaling / target")
    table = [header, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    server = "PostgreSQL"
    print(f"# aisopod-session on {server}, {os.cpu_count()} cores; target: 4 processes >= 2.5x one")
    for n, row in enumerate(table):
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("-|-".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
