"""Read routes on an SQLite file are served on the event loop's thread when the
store can answer at once, and on a worker thread otherwise (a locked file, a read
past the bounds, PostgreSQL), with the same answers."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from aisopod_session import Message, SessionStore, open_store
from aisopod_session.backends.sqlite import INLINE_STEPS
from aisopod_session.web import create_app
from tests.async_threads import WAIT
from tests.inline_reads import inline_threads, while_the_file_is_held

ROUTES = (
    "/",
    "/sessions/{id}",
    "/sessions/{id}/entries?after=0",
    "/usage",
    "/api/sessions",
    "/api/sessions/{id}/entries",
)


async def _get(store: SessionStore, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return await client.get(path)


def test_pages_are_served_on_the_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path / "s.db")
    session_id = store.get_or_create("agent:main:main", title="chat").id
    store.append(session_id, [Message.user("hello"), Message.assistant("hi there")])
    threads = inline_threads(store, monkeypatch)

    async def main() -> None:
        for route in ROUTES:
            response = await _get(store, route.format(id=session_id))
            assert response.status_code == 200, route
        assert threads == {threading.get_ident()}
        page = await _get(store, f"/sessions/{session_id}")
        assert "hi there" in page.text
        missing = await _get(store, "/sessions/nope")  # the store's error, as before
        assert missing.status_code == 404

    asyncio.run(main())
    store.close()


def test_a_locked_file_sends_the_page_to_a_worker_and_the_loop_runs_meanwhile(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    with open_store(path) as writer:
        session_id = writer.get_or_create("agent:main:main").id
        writer.append(session_id, [Message.user(f"line {n}") for n in range(5)])
    # Opened after the writer let go, as a server would be: no connection of its own
    # holds the file yet, so the locker can take it whole.
    store = open_store(path, busy_timeout=WAIT)

    async def main() -> None:
        response = await while_the_file_is_held(
            path, lambda: _get(store, f"/sessions/{session_id}")
        )
        assert response.status_code == 200
        assert all(f"line {n}" in response.text for n in range(5))

    asyncio.run(main())
    store.close()


def test_a_search_past_the_bounds_is_answered_from_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(tmp_path / "s.db")
    session_id = store.get_or_create("agent:main:main").id
    store.append(session_id, [Message.user(f"deploy number {n}") for n in range(INLINE_STEPS)])
    expected = store.search("deploy", limit=20)
    threads = inline_threads(store, monkeypatch)

    async def main() -> None:
        found = await _get(store, "/api/search?q=deploy")
        assert found.status_code == 200
        assert [hit["seq"] for hit in found.json()["hits"]] == [h.seq for h in expected.hits]
        assert threads == {threading.get_ident()}  # tried here first, then a worker

    asyncio.run(main())
    store.close()
