"""How adapters hold their store: every coroutine goes through an async store (the one
handed in, one shared per URL, or one shared over a synchronous store handed in)."""

from __future__ import annotations

import ast
import asyncio
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

import aisopod_session
from aisopod_session import AsyncSessionStore, Message, SessionStore, open_store
from aisopod_session._store import engine_of
from aisopod_session.adapters._common import KeyedConversation
from aisopod_session.adapters.langchain import AisopodChatMessageHistory
from aisopod_session.adapters.openai_agents import AisopodSession
from tests.adapters.conftest import fresh_name
from tests.async_threads import WAIT, all_stopped, threads_of

ADDS = 24
"""Adds made at once by the group commit tests."""


def async_store_of(adapter: KeyedConversation) -> AsyncSessionStore:
    """The async store an adapter's coroutines go through."""
    return adapter._store.async_store


def use_both_adapters(store: SessionStore) -> list[threading.Thread]:
    """Add through both adapters on `store`, close them; the threads their async store
    started."""
    session = AisopodSession(fresh_name(), store)
    history = AisopodChatMessageHistory(fresh_name(), store)
    shared = async_store_of(session)
    assert async_store_of(history) is shared
    assert shared.sync is store
    assert session.store is store

    async def main() -> None:
        await session.add_items([{"role": "user", "content": "hi"}])
        await history.aadd_messages([HumanMessage("hello")])

    asyncio.run(main())
    session.close()
    history.close()
    current = store.current(history.key)  # the store is still open
    assert current is not None
    store.append(current.id, Message.user("after close"))
    assert [e.text for e in store.path(current.id).entries] == ["hello", "after close"]
    return threads_of(shared)


def test_a_store_handed_in_stays_open_and_adapters_on_it_share_one_async_store(
    store_url: str,
) -> None:
    """Both adapters on one synchronous store use one async store over it, which
    borrows it: closing them leaves it open, and the async store's threads stop
    once the last adapter on it is gone."""
    with open_store(store_url) as store:
        threads = use_both_adapters(store)
        assert threads
        gc.collect()
        assert all_stopped(threads)
        again = AisopodSession(fresh_name(), store)
        asyncio.run(again.add_items([{"role": "user", "content": "on new threads"}]))
        assert asyncio.run(again.get_items()) == [{"role": "user", "content": "on new threads"}]


def test_the_store_of_a_url_handed_in_shares_its_async_store(sqlite_url: str) -> None:
    """An adapter given the synchronous store another opened from a URL uses that
    adapter's async store, and does not close it."""
    first = AisopodSession(fresh_name(), sqlite_url)
    try:
        second = AisopodSession(fresh_name(), first.store)
        assert async_store_of(second) is async_store_of(first)
        second.close()
        asyncio.run(first.add_items([{"role": "user", "content": "still open"}]))
    finally:
        first.close()


@contextmanager
def counting_transactions(
    store: SessionStore,
) -> Iterator[tuple[list[int], threading.Event, threading.Event]]:
    """Count the write transactions begun on the store's database; the first tells the
    first event it has begun and waits (on its thread) until the second is set."""
    backend = engine_of(store).backend
    begun: list[int] = []
    held, release = threading.Event(), threading.Event()
    inside = threading.local()  # SQLite's write_append begins its transaction with write()
    originals = {name: getattr(backend, name) for name in ("write", "write_append")}

    def spying(method: Callable[[], Any]) -> Callable[[], Any]:
        def spy() -> Any:
            if getattr(inside, "spying", False):
                return method()
            inside.spying = True
            try:
                begun.append(1)
                if len(begun) == 1:
                    held.set()
                    release.wait(timeout=WAIT)
                return method()
            finally:
                inside.spying = False

        return spy

    for name, method in originals.items():
        setattr(backend, name, spying(method))
    try:
        yield begun, held, release
    finally:
        for name in originals:
            delattr(backend, name)


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.001)


@pytest.mark.parametrize("adapter", ["openai-agents", "langchain"])
@pytest.mark.parametrize("given", ["url", "sync"])
def test_adds_from_many_coroutines_share_commits(
    store_url: str, inspect: SessionStore, adapter: str, given: str
) -> None:
    """Items added at once by many coroutines, through an adapter on a URL or on a
    synchronous store, go through the async store's group committer: the adds that
    wait behind a transaction are committed together, in one more, with gapless seqs."""
    store = open_store(store_url) if given == "sync" else None
    made: KeyedConversation
    if adapter == "openai-agents":
        session = made = AisopodSession(fresh_name(), store or store_url)

        async def add(text: str) -> None:
            await session.add_items([{"role": "user", "content": text}])
    else:
        history = made = AisopodChatMessageHistory(fresh_name(), store or store_url)

        async def add(text: str) -> None:
            await history.aadd_messages([HumanMessage(text)])

    committer = async_store_of(made)._committer
    try:
        asyncio.run(add("first"))  # the session exists: each add below is one append

        async def main() -> None:
            # The committer is held in the transaction of a first add, while the
            # others reach it.
            first = asyncio.ensure_future(add("0"))
            await wait_until(held.is_set)
            adds = [asyncio.ensure_future(add(str(n))) for n in range(1, ADDS + 1)]
            await wait_until(lambda: committer._queue.qsize() == ADDS)
            release.set()
            await asyncio.gather(first, *adds)

        with counting_transactions(async_store_of(made).sync) as (begun, held, release):
            asyncio.run(main())
        assert len(begun) == 2
    finally:
        made.close()
        if store is not None:
            store.close()
    current = inspect.current(made.key)
    assert current is not None
    entries = inspect.path(current.id, last=ADDS + 10).entries
    assert [entry.seq for entry in entries] == list(range(1, ADDS + 3))
    assert sorted(entry.text for entry in entries[1:]) == sorted(str(n) for n in range(ADDS + 1))


def test_no_module_of_the_package_calls_to_thread() -> None:
    """Sync becomes async in one place, the async store's threads: nothing else in
    the package hands work to `asyncio.to_thread`."""
    root = Path(aisopod_session.__file__).parent
    callers = [
        f"{path.relative_to(root)}:{node.lineno}"
        for path in sorted(root.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if (isinstance(node, ast.Attribute) and node.attr == "to_thread")
        or (isinstance(node, ast.Name) and node.id == "to_thread")
        or (isinstance(node, ast.alias) and node.name == "to_thread")
    ]
    assert callers == []
