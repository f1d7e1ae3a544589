"""The ADK session service against ADK's own SQL services, through ADK's API.

    uv run --group bench python benchmarks/adk.py            # 10,000 sessions (minutes)
    uv run --group bench python benchmarks/adk.py --quick    # small sizes: a smoke test

Each row times one `BaseSessionService` call on `AisopodSessionService` (SQLite,
the store's default durability: WAL, synchronous=FULL) and on ADK's
`DatabaseSessionService` (SQLAlchemy on aiosqlite) and `SqliteSessionService`
(aiosqlite), all on files, each commit durable (SQLite's default
synchronous=FULL on theirs). Rounds of ours and theirs alternate; a round
makes several calls one after the other (100 appends, 10 reads, 20 listings)
and each figure is the median round's time per call. "ratio" is their time
over ours, "target" what the row must reach:

- `append_event`: one event with a state change, appended to a session;
- `get_session`: the last 50 of 1,000 events (`GetSessionConfig(num_recent_events=50)`);
- `list_sessions`: one user's 5 sessions among `--sessions` sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.database_session_service import DatabaseSessionService
from google.adk.sessions.sqlite_session_service import SqliteSessionService
from google.genai import types

from aisopod_session import open_store
from aisopod_session.adapters.adk import AisopodSessionService

APP = "bench"
TEXT = "The backup finished at 03:12 after 41 minutes; two files were skipped."


def event(i: int) -> Event:
    return Event(
        author="user" if i % 2 == 0 else "helper",
        invocation_id=f"inv{i}",
        content=types.Content(
            role="user" if i % 2 == 0 else "model", parts=[types.Part(text=f"{TEXT} #{i}")]
        ),
        actions=EventActions(state_delta={"turn": i}),
    )


async def median(rounds: int, work: Callable[[], Awaitable[Any]], per: int = 1) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await work()
        times.append((time.perf_counter() - start) / per)
    return statistics.median(times)


async def prepare(service: BaseSessionService, sessions: int, events: int) -> Any:
    """One session of `events` events, and `sessions` sessions in all (5 of user u-0)."""
    long = await service.create_session(app_name=APP, user_id="reader", session_id="long")
    for i in range(events):
        await service.append_event(long, event(i))
    for n in range(sessions):
        user = "u-0" if n < 5 else f"u-{n}"
        await service.create_session(app_name=APP, user_id=user, session_id=f"s{n}")
    return await service.create_session(app_name=APP, user_id="writer", session_id="w")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--sessions", type=int, default=10_000)
    args = parser.parse_args()
    sessions = 300 if args.quick else args.sessions
    events = 200 if args.quick else 1_000
    rounds = 3 if args.quick else 7
    appends = 20 if args.quick else 100
    reads, listings = 10, 20
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = open_store(f"sqlite:///{root / 'ours.db'}")
        services: dict[str, BaseSessionService] = {
            "aisopod": AisopodSessionService(store),
            "DatabaseSessionService": DatabaseSessionService(
                f"sqlite+aiosqlite:///{root / 'database.db'}"
            ),
            "SqliteSessionService": SqliteSessionService(str(root / "sqlite.db")),
        }
        writers = {}
        for name, service in services.items():
            print(f"filling {name}: {sessions} sessions, {events} events ...", flush=True)
            writers[name] = await prepare(service, sessions, events)
        # Ours is CPU work, theirs mostly waiting on threads and files: another
        # process's load slows ours more, so the table says what the machine was doing
        # (this one's filling counts in the first figure).
        load_before = os.getloadavg()[0]

        results: dict[str, dict[str, list[float]]] = {}
        config = GetSessionConfig(num_recent_events=50)
        counter = [10_000]
        for _ in range(rounds):
            for name, service in services.items():
                row = results.setdefault(name, {"append": [], "get": [], "list": []})

                async def appends_now(
                    service: BaseSessionService = service, name: str = name
                ) -> None:
                    for _ in range(appends):
                        counter[0] += 1
                        await service.append_event(writers[name], event(counter[0]))

                async def get_now(service: BaseSessionService = service) -> None:
                    for _ in range(reads):
                        got = await service.get_session(
                            app_name=APP, user_id="reader", session_id="long", config=config
                        )
                        assert got is not None
                        assert len(got.events) == 50

                async def list_now(service: BaseSessionService = service) -> None:
                    for _ in range(listings):
                        listed = await service.list_sessions(app_name=APP, user_id="u-0")
                        assert len(listed.sessions) == 5

                row["append"].append(await median(1, appends_now, appends))
                row["get"].append(await median(1, get_now, reads))
                row["list"].append(await median(1, list_now, listings))
        store.close()
        for name in ("DatabaseSessionService",):
            service = services[name]
            assert isinstance(service, DatabaseSessionService)
            await service.close()

    ours = {k: statistics.median(v) for k, v in results["aisopod"].items()}
    targets = {"append": 3, "get": 5, "list": 10}
    labels = {
        "append": "append_event",
        "get": f"get_session, last 50 of {events}",
        "list": f"list_sessions, 1 user of {sessions}",
    }
    print(f"\nload average {load_before:.1f} before the rounds, {os.getloadavg()[0]:.1f} after")
    header = f"{'operation':40} {'peer':24} {'ours ms':>9} {'theirs ms':>10}"
    print(f"\n{header} {'ratio':>7} {'target':>7}")
    for peer in ("DatabaseSessionService", "SqliteSessionService"):
        theirs = {k: statistics.median(v) for k, v in results[peer].items()}
        for op in ("append", "get", "list"):
            ratio = theirs[op] / ours[op]
            mark = "ok" if ratio >= targets[op] else "MISSED"
            print(
                f"{labels[op]:40} {peer:24} {ours[op] * 1e3:9.3f} {theirs[op] * 1e3:10.3f}"
                f" {ratio:7.1f} {'>=' + str(targets[op]) + 'x':>5} {mark}"
            )


if __name__ == "__main__":
    asyncio.run(main())
