"""The largest sessions: the most tokens first, of one agent or all, in a window
(every backend, sync and async)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from aisopod_session import AccessDenied, InvalidInput, Message, TokenUsage
from aisopod_shared import ManualClock


def _spend(store: Any, key: str, tokens: int, text: str = "priced") -> str:
    session = store.get_or_create(key)
    store.append(session.id, Message.assistant(text, usage=TokenUsage(input=tokens)))
    return str(session.id)


def test_the_most_tokens_first_then_the_most_bytes(store: Any, clock: ManualClock) -> None:
    small = _spend(store, "agent:main:a", 10)
    big = _spend(store, "agent:main:b", 500)
    wordy = _spend(store, "agent:main:c", 10, text="x" * 1000)  # ties small, more bytes
    ops = _spend(store, "agent:ops:a", 300)
    store.get_or_create("agent:main:empty")

    assert [s.id for s in store.largest(limit=4)] == [big, ops, wordy, small]
    assert [s.id for s in store.largest(limit=2, agent_id="main")] == [big, wordy]
    assert [s.id for s in store.for_agent("ops").largest()] == [ops]
    with pytest.raises(AccessDenied):
        store.for_agent("ops").largest(agent_id="main")


def test_the_window_keeps_the_sessions_updated_after_it(store: Any, clock: ManualClock) -> None:
    old = _spend(store, "agent:main:old", 1000)
    clock.advance(days=2)
    since = clock.now() - timedelta(days=1)
    recent = _spend(store, "agent:main:recent", 5)
    assert [s.id for s in store.largest(updated_after=since)] == [recent]
    store.append(old, Message.user("back again"))  # active again: in the window
    assert [s.id for s in store.largest(updated_after=since)] == [old, recent]


def test_bad_arguments_are_refused(store: Any) -> None:
    for limit in (0, -1, 10_000_000, "3"):
        with pytest.raises(InvalidInput, match="limit"):
            store.largest(limit=limit)
    with pytest.raises(InvalidInput, match="updated_after"):
        store.largest(updated_after=datetime(2026, 1, 1))  # naive: ambiguous
