"""The asynchronous API: the same store, as coroutines, with group commit.

`AsyncSessionStore` runs the synchronous store's transactions on worker
threads, so no transaction ever spans an `await` and the semantics are the
synchronous store's, tested by the same suite. Appends go to one committer
thread that takes every append waiting at that moment and commits them in a
single transaction (should one of them fail, that transaction is rolled back
and the group committed again, each append in its own savepoint, so that it
fails alone): with many concurrent writers, one durable commit (one fsync)
serves many appends.

On an SQLite file, a small read (a page of `history` or `path`, or an
adapter's window, of at most INLINE_ENTRIES entries) runs on the event
loop's own thread when it can without waiting: a thread hand-off costs a
third of such a read, and more on a loaded machine. Such a read never waits
for a lock or a busy file (it fails at once and goes to a worker thread
instead) and stops, to go there too, past a bound on what it reads
(`SqliteBackend.inline`): what it costs the loop is what the synchronous
call costs its caller. PostgreSQL reads, which go over the network, always
run on worker threads.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import attrs

from aisopod_session._branching import Branch
from aisopod_session._compaction import (
    CompactionResult,
    Strategy,
    Summarizer,
    headings_summarizer,
)
from aisopod_session._config import RetentionPolicy, SessionConfig
from aisopod_session._context import Context
from aisopod_session._engine import AppendRequest, Engine, SharedChange, apply_shared
from aisopod_session._entries import NewEntry
from aisopod_session._errors import StoreUnavailable
from aisopod_session._model import (
    AgentStats,
    DailyUsage,
    Entry,
    Origin,
    Page,
    Session,
    SessionPage,
    SessionStatus,
)
from aisopod_session._resolver import Inbound, Resolution
from aisopod_session._retention import MaintenanceReport
from aisopod_session._search import SearchPage
from aisopod_session._store import UNSET, SchemaInfo, SessionStore, Unset, engine_of
from aisopod_session._worker_threads import Outcome, WorkerThreads, deliver, deliver_all
from aisopod_session.backends._sql import SqlTx
from aisopod_session.backends.sqlite import LATER, at_once
from aisopod_shared import Clock, Message, logger, now_micros

__all__ = [
    "INLINE_ENTRIES",
    "AsyncSessionStore",
    "in_worker",
    "read_rows",
    "read_small",
    "submit_append",
]

T = TypeVar("T")

MAX_GROUP: Final = 512
"""The most appends one group commit takes."""

INLINE_ENTRIES: Final = 100
"""The most entries a read may ask for to run on the event loop's thread (see the
module docstring)."""


@attrs.define
class _Pending:
    engine: Engine
    request: AppendRequest
    future: asyncio.Future[tuple[Entry, ...]]
    loop: asyncio.AbstractEventLoop


class _GroupCommitter:
    """One thread that commits the appends waiting for it, together."""

    def __init__(self, engine: Engine) -> None:
        self._backend = engine.backend
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    def submit(self, engine: Engine, request: AppendRequest) -> asyncio.Future[tuple[Entry, ...]]:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Entry, ...]] = loop.create_future()
        self._ensure_started()
        self._queue.put(_Pending(engine, request, future, loop))
        return future

    def close(self, *, wait: bool = True) -> None:
        """Commit what is queued, then stop; with `wait`, return once that is done."""
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            if wait:
                self._thread.join()
                self._thread = None

    def _ensure_started(self) -> None:
        if self._pid != os.getpid():
            # A forked child has none of its parent's threads: start afresh.
            self._queue = queue.SimpleQueue()
            self._thread = None
            self._start_lock = threading.Lock()
            self._pid = os.getpid()
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="aisopod-group-commit", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Pending]) -> None:
        outcomes = [self._commit_one(group[0])] if len(group) == 1 else self._commit_many(group)
        if len(outcomes) == 1:
            pending, result, error = outcomes[0]
            deliver(pending.loop, pending.future, result, error)
            return
        # One wake-up per event loop for the whole group, not one per append.
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for pending, result, error in outcomes:
            by_loop.setdefault(pending.loop, []).append((pending.future, result, error))
        for loop, settled in by_loop.items():
            deliver_all(loop, settled)

    def _commit_one(self, pending: _Pending) -> _Outcome:
        """A lone append: its own transaction, exactly as the synchronous store runs it."""
        try:
            return pending, pending.engine.run_append(pending.request), None
        except Exception as err:  # delivered to the caller that sent it
            return pending, None, err

    def _commit_many(self, group: list[_Pending]) -> list[_Outcome]:
        """Several appends in one transaction: first all together, without a savepoint
        each (two statements fewer per append, round trips on a server); when one of
        them fails, that transaction is rolled back whole and the group is committed
        again with each append in its savepoint, so that it fails alone."""
        try:
            return self._commit_together(group)
        except _AppendFailed:
            return self._commit_apart(group)

    def _commit_together(self, group: list[_Pending]) -> list[_Outcome]:
        """The group in one transaction, every append in it; `_AppendFailed` (after the
        rollback) as soon as one fails."""

        def append_all(tx: SqlTx, shared: list[SharedChange]) -> list[_Outcome]:
            try:
                return [
                    (pending, pending.engine.append_in(tx, pending.request, shared=shared), None)
                    for pending in _aimed(group, tx)
                ]
            except Exception as err:  # one append's failure: the group goes apart
                raise _AppendFailed from err

        return self._in_one_transaction(group, append_all)

    def _commit_apart(self, group: list[_Pending]) -> list[_Outcome]:
        """The group in one transaction, each append in a savepoint so it can fail alone."""

        def append_each(tx: SqlTx, shared: list[SharedChange]) -> list[_Outcome]:
            # Appends to a key go to its session (those to a key without one make
            # theirs, in their savepoint).
            outcomes: list[_Outcome] = []
            todo: list[_Pending] = []
            for pending in group:
                try:
                    pending.request = pending.engine.find_key_session(tx, pending.request)
                    todo.append(pending)
                except Exception as err:  # out of scope: delivered to its caller
                    outcomes.append((pending, None, err))
            _in_lock_order(todo)
            outcomes.extend(_append_in_savepoint(pending, tx, shared) for pending in todo)
            return outcomes

        return self._in_one_transaction(group, append_each)

    def _in_one_transaction(
        self,
        group: list[_Pending],
        append: Callable[[SqlTx, list[SharedChange]], list[_Outcome]],
    ) -> list[_Outcome]:
        """`append(tx, shared)` in one write transaction, then the shared rows its
        appends changed (last, after every session: the lock order of every write).
        A failure of the transaction itself is every append's; `_AppendFailed` passes."""
        shared: list[SharedChange] = []
        try:
            with self._backend.write() as tx:
                outcomes = append(tx, shared)
                apply_shared(tx, shared, now_micros(group[0].engine.clock))
        except _AppendFailed:
            raise
        except Exception as err:
            logger.warning("group commit of {} appends failed: {}", len(group), type(err).__name__)
            return [(pending, None, err) for pending in group]
        return outcomes


