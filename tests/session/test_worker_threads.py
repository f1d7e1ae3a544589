"""The threads that run the async API's calls: results, errors, parallelism, cancel,
shutdown, and closing an async store (borrowed, from synchronous code, or dropped)."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sqlite3
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from aisopod_session import (
    AsyncSessionStore,
    InvalidInput,
    StoreUnavailable,
    open_async_store,
    open_store,
)
from aisopod_session._worker_threads import WorkerThreads
from aisopod_shared import Message
from tests.async_threads import WAIT, all_stopped, threads_of


class Signal:
    """An `asyncio.Event` of the running loop that any thread may set."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        await asyncio.wait_for(self._event.wait(), timeout=WAIT)


def holding(taken: Signal, release: threading.Event) -> Callable[[], bool]:
    """A call that tells `taken` once a worker runs it, then holds that worker
    until `release` (what it returns: whether it was released)."""

    def hold() -> bool:
        taken.set()
        return release.wait(timeout=WAIT)

    return hold


async def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for a change that only the workers' own state shows, looking every
    millisecond (bounded: a change that never comes fails the test, not hangs it)."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.001)


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
        taken = Signal()
        blocker = asyncio.ensure_future(workers.run(holding(taken, release)))
        queued = asyncio.ensure_future(workers.run(lambda: ran.append("queued")))
        # Both calls were queued before the worker could take the first one:
        # the second now waits behind it.
        await taken.wait()
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
        taken = Signal()
        calls: list[asyncio.Future[object]] = [
            asyncio.ensure_future(workers.run(holding(taken, release)))
        ]
        calls += [
            asyncio.ensure_future(workers.run(functools.partial(done.append, n))) for n in range(5)
        ]
        await taken.wait()  # the worker holds the first call; five wait in the queue
        closer = threading.Thread(target=workers.shutdown)
        closer.start()
        await wait_until(lambda: workers._closed)  # set by shutdown, the moment it is called
        release.set()
        await asyncio.gather(*calls)
        closer.join(timeout=WAIT)
        assert not closer.is_alive()

    asyncio.run(main())
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


def test_a_call_raising_stop_iteration_raises_runtime_error_instead_of_hanging() -> None:
    workers = WorkerThreads(1)

    def stop() -> None:
        raise StopIteration("done")

    async def main() -> None:
        with pytest.raises(RuntimeError, match="StopIteration") as caught:
            await asyncio.wait_for(workers.run(stop), timeout=10)
        assert isinstance(caught.value.__cause__, StopIteration)

    asyncio.run(main())
    workers.shutdown()


def test_calls_made_one_after_another_share_one_thread() -> None:
    workers = WorkerThreads(8)

    async def main() -> None:
        for n in range(200):
            assert await workers.run(functools.partial(int, n)) == n

    asyncio.run(main())
    assert len(workers._threads) == 1
    workers.shutdown()


def test_every_shutdown_returns_only_once_the_threads_have_stopped() -> None:
    workers = WorkerThreads(2)
    release = threading.Event()
    # Whether the worker threads had all stopped when each shutdown returned.
    stopped_on_return: list[bool] = []

    def close(calling: Signal) -> None:
        calling.set()
        workers.shutdown()
        stopped_on_return.append(not any(thread.is_alive() for thread in workers._threads))

    async def main() -> None:
        taken = Signal()
        call = asyncio.ensure_future(workers.run(holding(taken, release)))
        await taken.wait()
        # Two shutdowns while the worker holds the call: the first closes, the
        # second finds it closed and must wait for the threads all the same.
        calling = [Signal(), Signal()]
        closers = [threading.Thread(target=close, args=(signal,)) for signal in calling]
        for closer in closers:
            closer.start()
        for signal in calling:
            await signal.wait()
        release.set()
        await call
        for closer in closers:
            closer.join(timeout=WAIT)
        assert not any(closer.is_alive() for closer in closers)
        assert stopped_on_return == [True, True]

    asyncio.run(main())


def test_an_append_whose_loop_closed_still_commits_and_the_next_append_works(
    tmp_path: Path,
) -> None:
    """The committer outlives a caller's event loop: it drops the outcome the closed
    loop can no longer take, and goes on committing for other loops."""
    path = tmp_path / "s.db"
    store = open_async_store(path)
    session_id = store.sync.get_or_create("agent:main:main").id
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the committer waits for this write lock

    first_loop = asyncio.new_event_loop()
    first = first_loop.create_task(store.append(session_id, Message.user("first")))
    # The task hands its append to the committer, which takes it off its queue
    # and waits for the lock: the append is in flight when its loop closes.
    first_loop.run_until_complete(wait_until(store._committer._queue.empty))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        first_loop.run_until_complete(first)
    first_loop.close()
    blocker.execute("ROLLBACK")  # the first append commits now, for a closed loop
    blocker.close()

    async def second() -> None:
        await asyncio.wait_for(store.append(session_id, Message.user("second")), timeout=30)
        page = await store.history(session_id)
        assert [entry.text for entry in page.entries] == ["first", "second"]
        await store.aclose()

    asyncio.run(second())


