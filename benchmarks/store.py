"""Store benchmarks against the raw `sqlite3` floor, printed as a table.

    uv run python benchmarks/store.py            # the full run (a few minutes)
    uv run python benchmarks/store.py --quick    # smaller sizes, for a smoke test

Each row measures aisopod-session and, in the same run, a hand-written
`sqlite3` script doing the same work on the same schema with the same
pragmas (the floor, `_schema_floor.py`): for an append, the messages
serialized, the entry insert and the session row update in one transaction,
and the full-text index insert of the entries waiting for it each time a row
id crosses a multiple of INDEX_BATCH; for a read, the same SELECT with the
payloads decoded. Rounds of the two alternate, and each figure is the median round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _schema_floor import SchemaFloor
from _timing import median_round

from aisopod_session import SessionStore, open_async_store, open_store
from aisopod_session.backends.sqlite import INDEX_BATCH
from aisopod_shared import Message, TokenUsage

TEXT = "The quick brown fox jumps over the lazy dog; how far can it go today?"


def message(n: int) -> Message:
    """A realistic small message: user turns and assistant turns with usage."""
    if n % 2:
        usage = TokenUsage(input=900, output=40, cost=0.002)
        return Message.assistant(f"{TEXT} ({n})", usage=usage)
    return Message.user(f"{TEXT} ({n})")


# --- measuring -------------------------------------------------------------------------


def interleaved(
    ours: Callable[[], Any], floor: Callable[[], Any], ops: int, rounds: int
) -> tuple[float, float]:
    """Alternate short rounds of ours and the floor, so both meet the same disk and
    cache conditions; median seconds per op of each, over the rounds."""
    mine: list[float] = []
    raw: list[float] = []
    for n in range(rounds):
        # Swap who goes first each round: neither always inherits the other's
        # dirty pages or a checkpoint in progress.
        first, second = (ours, floor) if n % 2 == 0 else (floor, ours)
        a = median_round(first, ops, 1)
        b = median_round(second, ops, 1)
        mine.append(a if n % 2 == 0 else b)
        raw.append(b if n % 2 == 0 else a)
    return statistics.median(mine), statistics.median(raw)


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="aisopod-bench-") as name:
        yield Path(name)


Row = tuple[str, str, str, str, str, bool]


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def fmt_rate(seconds: float) -> str:
    return f"{1 / seconds:,.0f}/s"


def bench_single_append(root: Path, synchronous: str, target: float, rounds: int) -> Row:
    store = open_store(root / f"single-{synchronous}.db", synchronous=synchronous)
    session_id = store.get_or_create("agent:main:bench").id
    floor = SchemaFloor(root / f"single-floor-{synchronous}.db", synchronous)
    counter, floor_counter = iter(range(10**9)), iter(range(10**9))
    ops = 50 if synchronous == "NORMAL" else 40
    ours, raw = interleaved(
        lambda: store.append(session_id, message(next(counter))),
        lambda: floor.append(floor.session_id, [message(next(floor_counter))]),
        ops,
        rounds * 16,
    )
    store.close()
    ratio = raw / ours
    return (
        f"append 1 message per call, synchronous={synchronous}",
        fmt_rate(ours),
        fmt_rate(raw),
        f"{ratio:.2f}x",
        f">= {target}x floor",
        ratio >= target,
    )


def bench_batch_append(root: Path, rounds: int) -> Row:
    store = open_store(root / "batch.db")
    session_id = store.get_or_create("agent:main:bench").id
    floor = SchemaFloor(root / "batch-floor.db", "FULL")
    batch = [message(n) for n in range(1000)]
    ours, raw = interleaved(
        lambda: store.append(session_id, batch),
        lambda: floor.append(floor.session_id, batch),
        1,
        rounds,
    )
    store.close()
    ratio = raw / ours
    return (
        "append 1,000 messages in one call",
        f"{1000 / ours:,.0f} msg/s",
        f"{1000 / raw:,.0f} msg/s",
        f"{ratio:.2f}x",
        ">= 0.6x executemany",
        ratio >= 0.6,
    )


def fill(store: SessionStore, key: str, entries: int) -> str:
    session_id = store.get_or_create(key).id
    batch = [message(n) for n in range(1000)]
    for start in range(0, entries, 1000):
        store.append(session_id, batch[: min(1000, entries - start)])
    return session_id


def bench_history(root: Path, big: int, rounds: int) -> list[Row]:
    store = open_store(root / "history.db", synchronous="NORMAL")
    small_id = fill(store, "agent:main:small", 1000)
    big_id = fill(store, "agent:main:big", big)
    floor = SchemaFloor(root / "history.db", "NORMAL")
    results = {}
    for name, session_id in (("small", small_id), ("big", big_id)):
        ours, raw = interleaved(
            lambda s=session_id: store.history(s, last=50),  # type: ignore[misc]
            lambda s=session_id: floor.last(s, 50),  # type: ignore[misc]
            200,
            rounds,
        )
        results[name] = (ours, raw)
    store.close()
    small, large = results["small"], results["big"]
    growth = large[0] / small[0]
    return [
        (
            "history(last=50), 1,000 entries",
            fmt_us(small[0]),
            fmt_us(small[1]),
            f"{small[0] / small[1]:.2f}x time",
            "<= 3x floor time",
            small[0] / small[1] <= 3,
        ),
        (
            f"history(last=50), {big:,} entries",
            fmt_us(large[0]),
            fmt_us(large[1]),
            f"{growth:.2f}x the 1k time",
            "<= 1.5x the 1k time",
            growth <= 1.5,
        ),
    ]


def fill_with_state(store: SessionStore, key: str, entries: int, changes: int) -> str:
    """A session of `entries` entries, `changes` of them state changes spread evenly."""
    session_id = store.get_or_create(key, user_id="bench-user").id
    per_change = max(1, entries // changes - 1)
    batch = [message(n) for n in range(per_change)]
    for n in range(changes):
        store.append(
            session_id,
            batch,
            state={"step": n, f"slot{n % 50}": {"n": n, "text": TEXT}, "user:seen": n},
        )
    return session_id


def bench_state(root: Path, big: int, rounds: int) -> list[Row]:
    """Reading state at the leaf and at past entries, flat in history length; and an
    append carrying a state delta against one without."""
    import random

    store = open_store(root / "state.db", synchronous="NORMAL")
    changes = max(10, big // 100)
    # The state at the leaf: a session of 1,000 entries against one of `big`. The
    # state at past entries: both sessions hold more changes than a snapshot spans,
    # as densely (one change per 100 entries), so both reads fold onto a snapshot;
    # what differs is the history behind it, a hundred times longer.
    small_id = fill_with_state(store, "agent:main:small", 1000, 10)
    near = 12_800  # 128 changes, two snapshots' worth
    near_id = fill_with_state(store, "agent:main:near", near, near // 100)
    big_id = fill_with_state(store, "agent:main:big", big, changes)
    leaf: dict[str, float] = {}
    # Interleaved, so that both sides of each ratio meet the same cache and load.
    leaf["big"], leaf["small"] = interleaved(
        lambda: store.state(big_id), lambda: store.state(small_id), 200, rounds * 3
    )
    _, get = interleaved(lambda: store.state(big_id), lambda: store.get(big_id), 200, rounds * 3)
    rng = random.Random(3)
    past: dict[str, float] = {}
    for name, session_id, size in (("small", near_id, near), ("big", big_id, big)):
        seqs = [rng.randint(1, size) for _ in range(200)]
        at = iter(seqs * (rounds + 2))
        past[name] = median_round(
            lambda s=session_id, a=at: store.state(s, at_seq=next(a)),  # type: ignore[misc]
            100,
            rounds,
        )
    store.close()
    durable = open_store(root / "state-append.db")  # FULL, the default
    plain_id = durable.get_or_create("agent:main:plain").id
    delta_id = durable.get_or_create("agent:main:delta", user_id="bench-user").id
    counter = iter(range(10**9))
    without, with_delta = interleaved(
        lambda: durable.append(plain_id, message(next(counter))),
        lambda: durable.append(
            delta_id,
            message(next(counter)),
            state={"step": next(counter), "user:seen": 1},
        ),
        40,
        rounds * 16,  # a ratio near its target: more rounds, a steadier median
    )
    durable.close()
    flat = leaf["big"] / leaf["small"]
    versus_get = leaf["big"] / get
    deep = past["big"] / past["small"]
    cost = with_delta / without
    return [
        (
            f"state() at the leaf, {big:,} entries",
            fmt_us(leaf["big"]),
            f"{fmt_us(leaf['small'])} (1k) / {fmt_us(get)} (get)",
            f"{flat:.2f}x the 1k, {versus_get:.2f}x get",
            "<= 1.5x the 1k and get",
            flat <= 1.5 and versus_get <= 1.5,
        ),
        (
            f"state(at_seq=random), {big:,} entries, {changes:,} changes",
            fmt_us(past["big"]),
            f"{fmt_us(past['small'])} ({near:,} entries)",
            f"{deep:.2f}x the {near:,} time",
            "<= 1.5x: a snapshot, then <= 63 changes",
            deep <= 1.5,
        ),
        (
            "append 1 message with a state delta, synchronous=FULL",
            fmt_rate(with_delta),
            f"{fmt_rate(without)} (no delta)",
            f"{cost:.2f}x time",
            "<= 1.2x time",
            cost <= 1.2,
        ),
    ]


def seed_sessions(path: Path, count: int) -> None:
    """Make `count` sessions quickly: one through the API, the rest copied in SQL."""
    store = open_store(path, synchronous="NORMAL")
    store.get_or_create("agent:main:seed")
    store.close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " INSERT INTO sessions (id, agent_id, key, status, created_at, updated_at, active_at,"
        " metadata, origin) SELECT 'bench-' || i, 'main', 'agent:main:chat-' || i, 'active',"
        " i, i * 1000, i, '{}', '{}' FROM n",
        (count - 1,),
    )
    db.execute(
        "INSERT INTO bindings (agent_id, key, sid, updated_at) SELECT agent_id, key, sid, 0"
        " FROM sessions WHERE id LIKE 'bench-%'"
    )
    db.execute("COMMIT")
    db.close()


def bench_list(root: Path, big: int, rounds: int) -> list[Row]:
    results = {}
    for count in (1000, big):
        path = root / f"list-{count}.db"
        seed_sessions(path, count)
        store = open_store(path)
        floor = SchemaFloor(path, "FULL")
        results[count] = interleaved(
            lambda s=store: s.list(limit=50),  # type: ignore[misc]
            lambda f=floor: f.list(50),  # type: ignore[misc]
            200,
            rounds,
        )
        store.close()
    growth = results[big][0] / results[1000][0]
    return [
        (
            f"list(limit=50), 1,000 / {big:,} sessions",
            f"{fmt_us(results[1000][0])} / {fmt_us(results[big][0])}",
            f"{fmt_us(results[1000][1])} / {fmt_us(results[big][1])}",
            f"{growth:.2f}x the 1k time",
            "<= 1.5x the 1k time",
            growth <= 1.5,
        )
    ]


def bench_group_commit(root: Path, per_writer: int) -> Row:
    async def run() -> tuple[float, float]:
        store = open_async_store(root / "async.db", synchronous="FULL")
        ids = [(await store.get_or_create(f"agent:main:w{n}")).id for n in range(64)]
        start = time.perf_counter()
        for n in range(per_writer * 4):
            await store.append(ids[0], message(n))
        one = (time.perf_counter() - start) / (per_writer * 4)

        async def writer(session_id: str) -> None:
            for n in range(per_writer):
                await store.append(session_id, message(n))

        start = time.perf_counter()
        await asyncio.gather(*(writer(i) for i in ids))
        many = (time.perf_counter() - start) / (per_writer * 64)
        await store.aclose()
        return one, many

    one, many = asyncio.run(run())
    ratio = one / many
    return (
        "async appends, synchronous=FULL: 64 writers vs 1",
        f"{fmt_rate(many)} (64)",
        f"{fmt_rate(one)} (1 writer)",
        f"{ratio:.2f}x",
        ">= 3x one writer",
        ratio >= 3,
    )


def bench_search(root: Path, messages: int) -> list[Row]:
    """Typical queries over `messages` messages in 1,000-message sessions."""
    import random

    rng = random.Random(7)
    # A Zipf-like vocabulary: a few words everywhere, most words rare.
    vocabulary = [f"w{n}" for n in range(20_000)]
    weights = [1 / (n + 1) for n in range(len(vocabulary))]
    store = open_store(root / "search.db", synchronous="NORMAL")
    for session in range(messages // 1000):
        session_id = store.get_or_create(f"agent:main:s{session}").id
        texts = rng.choices(vocabulary, weights, k=1000 * 12)
        batch = [Message.user(" ".join(texts[i * 12 : i * 12 + 12])) for i in range(1000)]
        store.append(session_id, batch)
    floor = sqlite3.connect(root / "search.db")
    queries = {
        "two words": "w150 w310",
        "a phrase": '"w12 w13"',
        "a prefix": "w1234*",
        "a rare word": "w19000",
    }
    rows: list[Row] = []
    indexed: dict[str, float] = {}
    for name, query in queries.items():
        ours = median_round(lambda q=query: store.search(q, limit=20), 5, 5)  # type: ignore[misc]
        indexed[query] = ours
        match = {"w1234*": '"w1234"*', '"w12 w13"': '"w12 w13"'}.get(query, query)
        raw = median_round(
            lambda m=match: floor.execute(  # type: ignore[misc]
                "SELECT rowid, bm25(entries_fts) FROM entries_fts WHERE entries_fts MATCH ?"
                " ORDER BY bm25(entries_fts) LIMIT 20",
                (m,),
            ).fetchall(),
            5,
            5,
        )
        rows.append(
            (
                f"search {messages:,} messages: {name}",
                f"{ours * 1e3:,.1f} ms",
                f"{raw * 1e3:,.1f} ms",
                f"{ours / raw:.2f}x time",
                "well under 1 s",
                ours < 0.5,
            )
        )
    # The entries waiting for the index (up to INDEX_BATCH - 1 single appends since
    # the last crossing) are read around it, into a temporary index: the worst case.
    session_id = store.get_or_create("agent:main:waiting").id
    times = []
    for _ in range(5):
        # From just past a crossing (nothing waits) to just before the next.
        while floor.execute("SELECT max(row_id) FROM entries").fetchone()[0] % INDEX_BATCH:
            store.append(session_id, Message.user("filler"))
        for n in range(INDEX_BATCH - 1):
            store.append(session_id, Message.user(f"w{n} w{n + 1} fresh words"))
        start = time.perf_counter()
        store.search("w150 w310", limit=20)
        times.append(time.perf_counter() - start)
    worst = statistics.median(times)
    rows.append(
        (
            f"search 'two words' with {INDEX_BATCH - 1} entries waiting for the index",
            f"{worst * 1e3:,.1f} ms",
            f"{indexed['w150 w310'] * 1e3:,.1f} ms (none waits)",
            f"{worst / indexed['w150 w310']:.2f}x time",
            "well under 1 s",
            worst < 0.5,
        )
    )
    rows.append(bench_search_beside_a_writer(root / "search.db", indexed["w150 w310"]))
    store.close()
    floor.close()
    return rows


def _append_until_stopped(path: str, started: Any, stop: Any, done: Any) -> None:
    """Another process: single appends, as fast as they commit, until told to stop."""
    store = open_store(path, synchronous="FULL")
    session_id = store.get_or_create("agent:main:busy-writer").id
    count = 0
    started.set()
    while not stop.is_set():
        store.append(session_id, Message.user(f"w150 w310 busy {count}"))
        count += 1
    store.close()
    done.put(count)


def bench_search_beside_a_writer(path: Path, idle: float, searches: int = 200) -> Row:
    """Search latency while another process appends continuously: a read never
    waits for a writer, so the worst search stays near the median."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    started, stop, done = context.Event(), context.Event(), context.Queue()
    writer = context.Process(target=_append_until_stopped, args=(str(path), started, stop, done))
    writer.start()
    started.wait(60)
    store = open_store(path)
    times = []
    for _ in range(searches):
        start = time.perf_counter()
        store.search("w150 w310", limit=20)
        times.append(time.perf_counter() - start)
    stop.set()
    appended = done.get(timeout=60)
    writer.join(60)
    store.close()
    median, worst = statistics.median(times), max(times)
    return (
        f"search beside a process appending ({appended:,} appends during {searches})",
        f"{median * 1e3:,.1f} ms median, {worst * 1e3:,.1f} ms worst",
        f"{idle * 1e3:,.1f} ms (alone)",
        f"{median / idle:.2f}x time",
        "worst under 100 ms",
        worst < 0.1,
    )


