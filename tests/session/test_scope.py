"""Agent scope: a handle scoped to an agent sees and touches only its sessions,
through every method, and no call binds one agent's key to another's session."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from aisopod_session import (
    AccessDenied,
    AsyncSessionStore,
    Inbound,
    InvalidInput,
    KeepLastTurns,
    RetentionPolicy,
    SessionStore,
)
from aisopod_session._store import engine_of
from aisopod_session.transfer import export_transcript, read_images, session_checksum
from aisopod_shared import Message
from tests.session.conversation import conversation
from tests.session.snapshot import snapshot


def test_a_fork_refuses_a_key_of_another_agent(store: Any) -> None:
    main = store.get_or_create("agent:main:main")
    store.append(main.id, [Message.user("q"), Message.assistant("a")])
    before = snapshot(store)
    with pytest.raises(InvalidInput, match="agent ops"):
        store.fork(main.id, key="agent:ops:x")
    assert snapshot(store) == before
    assert store.current("agent:ops:x") is None
    assert store.for_agent("ops").current("agent:ops:x") is None
    own = store.fork(main.id, key="agent:main:x")
    assert store.current("agent:main:x").id == own.id
    assert own.agent_id == "main"


def test_a_key_bound_to_another_agents_session_is_never_read_through(store: Any) -> None:
    """However such a binding came to be (an older version, a hand edit), a scoped
    handle reaching the key gets AccessDenied, never the other agent's session."""
    keyed = store.get_or_create("agent:main:secret")
    theirs = store.fork(keyed.id, title="main's plans")  # a session bound to no key
    backend = engine_of(store.sync if hasattr(store, "sync") else store).backend
    with backend.write() as tx:
        ref = tx.session_ref(theirs.id)
        assert ref is not None
        tx.rebind("ops", "agent:ops:x", ref.sid, 0)
    ops = store.for_agent("ops")
    attempts: list[Callable[[], Any]] = [
        lambda: ops.current("agent:ops:x"),
        lambda: ops.get_or_create("agent:ops:x"),
        lambda: ops.resolve(Inbound(key="agent:ops:x", text="hi")),
        lambda: ops.reset("agent:ops:x"),
    ]
    for attempt in attempts:
        with pytest.raises(AccessDenied):
            attempt()
    assert store.get(theirs.id).title == "main's plans"


def _session_calls(store: Any, session_id: str) -> dict[str, Callable[[], Any]]:
    """One call of every method that takes a session id."""
    return {
        "get": lambda: store.get(session_id),
        "patch": lambda: store.patch(session_id, title="x"),
        "delete": lambda: store.delete(session_id),
        "archive": lambda: store.archive(session_id),
        "append": lambda: store.append(session_id, Message.user("x")),
        "history": lambda: store.history(session_id),
        "entry_ids": lambda: store.entry_ids(session_id, [1]),
        "path": lambda: store.path(session_id),
        "context": lambda: store.context(session_id),
        "compact": lambda: store.compact(session_id, KeepLastTurns(1)),
        "undo_compaction": lambda: store.undo_compaction(session_id),
        "rewind": lambda: store.rewind(session_id, 1),
        "branches": lambda: store.branches(session_id),
        "fork": lambda: store.fork(session_id),
        "forks": lambda: store.forks(session_id),
        "search": lambda: store.search("question", session_id=session_id),
        "state": lambda: store.state(session_id),
        "update_state": lambda: store.update_state(session_id, {"k": 1}),
    }


def test_every_method_that_takes_a_session_refuses_another_agents(store: Any) -> None:
    theirs = store.get_or_create("agent:main:main")
    conversation(store, theirs.id, 3)
    store.compact(theirs.id, KeepLastTurns(1))
    ops = store.for_agent("ops")
    before = snapshot(store)
    calls = _session_calls(ops, theirs.id)
    for name, call in calls.items():
        if name == "search":
            assert call().hits == ()  # a filter: nothing of another agent's is found
            continue
        with pytest.raises(AccessDenied):
            call()
    sync = store.sync if hasattr(store, "sync") else store
    scoped = sync.for_agent("ops")
    with pytest.raises(AccessDenied):
        export_transcript(scoped, theirs.id, "/dev/null")
    with pytest.raises(AccessDenied):
        session_checksum(scoped, theirs.id)
    assert [image.id for image, _ in read_images(scoped)] == []
    assert ops.list().sessions == ()
    assert ops.stats() == []
    assert dict(ops.agent_state()) == {}
    with pytest.raises(AccessDenied):
        ops.agent_state("main")
    with pytest.raises(AccessDenied):
        ops.user_state("ann", "main")
    assert ops.maintain(RetentionPolicy(mode="enforce", max_sessions=0)).removals == ()
    assert snapshot(store) == before


def test_the_session_calls_above_cover_every_method_that_takes_a_session() -> None:
    """A new method that takes a session id must join `_session_calls`."""
    takes_session = {
        name
        for name, method in inspect.getmembers(SessionStore, inspect.isfunction)
        if not name.startswith("_") and "session_id" in inspect.signature(method).parameters
    }
    assert takes_session == set(_session_calls(None, "x"))


def test_the_async_store_has_every_method_of_the_sync_store() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_")}

    # `aclose` is `close` awaited, `sync` is the way back, `over` makes a store from a
    # backend and `borrowing` an async store over a store.
    assert public(SessionStore) - {"over"} == public(AsyncSessionStore) - {
        "aclose",
        "borrowing",
        "sync",
    }
    for name in public(SessionStore) - {"close", "for_agent", "url", "clock", "agent_id", "over"}:
        sync_method = getattr(SessionStore, name)
        async_method = getattr(AsyncSessionStore, name)
        assert inspect.iscoroutinefunction(async_method), name
        sync_params = list(inspect.signature(sync_method).parameters)
        assert list(inspect.signature(async_method).parameters) == sync_params, name