def test_a_borrowing_async_store_stops_its_threads_and_leaves_the_store_open(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path / "s.db") as store:
        borrowed = AsyncSessionStore.borrowing(store)
        scoped = borrowed.for_agent("main")

        async def main() -> str:
            session = await scoped.get_or_create("agent:main:main")
            await borrowed.append(session.id, Message.user("through the async store"))
            await scoped.aclose()  # a scoped handle borrows too
            with pytest.raises(StoreUnavailable):
                await borrowed.get(session.id)
            return session.id

        session_id = asyncio.run(main())
        assert all_stopped(threads_of(borrowed))
        store.append(session_id, Message.user("and the store is still open"))
        assert [entry.seq for entry in store.history(session_id).entries] == [1, 2]

        again = AsyncSessionStore.borrowing(store)
        asyncio.run(again.get(session_id))
        again.close()  # from synchronous code too
        assert all_stopped(threads_of(again))
        assert store.get(session_id).entry_count == 2


def test_close_finishes_appends_in_flight_without_the_event_loop(tmp_path: Path) -> None:
    """`close()`, called on the event loop's own thread while appends wait for the
    committer, commits them all before it returns: it needs no turn of the loop."""
    store = open_async_store(tmp_path / "s.db")

    async def main() -> None:
        session = await store.get_or_create("agent:main:main")
        appends = [
            asyncio.ensure_future(store.append(session.id, Message.user(str(n)))) for n in range(20)
        ]
        await asyncio.sleep(0)  # every append has gone to the committer
        store.close()
        done = await asyncio.gather(*appends)
        assert sorted(entry.seq for entries in done for entry in entries) == list(range(1, 21))
        with pytest.raises(StoreUnavailable):
            await store.append(session.id, Message.user("late"))

    asyncio.run(main())
    assert all_stopped(threads_of(store))
    with pytest.raises(StoreUnavailable):  # the database is closed too
        store.sync.current("agent:main:main")
    store.close()  # again: nothing more to do
    with open_store(tmp_path / "s.db") as reopened:
        session = reopened.current("agent:main:main")
        assert session is not None
        assert session.entry_count == 20


def test_threads_of_an_async_store_nobody_closed_stop_when_its_last_handle_goes(
    tmp_path: Path,
) -> None:
    """Dropped unclosed, an async store stops its threads once neither it nor a handle
    `for_agent` made from it is left; the store under it is not closed."""
    with open_store(tmp_path / "s.db") as store:
        dropped: AsyncSessionStore | None = AsyncSessionStore.borrowing(store)
        assert dropped is not None
        scoped: AsyncSessionStore | None = dropped.for_agent("main")
        assert scoped is not None

        async def use(async_store: AsyncSessionStore) -> None:
            session = await async_store.get_or_create("agent:main:main")
            await async_store.append(session.id, Message.user("hi"))

        asyncio.run(use(dropped))
        threads = threads_of(dropped)
        assert len(threads) == 2  # a worker and the committer
        dropped = None
        gc.collect()
        asyncio.run(use(scoped))  # the scoped handle keeps the threads
        assert all(thread.is_alive() for thread in threads)
        scoped = None
        gc.collect()
        assert all_stopped(threads)
        session = store.current("agent:main:main")
        assert session is not None
        assert session.entry_count == 2


def test_shutdown_without_wait_returns_at_once_and_the_queued_calls_still_run() -> None:
    workers = WorkerThreads(1)
    release = threading.Event()

    async def main() -> None:
        taken = Signal()
        held = asyncio.ensure_future(workers.run(holding(taken, release)))
        queued = asyncio.ensure_future(workers.run(lambda: "queued"))
        await taken.wait()
        workers.shutdown(wait=False)  # the worker still holds the first call
        with pytest.raises(StoreUnavailable):
            await workers.run(lambda: None)
        release.set()
        assert await held is True
        assert await queued == "queued"

    asyncio.run(main())
    assert all_stopped(workers._threads)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_an_async_store_used_in_a_forked_child_starts_threads_of_its_own(tmp_path: Path) -> None:
    """A child forked after the parent used the async store has none of its threads:
    its calls and appends must not wait for them for ever."""
    store = open_async_store(tmp_path / "s.db")

    async def use(tag: str) -> int:
        session = await store.get_or_create("agent:main:main")
        await store.append(session.id, Message.user(tag))
        return (await store.get(session.id)).entry_count

    assert asyncio.run(use("parent")) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork beside threads (3.12+)
        child = os.fork()
    if child == 0:  # pragma: no cover - the child's result is its exit status
        try:
            code = 0 if asyncio.run(asyncio.wait_for(use("child"), 30)) == 2 else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert asyncio.run(use("parent again")) == 3
    asyncio.run(store.aclose())
