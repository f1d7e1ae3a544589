"""The threads that run the async API's calls: results, errors, parallelism, cancel, shutdown."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

import pytest

from aisopod_session import InvalidInput, StoreUnavailable, open_async_store
from aisopod_session._worker_threads import WorkerThreads


def test_a_call_returns_its_result_and_raises_its_error() -> None:
    workers = WorkerThreads(2)

    def fail() -> None:
        raise KeyError("missing")

    async def main() -> None:
        assert await workers.run(lambda: threading.current_thread().name) == "aisopod-0"
        with pytest.raises(KeyError, match="missing"):
            await workers.run(fail)

    asyncio.run(main())
    workers.shutdown()


def test_calls_run_in_parallel_up_to_max_workers_and_no_further() -> None:
    workers = WorkerThreads(4)
    # Four calls that each wait for the other three: they finish only if all
    # four run at once.
    barrier = threading.Barrier(4, timeout=10)
    names: set[str] = set()

    def meet() -> None:
        names.add(threading.current_thread().name)
        barrier.wait()

    async def main() -> None:
        for _ in range(3):
            await asyncio.gather(*(workers.run(meet) for _ in range(4)))
        await asyncio.gather(*(workers.run(lambda: None) for _ in range(50)))

    asyncio.run(main())
    assert names == {f"aisopod-{n}" for n in range(4)}
    assert len(workers._threads) == 4  # 50 calls at once started no fifth thread
    workers.shutdown()


def test_a_call_cancelled_before_a_worker_takes_it_is_not_run() -> None:
    workers = WorkerThreads(1)
    release = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        blocker = asyncio.ensure_future(workers.run(release.wait))
        queued = asyncio.ensure_future(workers.run(lambda: ran.append("queued")))
        await asyncio.sleep(0.05)
        queued.cancel()
        await asyncio.sleep(0)
        release.set()
        assert await blocker is True
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert await workers.run(lambda: "after") == "after"

    asyncio.run(main())
    workers.shutdown()
    assert ran == []


def test_shutdown_finishes_queued_calls_then_refuses_new_ones() -> None:
    workers = WorkerThreads(1)
    release = threading.Event()
    done: list[int] = []

    async def main() -> None:
        calls: list[asyncio.Future[object]] = [asyncio.ensure_future(workers.run(release.wait))]
        calls += [
            asyncio.ensure_future(workers.run(functools.partial(done.append, n))) for n in range(5)
        ]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.gather(*calls)

    asyncio.run(main())
    workers.shutdown()
    workers.shutdown()  # again: nothing left to stop
    assert done == [0, 1, 2, 3, 4]

    async def late() -> None:
        await workers.run(lambda: None)

    with pytest.raises(StoreUnavailable):
        asyncio.run(late())


def test_the_async_store_refuses_calls_after_aclose(tmp_path: Path) -> None:
    async def main() -> None:
        store = open_async_store(tmp_path / "s.db")
        session = await store.get_or_create("agent:main:main")
        await store.aclose()
        with pytest.raises(StoreUnavailable):
            await store.get(session.id)

    asyncio.run(main())


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_max_workers_must_be_a_positive_integer(tmp_path: Path, bad: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        open_async_store(tmp_path / "s.db", max_workers=bad)  # type: ignore[arg-type]
    assert caught.value.field == "max_workers"
    assert not (tmp_path / "s.db").exists()  # refused before anything was opened
