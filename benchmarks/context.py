"""Context build time against history length, printed as a table.

    uv run python benchmarks/context.py            # 1k, 100k and 1M entries
    uv run python benchmarks/context.py --quick    # 1k, 10k and 50k

Each session holds N entries in turns (user, assistant with usage), compacted
near its end (the last 20 turns kept), as a long-lived agent's session is. A
context build walks the active branch from the leaf to the compaction's
first kept entry, so its cost follows the size of the context returned, not
the length of the history behind it. Target: at 1M entries <= 1.5x the 1k time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _timing import median_round

from aisopod_session import KeepLastTurns, SessionStore, open_store
from aisopod_shared import Message, TokenUsage

TURN = "Can you look at the build logs and tell me why the deploy failed this time?"


def fill(store: SessionStore, key: str, entries: int) -> str:
    session_id = store.get_or_create(key).id
    batch: list[Message] = []
    for n in range(1000):
        if n % 2 == 0:
            batch.append(Message.user(f"{TURN} ({n})"))
        else:
            batch.append(Message.assistant(f"answer {n}", usage=TokenUsage(input=900, output=40)))
    for start in range(0, entries, 1000):
        store.append(session_id, batch[: min(1000, entries - start)])
    store.compact(session_id, KeepLastTurns(20))
    store.append(session_id, [Message.user("and now?"), Message.assistant("all green")])
    return session_id


def measure(store: SessionStore, session_id: str, rounds: int) -> tuple[float, int]:
    seconds = median_round(lambda: store.context(session_id), 20, rounds)
    return seconds, len(store.context(session_id).messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    args = parser.parse_args(argv)
    sizes = (1_000, 10_000, 50_000) if args.quick else (1_000, 100_000, 1_000_000)
    with tempfile.TemporaryDirectory(prefix="aisopod-bench-") as name:
        store = open_store(Path(name) / "context.db", synchronous="NORMAL")
        sessions = {size: fill(store, f"agent:main:s{size}", size) for size in sizes}
        results = {size: measure(store, sessions[size], 9) for size in sizes}
        store.close()
    base = results[sizes[0]][0]
    rows = [("entries in session", "context messages", "build time", "vs 1k", "target")]
    for size in sizes:
        seconds, messages = results[size]
        target = "" if size == sizes[0] else ("ok" if seconds / base <= 1.5 else "MISSED")
        rows.append(
            (
                f"{size:,}",
                str(messages),
                f"{seconds * 1e6:,.0f} µs",
                f"{seconds / base:.2f}x",
                f"<= 1.5x {target}".strip() if size != sizes[0] else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for n, row in enumerate(rows):
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("-|-".join("-" * w for w in widths))
    return 0 if all(results[s][0] / base <= 1.5 for s in sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
