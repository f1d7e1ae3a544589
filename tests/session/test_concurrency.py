"""Many writers on one database: nothing lost, seqs gapless, never 'database is locked'."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter
from typing import Any

from aisopod_session import open_async_store, open_store
from aisopod_shared import Message
from tests.session.snapshot import all_entries
from tests.session.workers import append_from_threads, race_get_or_create

PROCESSES = 4
THREADS = 8
PER_THREAD = 25


def test_processes_and_threads_appending_lose_nothing(shared_database_url: str) -> None:
    """4 processes x 8 threads append to one shared session and to sessions of their own."""
    store = open_store(shared_database_url)
    shared = store.get_or_create("agent:main:shared")
    own = [
        [store.get_or_create(f"agent:main:p{p}-t{t}").id for t in range(THREADS)]
        for p in range(PROCESSES)
    ]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=append_from_threads,
            args=(shared_database_url, shared.id, own[p], p, THREADS, PER_THREAD),
        )
        for p in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * PROCESSES

    total = PROCESSES * THREADS * PER_THREAD
    entries = all_entries(store, shared.id)
    assert [e.seq for e in entries] == list(range(1, total + 1))
    assert [e.parent_seq for e in entries] == [None, *range(1, total)]
    texts = [e.text for e in entries]
    assert len(set(texts)) == total
    for p in range(PROCESSES):
        for t in range(THREADS):
            mine = [text for text in texts if text.startswith(f"{p}:{t}:")]
            assert mine == [f"{p}:{t}:{n}" for n in range(PER_THREAD)]  # each thread's order kept
            own_entries = all_entries(store, own[p][t])
            assert [e.text for e in own_entries] == mine
    after = store.get(shared.id)
    assert after.entry_count == total
    assert after.version == shared.version + total
    store.close()


def test_racing_get_or_create_makes_one_session_per_key(shared_database_url: str) -> None:
    keys = [f"agent:main:race-{n}" for n in range(20)]
    open_store(shared_database_url).close()  # create and migrate before the race
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    out = context.Queue()
    racers = [
        context.Process(target=race_get_or_create, args=(shared_database_url, keys, barrier, out))
        for _ in range(PROCESSES)
    ]
    for racer in racers:
        racer.start()
    seen = [out.get(timeout=120) for _ in racers]
    for racer in racers:
        racer.join(timeout=60)
    assert [r.exitcode for r in racers] == [0] * PROCESSES
    assert all(ids == seen[0] for ids in seen)
    store = open_store(shared_database_url)
    per_key = Counter(s.key for s in store.list(key_prefix="agent:main:race-", limit=1000).sessions)
    assert per_key == dict.fromkeys(keys, 1)
    store.close()


def test_many_coroutines_appending_through_group_commit(shared_database_url: str) -> None:
    async def run() -> None:
        store = open_async_store(shared_database_url)
        sessions = [await store.get_or_create(f"agent:main:a{n}") for n in range(4)]

        async def writer(n: int) -> None:
            for m in range(20):
                await store.append(sessions[n % 4].id, Message.user(f"{n}:{m}"))

        await asyncio.gather(*(writer(n) for n in range(64)))
        for session in sessions:
            entries = all_entries(store.sync, session.id)
            assert [e.seq for e in entries] == list(range(1, 16 * 20 + 1))
            for n in range(session_index(sessions, session), 64, 4):
                assert [e.text for e in entries if e.text.startswith(f"{n}:")] == [
                    f"{n}:{m}" for m in range(20)
                ]
        await store.aclose()

    asyncio.run(run())


def session_index(sessions: list[Any], session: Any) -> int:
    return next(i for i, s in enumerate(sessions) if s.id == session.id)


def test_eight_processes_appending_to_one_session_keep_seqs_gapless(
    shared_database_url: str,
) -> None:
    store = open_store(shared_database_url)
    shared = store.get_or_create("agent:main:eight")
    own = [[store.get_or_create(f"agent:main:eight-{p}").id] for p in range(8)]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=append_from_threads, args=(shared_database_url, shared.id, own[p], p, 1, 40)
        )
        for p in range(8)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * 8
    entries = all_entries(store, shared.id)
    assert [e.seq for e in entries] == list(range(1, 8 * 40 + 1))
    assert len({e.text for e in entries}) == 8 * 40
    store.close()
