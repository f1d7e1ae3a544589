"""Fixtures of the web UI tests: a store on each backend, and the app over it
driven by Starlette's TestClient (real HTTP semantics, in process)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from aisopod_session import SessionStore, open_store
from aisopod_session.web import WebSettings, create_app
from tests.session.postgres_schema import temporary_schema
from tests.web.hostile import Seeded, seed

BACKENDS = ("sqlite", "postgres")

ClientFactory = Callable[..., TestClient]


@pytest.fixture(name="store_url", params=BACKENDS)
def store_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store URL, on a SQLite file and on PostgreSQL (a schema of its own)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sessions.db'}"
    else:
        dsn = request.getfixturevalue("postgres_dsn")  # only PostgreSQL legs start a server
        with temporary_schema(dsn, f"web_{uuid.uuid4().hex[:12]}") as url:
            yield url


@pytest.fixture(name="store")
def store_fixture(store_url: str) -> Iterator[SessionStore]:
    with open_store(store_url) as store:
        yield store


@pytest.fixture(name="seeded")
def seeded_fixture(store: SessionStore) -> Seeded:
    """The store with ordinary and hostile sessions of two agents."""
    return seed(store)


@pytest.fixture(name="client")
def client_fixture(store: SessionStore) -> Iterator[ClientFactory]:
    """Makes a TestClient on an app over the store (`agent=` scopes it; other
    keywords are `WebSettings`)."""
    opened: list[TestClient] = []

    def make(agent: str | None = None, **settings: Any) -> TestClient:
        served = store.for_agent(agent) if agent else store
        app = create_app(served, WebSettings(**settings))
        client = TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()
