"""Fixtures of the adapter tests: a store on each backend, handed over in each form.

The adapters take a store as a URL, a `SessionStore` or an `AsyncSessionStore`;
`store_arg` is each of these in turn, on a SQLite file and on
PostgreSQL (the suite's server, see `tests/postgres.py`; in a schema of the
test's own, dropped after it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aisopod_session import AsyncSessionStore, SessionStore, open_async_store, open_store
from tests.session.postgres_schema import temporary_schema

BACKENDS = ("sqlite", "postgres")
STORE_KINDS = ("url", "sync", "async")

StoreArg = str | SessionStore | AsyncSessionStore


@pytest.fixture(name="store_url", params=BACKENDS)
def store_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store URL that several processes can open, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
    else:
        dsn = request.getfixturevalue("postgres_dsn")  # only PostgreSQL legs start a server
        with temporary_schema(dsn, f"adapters_{uuid.uuid4().hex[:12]}") as url:
            yield url


@pytest.fixture(name="sqlite_url")
def sqlite_url_fixture(tmp_path: Path) -> str:
    """A fresh SQLite file store URL."""
    return f"sqlite:///{tmp_path / 'sessions.db'}"


@pytest.fixture(name="store_arg", params=STORE_KINDS)
def store_arg_fixture(request: pytest.FixtureRequest, store_url: str) -> Iterator[StoreArg]:
    """What an adapter's `store` argument may be: the URL, a sync or an async store."""
    if request.param == "url":
        yield store_url
    elif request.param == "sync":
        with open_store(store_url) as store:
            yield store
    else:
        async_store = open_async_store(store_url)
        try:
            yield async_store
        finally:
            asyncio.run(async_store.aclose())


@pytest.fixture(name="inspect")
def inspect_fixture(store_url: str) -> Iterator[SessionStore]:
    """A synchronous store on the test's database, to look at what the adapters wrote."""
    with open_store(store_url) as store:
        yield store


@pytest.fixture(name="memory_store")
def memory_store_fixture() -> Iterator[SessionStore]:
    """An in-memory store, for the many-example property tests."""
    with open_store("sqlite:///:memory:") as store:
        yield store


def fresh_name() -> str:
    """A session name no other test uses (tests may share a PostgreSQL database)."""
    return f"user-{uuid.uuid4().hex[:12]}"
