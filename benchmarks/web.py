"""Server time of the web UI's pages against the store calls each makes, as a table.

    uv run python benchmarks/web.py            # 100k sessions, a 1M-entry session
    uv run python benchmarks/web.py --quick    # 2k sessions, a 20k-entry session
    uv run python benchmarks/web.py --sessions 20000 --entries 200000

Three pages, each timed as the server spends it (the ASGI app called in
process: routing, guards, the store calls, templates; no network), beside
the same store calls made directly:

- the session list (`GET /`): `list(limit=50)`;
- a session page (`GET /sessions/ID`) of the long session, opened at its
  end: `get`, `path(last=50)` with each entry's message read (`Entry.message`,
  the store's decoding of what it returned, which the page reads to draw it),
  `state`, `branches`, `forks(limit=21)`;
- a search (`GET /search?q=...`) over the long session's messages:
  `search(q, limit=20)`.

Rounds of the two alternate and each figure is the median round. Target: each
page at most 2x its store calls. The store calls themselves are bounded
reads, so the pages stay flat from small to big stores (benchmarks/store.py
and context.py hold the store's own flatness rows).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aisopod_session import SessionStore, open_store
from aisopod_session.web import create_app
from aisopod_session.web._text import HIGHLIGHT
from aisopod_shared import Message, TokenUsage

TEXT = "Can you look at the build logs and tell me why the deploy failed this time?"
QUERY = "deploy failed"


def fill(store: SessionStore, sessions: int, entries: int) -> str:
    """`sessions` short sessions and one long one of `entries` entries; the long one's id."""
    for n in range(sessions - 1):
        session = store.get_or_create(f"agent:main:telegram:direct:{n}", title=f"chat {n}")
        store.append(session.id, [Message.user(f"hello {n}"), Message.assistant("hi")])
    long_id = store.get_or_create("agent:main:main", title="the long one").id
    batch = [
        Message.user(f"{TEXT} ({n})")
        if n % 2 == 0
        else Message.assistant(f"answer {n}", usage=TokenUsage(input=900, output=40))
        for n in range(1000)
    ]
    for start in range(0, entries, 1000):
        store.append(long_id, batch[: min(1000, entries - start)])
    return long_id


class Asgi:
    """Calls an ASGI app in process: a GET, its status checked, its body read."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def get(self, path: str, query: str = "", times: int = 1) -> None:
        """`times` GETs, one after the other, on one run of the loop (as a server's
        loop runs on: its worker threads are made once and reused)."""
        statuses = self.loop.run_until_complete(self._gets(path, query, times))
        assert statuses == {200}, (path, statuses)

    async def _gets(self, path: str, query: str, times: int) -> set[int]:
        return {await self._get(path, query) for _ in range(times)}

    async def _get(self, path: str, query: str) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "headers": [(b"host", b"127.0.0.1:8765")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8765),
        }
        status = 0
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if asked:  # a response listening for the client to leave: it never does
                await asyncio.Event().wait()
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await self.app(scope, receive, send)
        return status

    def close(self) -> None:
        self.loop.close()


OPS = 20
"""Requests (and store call sets) a round."""


def interleaved(
    page: Callable[[int], Any], calls: Callable[[], Any], rounds: int
) -> tuple[float, float]:
    """Median seconds per op of the page (`page(n)` serves it n times) and of its
    store calls, rounds alternating."""
    served: list[float] = []
    direct: list[float] = []

    def direct_round(ops: int) -> None:
        for _ in range(ops):
            calls()

    for n in range(rounds):
        pair = [(page, served), (direct_round, direct)]
        for run, times in pair if n % 2 == 0 else reversed(pair):
            start = time.perf_counter()
            run(OPS)
            times.append((time.perf_counter() - start) / OPS)
    return statistics.median(served), statistics.median(direct)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sessions", type=int, help="sessions in the store (overrides the size)")
    parser.add_argument("--entries", type=int, help="entries in the long session (likewise)")
    args = parser.parse_args(argv)
    sessions, entries = (2_000, 20_000) if args.quick else (100_000, 1_000_000)
    sessions = args.sessions or sessions
    entries = args.entries or entries
    with tempfile.TemporaryDirectory(prefix="aisopod-bench-") as name:
        store = open_store(Path(name) / "web.db", synchronous="NORMAL")
        started = time.perf_counter()
        long_id = fill(store, sessions, entries)
        took = time.perf_counter() - started
        print(f"filled {sessions:,} sessions, {entries:,} entries in {took:.0f} s")
        asgi = Asgi(create_app(store))
        pages: list[tuple[str, Callable[[int], Any], Callable[[], Any]]] = [
            (
                f"session list ({sessions:,} sessions)",
                lambda n: asgi.get("/", times=n),
                lambda: store.list(limit=50),
            ),
            (
                f"session page ({entries:,} entries)",
                lambda n: asgi.get(f"/sessions/{long_id}", times=n),
                lambda: (
                    store.get(long_id),
                    [entry.message for entry in store.path(long_id, last=50).entries],
                    store.state(long_id),
                    store.branches(long_id),
                    store.forks(long_id, limit=21),
                ),
            ),
            (
                f"search ({entries // 2:,} matching messages)",
                lambda n: asgi.get("/search", f"q={QUERY.replace(' ', '+')}", times=n),
                lambda: store.search(QUERY, limit=20, highlight=HIGHLIGHT),
            ),
        ]
        results = [(label, *interleaved(page, calls, args.rounds)) for label, page, calls in pages]
        asgi.close()
        store.close()
    rows = [("page", "server time", "store calls", "ratio", "target")]
    for label, served, direct in results:
        ok = "ok" if served / direct <= 2 else "MISSED"
        rows.append(
            (
                label,
                f"{served * 1e3:,.2f} ms",
                f"{direct * 1e3:,.2f} ms",
                f"{served / direct:.2f}x",
                f"<= 2x {ok}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for n, row in enumerate(rows):
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("-|-".join("-" * w for w in widths))
    return 0 if all(served / direct <= 2 for _, served, direct in results) else 1


if __name__ == "__main__":
    sys.exit(main())