class _AppendFailed(Exception):
    """An append of a group committed together failed: the group is committed apart."""


def _aimed(group: list[_Pending], tx: SqlTx) -> list[_Pending]:
    """The group's appends aimed at their keys' sessions, in lock order."""
    todo = list(group)
    for pending in todo:
        pending.request = pending.engine.find_key_session(tx, pending.request)
    _in_lock_order(todo)
    return todo


def _in_lock_order(todo: list[_Pending]) -> None:
    """Rows are locked in session order, so two committers (in two processes on a
    server database) never wait on each other in a circle."""
    todo.sort(key=lambda p: (p.request.session_id, p.request.key or ("", "")))


_Outcome = tuple[_Pending, "tuple[Entry, ...] | None", "BaseException | None"]


def _append_in_savepoint(pending: _Pending, tx: SqlTx, shared: list[SharedChange]) -> _Outcome:
    engine = pending.engine
    mine: list[SharedChange] = []

    def attempt(fresh: bool) -> tuple[Entry, ...]:
        mine.clear()
        with tx.savepoint():
            return engine.append_in(tx, pending.request, fresh_ids=fresh, shared=mine)

    try:
        result = engine.fresh_ids(attempt)
    except Exception as err:  # delivered to the caller that sent it
        return pending, None, err
    shared.extend(mine)  # only an append that stands has its shared changes applied
    return pending, result, None


@attrs.define(eq=False)
class _Threads:
    """The threads of an async store, shared with the handles `for_agent` makes from it."""

    workers: WorkerThreads
    committer: _GroupCommitter

    @classmethod
    def start(cls, engine: Engine, max_workers: int) -> _Threads:
        threads = cls(WorkerThreads(max_workers), _GroupCommitter(engine))
        # Once no handle is left to close them, the threads stop by themselves.
        # Without waiting: the last handle may go on one of these very threads.
        weakref.finalize(threads, _let_go, threads.workers, threads.committer)
        return threads