def print_table(rows: list[Row], out: Any = sys.stdout) -> None:
    header = ("workload", "aisopod-session", "floor / baseline", "ratio", "target", "")
    cells = [header, *[(*r[:5], "ok" if r[5] else "MISSED") for r in rows]]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(header))]
    for n, cell in enumerate(cells):
        line = " | ".join(str(v).ljust(w) for v, w in zip(cell, widths, strict=True))
        print(line.rstrip(), file=out)
        if n == 0:
            print("-|-".join("-" * w for w in widths), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per measurement")
    args = parser.parse_args(argv)
    big_history = 50_000 if args.quick else 1_000_000
    big_list = 10_000 if args.quick else 100_000
    rounds = 3 if args.quick else args.rounds
    rows: list[Row] = []
    with workdir() as root:
        print(
            f"# aisopod-session store benchmark (SQLite {sqlite3.sqlite_version}, "
            f"Python {sys.version.split()[0]}, {os.cpu_count()} cores)",
            flush=True,
        )
        rows.append(bench_single_append(root, "NORMAL", 0.5, rounds))
        rows.append(bench_single_append(root, "FULL", 0.85, rounds))
        rows.append(bench_batch_append(root, rounds))
        rows.extend(bench_history(root, big_history, rounds))
        rows.extend(bench_state(root, big_history, rounds))
        rows.extend(bench_list(root, big_list, rounds))
        rows.append(bench_group_commit(root, 10 if args.quick else 25))
        rows.extend(bench_search(root, 50_000 if args.quick else 1_000_000))
    print_table(rows)
    return 0 if all(r[5] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
