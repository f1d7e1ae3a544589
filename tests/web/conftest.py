"""Fixtures of the web UI tests: a store on each backend (`store_url`, the
adapter tests' fixture: a SQLite file, and PostgreSQL in a schema of its own),
and the app over it driven by Starlette's TestClient (in process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from aisopod_session import SessionStore, open_store
from aisopod_session.web import WebSettings, create_app
from tests.adapters.conftest import store_url_fixture
from tests.web.hostile import Seeded, seed

ClientFactory = Callable[..., TestClient]


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


__all__ = ["store_url_fixture"]  # a fixture: imported to be registered here
