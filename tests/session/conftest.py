"""The conformance suite's fixtures: every test runs on every backend and API.

Tests are written against the store's API, never a backend. The `store`
fixture is parametrized over backends (a SQLite file, SQLite in memory, and
PostgreSQL: see `tests/postgres.py` for where it comes from) and over the sync and
async APIs; the async store is driven through `AsyncDriver`, which runs its
coroutines on an event loop of its own, so the same test body checks both.
Whatever a backend needs to take part (a schema of its own, say) lives here.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import AsyncSessionStore, SessionStore, open_async_store, open_store
from aisopod_session._engine import Engine
from aisopod_session._store import engine_of
from aisopod_shared import ManualClock
from tests.session.postgres_schema import temporary_schema

BACKENDS = ("sqlite-file", "sqlite-memory", "postgres")
APIS = ("sync", "async")


class AsyncDriver:
    """Drives an `AsyncSessionStore` from synchronous test code.

    Every method of the async store becomes a plain call that runs the
    coroutine on the driver's loop thread and returns its result (or raises
    its exception), so one test body serves both APIs.
    """

    def __init__(self, store: AsyncSessionStore, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._loop = loop

    @property
    def sync(self) -> SessionStore:
        return self._store.sync

    @property
    def url(self) -> str:
        return self._store.url

    @property
    def _engine(self) -> Engine:
        # The transfer functions are synchronous and take a SessionStore; handed the
        # driver, they run on the engine of the synchronous store underneath.
        return engine_of(self._store.sync)

    @property
    def agent_id(self) -> str | None:
        return self._store.agent_id

    def for_agent(self, agent_id: str) -> AsyncDriver:
        return AsyncDriver(self._store.for_agent(agent_id), self._loop)

    def close(self) -> None:
        self.run(self._store.aclose())

    def run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=120)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.run(method(*args, **kwargs))

        return call


def _loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


class StoreFactory:
    """Opens stores on one test's database, with one API."""

    def __init__(self, url: str, api: str, clock: ManualClock) -> None:
        self.url = url
        self.api = api
        self.clock = clock
        self._opened: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __call__(self, **options: Any) -> Any:
        options.setdefault("clock", self.clock)
        if self.api == "sync":
            store: Any = open_store(self.url, **options)
        else:
            if self._loop is None:
                self._loop, self._thread = _loop_thread()
            store = AsyncDriver(open_async_store(self.url, **options), self._loop)
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()


@pytest.fixture(name="clock")
def clock_fixture() -> ManualClock:
    """A clock that moves only when a test moves it."""
    return ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture(name="database_url", params=BACKENDS)
def database_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database for one test, on each backend."""
    backend = request.param
    if backend == "sqlite-file":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
    elif backend == "sqlite-memory":
        yield "sqlite:///:memory:"
    else:
        dsn = request.getfixturevalue("postgres_dsn")  # only PostgreSQL legs start a server
        with temporary_schema(dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
            yield url


@pytest.fixture(name="open_test_store", params=APIS)
def open_test_store_fixture(
    request: pytest.FixtureRequest, database_url: str, clock: ManualClock
) -> Iterator[StoreFactory]:
    """Opens stores on the test's database, through the sync or the async API."""
    factory = StoreFactory(database_url, request.param, clock)
    yield factory
    factory.close()


@pytest.fixture(name="open_persistent_store")
def open_persistent_store_fixture(open_test_store: StoreFactory) -> StoreFactory:
    """Like `open_test_store`, for tests that close a store and open its database again."""
    if open_test_store.url == "sqlite:///:memory:":
        pytest.skip("an in-memory database ends with its store")
    return open_test_store


@pytest.fixture(name="shared_database_url")
def shared_database_url_fixture(database_url: str) -> str:
    """A database several processes can open at once (not an in-memory one)."""
    if database_url == "sqlite:///:memory:":
        pytest.skip("an in-memory database belongs to one process")
    return database_url


@pytest.fixture(name="store")
def store_fixture(open_test_store: StoreFactory) -> Any:
    """A store on a fresh database (typed `Any`: a `SessionStore` or an `AsyncDriver`)."""
    return open_test_store()