def _let_go(workers: WorkerThreads, committer: _GroupCommitter) -> None:
    committer.close(wait=False)
    workers.shutdown(wait=False)


class AsyncSessionStore:
    """The session store's API as coroutines; open one with `open_async_store(url)`.

    The same methods and semantics as `SessionStore`. Concurrent appends are
    committed together (group commit). Close it with `await store.aclose()`
    or `async with`, or `close()` from synchronous code. `borrowing(store)`
    makes one over a synchronous store that stays its owner's.

    The calls run on threads of the store's own (a small read of an SQLite
    file, on the event loop's thread when it can without waiting: see the
    module docstring); a store dropped unclosed stops them once no handle on
    it (or made by `for_agent`) is left.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        max_workers: int = 8,
        _threads: _Threads | None = None,
        _borrowed: bool = False,
    ) -> None:
        self._store = store
        self._engine = engine_of(store)
        self._borrowed = _borrowed
        if _threads is None:
            _threads = _Threads.start(self._engine, max_workers)
        self._threads = _threads
        self._workers, self._committer = _threads.workers, _threads.committer

    @classmethod
    def borrowing(cls, store: SessionStore, *, max_workers: int = 8) -> AsyncSessionStore:
        """An async store over `store` that leaves `store` to its owner.

        Closing it (`aclose`, `close`) finishes its pending appends and stops
        its threads; `store` stays open, and closing `store` is its owner's
        business. Only appends made through one async store share commits, so
        code that shares `store` should share the async store too.
        """
        return cls(store, max_workers=max_workers, _borrowed=True)

    def __repr__(self) -> str:
        return f"Async{self._store!r}"

    async def __aenter__(self) -> AsyncSessionStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def sync(self) -> SessionStore:
        """The synchronous store underneath (same database, same scope)."""
        return self._store

    @property
    def url(self) -> str:
        """The store's URL, without any password."""
        return self._store.url

    @property
    def agent_id(self) -> str | None:
        """The agent this handle is scoped to, or `None`."""
        return self._store.agent_id

    @property
    def clock(self) -> Clock:
        """The clock the store stamps writes with."""
        return self._store.clock

    def for_agent(self, agent_id: str) -> AsyncSessionStore:
        """A handle that sees and touches only `agent_id`'s sessions."""
        return AsyncSessionStore(
            self._store.for_agent(agent_id), _threads=self._threads, _borrowed=self._borrowed
        )

    async def aclose(self) -> None:
        """Finish pending appends, stop the worker threads and close the database
        (unless borrowed: see `borrowing`)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._committer.close)
        self.close()

    def close(self) -> None:
        """`aclose`, for synchronous code: needs no event loop, and blocks until the
        pending appends are committed and the threads have stopped."""
        self._committer.close()
        self._workers.shutdown()
        if not self._borrowed:
            self._store.close()

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._workers.run(functools.partial(fn, *args, **kwargs))

    async def _read(self, small: bool, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run the read `fn(*args, **kwargs)`: at once, on this thread, when it is
        `small` (`_few`) and the store's SQLite file lets it run here without waiting
        (see the module docstring); else on a worker thread."""
        if small:
            if self._workers.closed:
                raise StoreUnavailable("the store is closed")
            done = at_once(self._engine.backend, functools.partial(fn, *args, **kwargs))
            if done is not LATER:
                return done
        return await self._call(fn, *args, **kwargs)  # a worker thread may wait, or read more

    async def check_integrity(self) -> list[str]:
        """See `SessionStore.check_integrity`."""
        return await self._call(self._store.check_integrity)

    async def schema(self) -> SchemaInfo:
        """See `SessionStore.schema`."""
        return await self._call(self._store.schema)

    async def diagnostics(self) -> dict[str, Any]:
        """See `SessionStore.diagnostics`."""
        return await self._call(self._store.diagnostics)

    async def stats(self) -> list[AgentStats]:
        """See `SessionStore.stats`."""
        return await self._call(self._store.stats)

    async def usage_by_day(
        self, *, since: datetime, until: datetime | None = None, agent_id: str | None = None
    ) -> tuple[DailyUsage, ...]:
        """See `SessionStore.usage_by_day`."""
        return await self._call(
            self._store.usage_by_day, since=since, until=until, agent_id=agent_id
        )

    # --- sessions -------------------------------------------------------------------

    async def get_or_create(
        self,
        key: str,
        *,
        origin: Origin | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Session:
        """See `SessionStore.get_or_create`."""
        return await self._call(
            self._store.get_or_create,
            key,
            origin=origin,
            title=title,
            metadata=metadata,
            user_id=user_id,
        )

    async def get(self, session_id: str) -> Session:
        """See `SessionStore.get`."""
        return await self._call(self._store.get, session_id)

    async def current(self, key: str) -> Session | None:
        """See `SessionStore.current`."""
        return await self._call(self._store.current, key)

    async def list(
        self,
        *,
        agent_id: str | None = None,
        status: SessionStatus | None = None,
        channel: str | None = None,
        key: str | None = None,
        key_prefix: str | None = None,
        updated_after: Any = None,
        updated_before: Any = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """See `SessionStore.list`."""
        return await self._call(
            self._store.list,
            agent_id=agent_id,
            status=status,
            channel=channel,
            key=key,
            key_prefix=key_prefix,
            updated_after=updated_after,
            updated_before=updated_before,
            user_id=user_id,
            limit=limit,
            cursor=cursor,
        )

    async def patch(
        self,
        session_id: str,
        *,
        title: str | Unset | None = UNSET,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | Unset | None = UNSET,
        expected_version: int | None = None,
    ) -> Session:
        """See `SessionStore.patch`."""
        return await self._call(
            self._store.patch,
            session_id,
            title=title,
            metadata=metadata,
            user_id=user_id,
            expected_version=expected_version,
        )

    async def reset(self, key: str, *, origin: Origin | None = None) -> Session:
        """See `SessionStore.reset`."""
        return await self._call(self._store.reset, key, origin=origin)

    async def delete(self, session_id: str) -> bool:
        """See `SessionStore.delete`."""
        return await self._call(self._store.delete, session_id)

    # --- entries --------------------------------------------------------------------

    async def append(
        self,
        session_id: str,
        entries: Message | NewEntry | Iterable[Message | NewEntry],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> tuple[Entry, ...]:
        """See `SessionStore.append`; concurrent appends share one commit."""
        request = self._engine.prepare_append(
            session_id,
            entries,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
            state=state,
        )
        return await self._committer.submit(self._engine, request)

    async def update_state(
        self,
        session_id: str,
        delta: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> Mapping[str, Any]:
        """See `SessionStore.update_state`."""
        return await self._call(
            self._store.update_state, session_id, delta, expected_version=expected_version
        )

    async def state(self, session_id: str, *, at_seq: int | None = None) -> Mapping[str, Any]:
        """See `SessionStore.state`."""
        return await self._call(self._store.state, session_id, at_seq=at_seq)

    async def user_state(self, user_id: str, agent_id: str | None = None) -> Mapping[str, Any]:
        """See `SessionStore.user_state`."""
        return await self._call(self._store.user_state, user_id, agent_id)

    async def agent_state(self, agent_id: str | None = None) -> Mapping[str, Any]:
        """See `SessionStore.agent_state`."""
        return await self._call(self._store.agent_state, agent_id)

    async def history(
        self,
        session_id: str,
        *,
        last: int | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """See `SessionStore.history`."""
        return await self._read(
            _few(last if last is not None else limit, default=True),
            self._store.history,
            session_id,
            last=last,
            before=before,
            after=after,
            limit=limit,
            cursor=cursor,
        )

    # --- the active path, context, compaction, branches ------------------------------

    async def path(
        self,
        session_id: str,
        *,
        last: int = 50,
        before: int | None = None,
        cursor: str | None = None,
        leaf: int | None = None,
    ) -> Page:
        """See `SessionStore.path`."""
        return await self._read(
            _few(last, default=True),
            self._store.path,
            session_id,
            last=last,
            before=before,
            cursor=cursor,
            leaf=leaf,
        )

    async def context(self, session_id: str, *, max_tokens: int | None = None) -> Context:
        """See `SessionStore.context`."""
        return await self._call(self._store.context, session_id, max_tokens=max_tokens)

    async def compact(
        self,
        session_id: str,
        strategy: Strategy,
        summarizer: Summarizer = headings_summarizer,
    ) -> CompactionResult:
        """See `SessionStore.compact`; the summariser may be sync or async, and no
        transaction is open while it runs."""
        plan = await self._call(self._engine.plan_compaction, session_id, strategy)
        if plan is None:
            return CompactionResult(await self.get(session_id), None, None, 0, 0)
        answer = await self._call(summarizer, plan.dropped)
        summary = await answer if inspect.isawaitable(answer) else answer
        return await self._call(self._engine.commit_compaction, plan, summary)

    async def undo_compaction(self, session_id: str) -> Session:
        """See `SessionStore.undo_compaction`."""
        return await self._call(self._store.undo_compaction, session_id)

    async def rewind(
        self,
        session_id: str,
        to_seq: int,
        *,
        summary: str | None = None,
        expected_version: int | None = None,
    ) -> Session:
        """See `SessionStore.rewind`."""
        return await self._call(
            self._store.rewind,
            session_id,
            to_seq,
            summary=summary,
            expected_version=expected_version,
        )

    async def branches(self, session_id: str) -> tuple[Branch, ...]:
        """See `SessionStore.branches`."""
        return await self._call(self._store.branches, session_id)

    async def fork(
        self,
        session_id: str,
        at_seq: int | None = None,
        *,
        key: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """See `SessionStore.fork`."""
        return await self._call(
            self._store.fork, session_id, at_seq, key=key, title=title, metadata=metadata
        )

    async def archive(self, session_id: str, *, expected_version: int | None = None) -> Session:
        """See `SessionStore.archive`."""
        return await self._call(self._store.archive, session_id, expected_version=expected_version)

    async def forks(self, session_id: str, *, limit: int = 50) -> tuple[Session, ...]:
        """See `SessionStore.forks`."""
        return await self._call(self._store.forks, session_id, limit=limit)

    async def largest(
        self, *, limit: int = 10, agent_id: str | None = None, updated_after: Any = None
    ) -> tuple[Session, ...]:
        """See `SessionStore.largest`."""
        return await self._call(
            self._store.largest, limit=limit, agent_id=agent_id, updated_after=updated_after
        )

    # --- retention and routing ------------------------------------------------------

    async def maintain(
        self,
        policy: RetentionPolicy | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> MaintenanceReport:
        """See `SessionStore.maintain` (`progress` is called on a worker thread)."""
        return await self._call(self._store.maintain, policy, progress=progress)

    async def resolve(self, inbound: Inbound, config: SessionConfig | None = None) -> Resolution:
        """See `SessionStore.resolve`."""
        return await self._call(self._store.resolve, inbound, config)

    async def entry_ids(self, session_id: str, seqs: Iterable[int]) -> dict[int, str]:
        """See `SessionStore.entry_ids`."""
        return await self._call(self._store.entry_ids, session_id, list(seqs))

    async def search(
        self,
        query: str,
        *,
        agent_id: str | None = None,
        key_prefix: str | None = None,
        role: str | None = None,
        session_id: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> SearchPage:
        """See `SessionStore.search`."""
        return await self._call(
            self._store.search,
            query,
            agent_id=agent_id,
            key_prefix=key_prefix,
            role=role,
            session_id=session_id,
            after=after,
            before=before,
            limit=limit,
            cursor=cursor,
            highlight=highlight,
        )


async def in_worker(store: AsyncSessionStore, work: Callable[[Engine], T]) -> T:
    """Run `work(engine)` on one of the store's worker threads: synchronous engine work
    (the adapters' reads) as one call, without blocking the event loop."""
    engine = store._engine
    return await store._workers.run(functools.partial(work, engine))


async def read_small(
    store: AsyncSessionStore, entries: int | None, work: Callable[[Engine], T]
) -> T:
    """Run the read `work(engine)` of at most `entries` entries (`None`: no bound) as the
    store runs its own reads of a page: on the event loop's thread when it is small
    and can run there without waiting, else on a worker thread (the module docstring)."""
    return await store._read(_few(entries, default=False), work, store._engine)


async def read_rows(store: AsyncSessionStore, work: Callable[[Engine], T]) -> T:
    """Run the read `work(engine)` of a few rows found through an index (a listing of
    one user's sessions, a user's state): as `read_small` runs a small read, on the
    event loop's thread when it can run there without waiting, within the same bounds."""
    return await store._read(True, work, store._engine)


def _few(entries: object, *, default: bool) -> bool:
    """Whether a read of `entries` entries is small enough to run on the event loop's
    thread: at most INLINE_ENTRIES; `default` when the read gives no number (a
    bad one is left to the call, which says what is wrong with it)."""
    if entries is None:
        return default
    return type(entries) is int and 0 < entries <= INLINE_ENTRIES


async def submit_append(store: AsyncSessionStore, request: AppendRequest) -> tuple[Entry, ...]:
    """Send an append prepared with `Engine.prepare_append` (e.g. one to a key) to the
    store's group committer."""
    return await store._committer.submit(store._engine, request)
