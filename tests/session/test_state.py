"""State: session keys follow the entry tree, `user:` and `agent:` keys are shared,
`temp:` keys are dropped; every change is atomic with its append, and bad input
changes nothing."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import attrs
import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from aisopod_session import (
    REMOVE,
    AccessDenied,
    ConflictError,
    Entry,
    Inbound,
    InvalidInput,
    InvalidPayload,
    KeepLastTurns,
    NewEntry,
    PayloadTooLarge,
    RetentionPolicy,
    SessionConfig,
    open_async_store,
    open_store,
)
from aisopod_session._state import SNAPSHOT_EVERY
from aisopod_session.transfer import export_transcript, import_transcript
from aisopod_shared import ManualClock, Message
from tests.session.conversation import conversation
from tests.session.postgres_schema import temporary_schema
from tests.session.snapshot import all_entries, snapshot

SHARED_PREFIXES = ("user:", "agent:")


def _own(state: Mapping[str, Any]) -> dict[str, Any]:
    """The session's own keys of a `state()` mapping."""
    return {k: v for k, v in state.items() if not k.startswith(SHARED_PREFIXES)}


def _shared(state: Mapping[str, Any]) -> dict[str, Any]:
    """The `user:` and `agent:` keys of a `state()` mapping, with their prefix."""
    return {k: v for k, v in state.items() if k.startswith(SHARED_PREFIXES)}


def _path(entries: Mapping[int, Entry], seq: int) -> list[Entry]:
    """The entries from `seq` up to the root, following parents."""
    path = []
    while seq:
        path.append(entries[seq])
        seq = entries[seq].parent_seq or 0
    return path


def _fold(entries: Mapping[int, Entry], seq: int) -> dict[str, Any]:
    """The session state at `seq`, the naive way: walk the parents to the root, then
    apply the `state` entries on that path in order."""
    state: dict[str, Any] = {}
    for entry in reversed(_path(entries, seq)):
        if entry.type == "state":
            data = entry.payload["data"]
            state.update(data["set"])
            for key in data["remove"]:
                state.pop(key, None)
    return state


def _by_seq(store: Any, session_id: str) -> dict[int, Entry]:
    return {e.seq: e for e in all_entries(store, session_id)}


def _everything(
    store: Any, session_ids: list[str], users: tuple[str, ...] = ("u",)
) -> tuple[Any, ...]:
    """The whole store: sessions with their entries, the sessions' states, and the
    shared scopes (of `users` and of the `main` and `ops` agents)."""
    return (
        snapshot(store),
        [dict(store.state(s)) for s in session_ids],
        [dict(store.user_state(u)) for u in users],
        [dict(store.agent_state(a)) for a in ("main", "ops")],
    )


def _attempts(store: Any, session_id: str, delta: Any) -> list[Callable[[], Any]]:
    """Every way to send a state delta: with a message, alone through `append`, and
    through `update_state`."""
    return [
        lambda: store.append(session_id, Message.user("x"), state=delta),
        lambda: store.append(session_id, [], state=delta),
        lambda: store.update_state(session_id, delta),
    ]


def _refused(
    store: Any, delta: Any, error: type[Exception], session_id: str | None = None
) -> list[Any]:
    """Send `delta` every way; each must raise `error` and change nothing. The errors."""
    sid = session_id if session_id is not None else store.current("agent:main:main").id
    watched = [s.id for s in store.list(limit=100).sessions]
    before = _everything(store, watched)
    errors = []
    for attempt in _attempts(store, sid, delta):
        with pytest.raises(error) as caught:
            attempt()
        errors.append(caught.value)
        assert _everything(store, watched) == before
    return errors


@pytest.fixture(name="seeded")
def seeded_fixture(store: Any) -> Any:
    """A store with state in every scope, so that 'nothing changed' means something."""
    session = store.get_or_create("agent:main:main", user_id="u")
    store.append(
        session.id, [Message.user("hi")], state={"a": 1, "b": [1], "user:u": 2, "agent:g": 3}
    )
    store.get_or_create("agent:main:bare")  # a session without a user
    ops = store.get_or_create("agent:ops:main", user_id="u")
    store.update_state(ops.id, {"o": 1, "user:u": ["ops"], "agent:g": ["ops"]})
    return store


# --- scopes and values ---------------------------------------------------------------


def test_keys_go_to_their_scope_and_temp_keys_are_never_stored(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    appended = store.append(
        session.id,
        [Message.user("hi")],
        state={"plain": 1, "user:lang": ["fr"], "agent:model": ["m"], "temp:scratch": 4},
    )
    assert [e.type for e in appended] == ["message", "state"]
    assert appended[1].payload == {
        "customType": "aisopod.state",
        "data": {"set": {"plain": 1}, "remove": []},
    }
    assert dict(store.state(session.id)) == {"plain": 1, "user:lang": ["fr"], "agent:model": ["m"]}
    assert dict(store.user_state("u")) == {"lang": ["fr"]}
    assert dict(store.agent_state()) == {"model": ["m"]}
    # temp: alone is no change at all: no entry, nothing stored
    assert store.append(session.id, [], state={"temp:scratch": 5}) == ()
    assert store.update_state(session.id, {"temp:x": 1}) == store.state(session.id)
    assert store.get(session.id).entry_count == 2


def test_a_value_replaces_the_old_one_whole(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    given: dict[str, Any] = {"a": 1, "b": {"c": 2}}
    store.update_state(
        session.id, {"d": given, "user:d": {"a": 1, "b": 2}, "agent:d": {"a": 1, "b": 2}}
    )
    given["a"] = "changed after the call"  # the store keeps what it was given
    after = store.update_state(session.id, {"d": {"b": {"e": 3}}, "user:d": {"b": 3}})
    store.update_state(session.id, {"agent:d": [1]})
    assert dict(store.state(session.id)) == {
        "d": {"b": {"e": 3}},
        "user:d": {"b": 3},
        "agent:d": [1],
    }
    assert dict(after) == {"d": {"b": {"e": 3}}, "user:d": {"b": 3}, "agent:d": {"a": 1, "b": 2}}


def test_none_is_stored_and_remove_deletes(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    store.update_state(session.id, {"a": 1, "b": 2, "user:a": 1, "user:b": 2, "agent:a": 1})
    store.update_state(
        session.id, {"a": None, "b": REMOVE, "user:a": None, "user:b": REMOVE, "agent:a": REMOVE}
    )
    state = store.state(session.id)
    assert dict(state) == {"a": None, "user:a": None}
    assert not {"b", "user:b", "agent:a"} & set(state)
    assert dict(store.user_state("u")) == {"a": None}
    assert dict(store.agent_state()) == {}
    # removing what is not there is no error
    store.update_state(session.id, {"missing": REMOVE, "user:missing": REMOVE})
    assert dict(store.state(session.id)) == {"a": None, "user:a": None}
    assert store.history(session.id).entries[-1].payload["data"] == {
        "set": {},
        "remove": ["missing"],
    }


def test_state_is_read_only(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    store.update_state(session.id, {"a": 1, "user:b": 2, "agent:c": 3})
    for state in (
        store.state(session.id),
        store.state(session.id, at_seq=1),
        store.update_state(session.id, {"a": 2}),
        store.user_state("u"),
        store.agent_state(),
    ):
        key = next(iter(state))
        with pytest.raises(TypeError):
            state[key] = "changed"
        with pytest.raises(TypeError):
            del state[key]
        with pytest.raises((TypeError, AttributeError)):
            state.update({"x": 1})
    assert dict(store.state(session.id)) == {"a": 2, "user:b": 2, "agent:c": 3}


def test_user_state_and_agent_state_read_one_scope_without_prefix(store: Any) -> None:
    alice = store.get_or_create("agent:main:a", user_id="alice")
    bob = store.get_or_create("agent:main:b", user_id="bob")
    ops = store.get_or_create("agent:ops:a", user_id="alice")
    store.update_state(alice.id, {"user:lang": ["fr"], "agent:tone": ["dry"], "own": 1})
    store.update_state(bob.id, {"user:lang": ["de"]})
    store.update_state(ops.id, {"user:lang": ["it"], "agent:tone": ["warm"]})
    assert dict(store.user_state("alice")) == {"lang": ["fr"]}
    assert dict(store.user_state("bob")) == {"lang": ["de"]}
    assert dict(store.user_state("alice", agent_id="ops")) == {"lang": ["it"]}
    assert dict(store.user_state("nobody")) == {}
    assert dict(store.agent_state()) == {"tone": ["dry"]}
    assert dict(store.agent_state("ops")) == {"tone": ["warm"]}
    assert dict(store.agent_state("idle")) == {}


def test_a_scoped_handle_reads_its_own_agents_state_and_is_refused_another_agents(
    store: Any,
) -> None:
    main = store.get_or_create("agent:main:main", user_id="u")
    store.update_state(main.id, {"a": 1, "user:u": ["main"], "agent:g": ["main"]})
    ops = store.for_agent("ops")
    mine = ops.get_or_create("main", user_id="u")
    ops.update_state(mine.id, {"o": 1, "user:u": ["ops"], "agent:g": ["ops"]})
    assert dict(ops.state(mine.id)) == {"o": 1, "user:u": ["ops"], "agent:g": ["ops"]}
    assert dict(ops.user_state("u")) == {"u": ["ops"]}
    assert dict(ops.agent_state()) == {"g": ["ops"]}
    assert dict(ops.agent_state("ops")) == {"g": ["ops"]}
    before = _everything(store, [main.id, mine.id])
    refused: list[Callable[[], Any]] = [
        lambda: ops.state(main.id),
        lambda: ops.state(main.id, at_seq=1),
        lambda: ops.update_state(main.id, {"a": 2}),
        lambda: ops.append(main.id, Message.user("x"), state={"a": 2}),
        lambda: ops.append(main.id, [], state={"agent:g": ["x"]}),
        lambda: ops.user_state("u", agent_id="main"),
        lambda: ops.agent_state("main"),
    ]
    for attempt in refused:
        with pytest.raises(AccessDenied):
            attempt()
    assert _everything(store, [main.id, mine.id]) == before
    assert dict(store.for_agent("main").user_state("u")) == {"u": ["main"]}


# --- atomicity and rules -------------------------------------------------------------


def test_entries_and_state_are_appended_together_or_not_at_all(open_test_store: Any) -> None:
    store = open_test_store(max_payload_bytes=1024)
    session = store.get_or_create("agent:main:main", user_id="u")
    bare = store.get_or_create("agent:main:bare")
    got = store.append(
        session.id,
        [Message.user("a"), Message.assistant("b")],
        state={"n": 1, "user:n": 1, "agent:n": 1},
    )
    assert [(e.seq, e.parent_seq, e.type) for e in got] == [
        (1, None, "message"),
        (2, 1, "message"),
        (3, 2, "state"),
    ]
    after = store.get(session.id)
    assert (after.entry_count, after.message_count, after.leaf_seq) == (3, 2, 3)
    assert dict(store.state(session.id)) == {"n": 1, "user:n": 1, "agent:n": 1}
    before = _everything(store, [session.id, bare.id])
    # a message the store refuses takes the state with it...
    with pytest.raises(PayloadTooLarge):
        store.append(
            session.id,
            [Message.user("ok"), Message.user("x" * 2000)],
            state={"n": 2, "user:n": 2, "agent:n": 2},
        )
    # ...and a state the store refuses after the entries were written takes the entries
    with pytest.raises(InvalidInput):
        store.append(bare.id, [Message.user("ok")], state={"n": 2, "agent:n": 2, "user:n": 2})
    assert _everything(store, [session.id, bare.id]) == before


def _stale_attempts(
    store: Any, session_id: str, delta: dict[str, Any], version: int
) -> list[Callable[[], Any]]:
    """Every way to send `delta` (and its shared part alone) with `expected_version`."""
    shared = {k: v for k, v in delta.items() if k.startswith(SHARED_PREFIXES)}
    return [
        lambda: store.append(session_id, Message.user("x"), state=delta, expected_version=version),
        lambda: store.append(session_id, [], state=delta, expected_version=version),
        lambda: store.append(session_id, [], state=shared, expected_version=version),
        lambda: store.update_state(session_id, delta, expected_version=version),
    ]


def test_a_stale_expected_version_raises_conflict_and_changes_nothing(seeded: Any) -> None:
    session = seeded.current("agent:main:main")
    delta = {"a": 9, "new": 9, "user:u": 9, "agent:g": 9, "temp:t": 9}
    for stale in (session.version - 1, session.version + 1):
        for attempt in _stale_attempts(seeded, session.id, delta, stale):
            before = _everything(seeded, [session.id])
            with pytest.raises(ConflictError) as caught:
                attempt()
            assert (caught.value.expected, caught.value.actual) == (stale, session.version)
            assert _everything(seeded, [session.id]) == before
    seeded.update_state(session.id, {"a": 9}, expected_version=session.version)
    assert seeded.state(session.id)["a"] == 9


def test_an_idempotent_retry_adds_nothing_and_does_not_apply_state_again(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    delta = {"counter": 1, "user:seen": 1, "agent:seen": 1}
    first = store.append(session.id, [Message.user("go")], state=delta, idempotency_key="k1")
    alone = store.append(session.id, [], state={**delta, "counter": 10}, idempotency_key="k2")
    assert [e.type for e in first] == ["message", "state"]
    assert [e.type for e in alone] == ["state"]
    store.update_state(session.id, {"counter": 2, "user:seen": 2, "agent:seen": 2})
    before = _everything(store, [session.id])
    again = store.append(session.id, [Message.user("go")], state=delta, idempotency_key="k1")
    again_alone = store.append(session.id, [], state={**delta, "counter": 10}, idempotency_key="k2")
    assert [(e.seq, e.id) for e in again] == [(e.seq, e.id) for e in first]
    assert [(e.seq, e.id) for e in again_alone] == [(e.seq, e.id) for e in alone]
    assert _everything(store, [session.id]) == before
    assert dict(store.state(session.id)) == {"counter": 2, "user:seen": 2, "agent:seen": 2}


def test_an_idempotent_retry_of_a_shared_only_change_does_not_apply_it_again(
    store: Any,
) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    delta = {"user:seen": 1, "agent:seen": 1}
    store.append(session.id, [], state=delta, idempotency_key="k")
    store.update_state(session.id, {"user:seen": 2, "agent:seen": 2})
    store.append(session.id, [], state=delta, idempotency_key="k")
    assert dict(store.state(session.id)) == {"user:seen": 2, "agent:seen": 2}


def test_entries_may_be_empty_when_only_state_changes(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    store.append(session.id, Message.user("hi"))
    got = store.append(session.id, [], state={"a": 1, "user:b": 2})
    assert [(e.seq, e.parent_seq, e.type) for e in got] == [(2, 1, "state")]
    after = store.get(session.id)
    assert (after.entry_count, after.message_count, after.leaf_seq) == (2, 1, 2)
    assert after.version == session.version + 2
    assert dict(store.state(session.id)) == {"a": 1, "user:b": 2}
    assert [m.text for m in store.context(session.id).messages] == ["hi"]


def test_a_shared_only_change_appends_no_entry(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    store.append(session.id, Message.user("hi"))
    before = store.get(session.id)
    assert store.append(session.id, [], state={"user:a": 1, "agent:b": 2, "temp:c": 3}) == ()
    after = store.update_state(session.id, {"user:a": REMOVE, "agent:c": 3})
    assert dict(after) == {"agent:b": 2, "agent:c": 3}
    got = store.get(session.id)
    assert (got.entry_count, got.leaf_seq) == (before.entry_count, before.leaf_seq)
    assert [e.type for e in all_entries(store, session.id)] == ["message"]
    # with messages, only the messages are entries
    got_entries = store.append(session.id, Message.user("more"), state={"user:a": 5})
    assert [e.type for e in got_entries] == ["message"]
    assert store.user_state("u")["a"] == 5


# --- bad input -----------------------------------------------------------------------


def test_a_delta_that_is_not_a_mapping_is_refused(seeded: Any) -> None:
    for delta in ([("a", 1)], "a=1", 42, {"a"}, b"{}", [], ""):
        for error in _refused(seeded, delta, InvalidInput):
            assert error.field == "state"


def test_keys_that_are_not_non_empty_strings_are_refused(seeded: Any) -> None:
    for key in (1, None, b"a", ("a",), 1.5, "", "user:", "agent:", "temp:"):
        _refused(seeded, {key: 1}, InvalidInput)
    # keys the store cannot keep in a session's state entry
    for key in ("a\x00b", "\ud800"):
        _refused(seeded, {key: 1}, InvalidPayload)


def test_app_keys_are_refused_with_a_pointer_to_agent_keys(seeded: Any) -> None:
    for error in _refused(seeded, {"app:model": "m"}, InvalidInput):
        assert "app:" in str(error)
        assert "agent:" in str(error)


def test_unknown_prefixes_are_refused(seeded: Any) -> None:
    for key in ("foo:x", "User:x", "session:x", "a:b:c"):
        for error in _refused(seeded, {key: 1}, InvalidInput):
            assert key.split(":")[0] + ":" in str(error)


def test_values_json_cannot_carry_are_refused(seeded: Any) -> None:
    bad: list[Any] = [
        float("nan"),
        float("inf"),
        {1, 2},
        object(),
        2**70,
        b"bytes",
        "\ud800",
        {"nested": float("-inf")},
        {1: "non-string key"},
        [{"deep": {"x", "y"}}],
    ]
    for value in bad:
        for key in ("a", "user:a", "agent:a"):
            _refused(seeded, {key: value}, InvalidInput)
    # a NUL is JSON but no backend stores it in an entry
    _refused(seeded, {"a": "a\x00b"}, InvalidPayload)
    # one bad value refuses the whole delta
    _refused(seeded, {"a": 5, "user:u": 5, "agent:g": 5, "bad": float("nan")}, InvalidInput)


def test_a_value_over_the_size_limit_is_refused(open_test_store: Any) -> None:
    store = open_test_store(max_payload_bytes=256)
    session = store.get_or_create("agent:main:main", user_id="u")
    store.update_state(session.id, {"a": 1, "user:a": 1, "agent:a": 1})
    big = "x" * 300
    for key in ("a", "user:a", "agent:a"):
        for error in _refused(store, {key: big}, InvalidInput):
            assert error.field == f"state.{key}"
    # each value fits, but the state entry recording them does not
    _refused(store, {"a": "y" * 150, "b": "z" * 150}, PayloadTooLarge)
    # values within the limit are kept
    fits = {"v": "x" * 190}
    store.update_state(session.id, {"user:a": fits, "agent:a": fits})
    assert store.user_state("u")["a"] == fits


def test_user_keys_on_a_session_without_a_user_are_refused(seeded: Any) -> None:
    bare = seeded.current("agent:main:bare")
    for delta in ({"user:x": 1}, {"a": 1, "user:x": 1, "agent:g": 9}, {"user:u": REMOVE}):
        for error in _refused(seeded, delta, InvalidInput, session_id=bare.id):
            assert "user" in str(error)
    # the session's own and agent keys are fine without a user
    seeded.update_state(bare.id, {"a": 1, "agent:g": 4})
    assert dict(seeded.state(bare.id)) == {"a": 1, "agent:g": 4}


def test_state_entries_cannot_be_appended_directly(seeded: Any) -> None:
    session = seeded.current("agent:main:main")
    raw = NewEntry("state", {"customType": "aisopod.state", "data": {"set": {"a": 99}}})
    watched = [s.id for s in seeded.list(limit=100).sessions]
    before = _everything(seeded, watched)
    for entries in (raw, [Message.user("x"), raw], [raw, Message.user("x")]):
        for state in (None, {"b": 1}):
            with pytest.raises(InvalidInput):
                seeded.append(session.id, entries, state=state)
    assert _everything(seeded, watched) == before


@pytest.mark.parametrize("key", ["user:k\x00", "agent:\ud800"])
def test_a_shared_key_the_store_cannot_keep_gets_a_typed_error(seeded: Any, key: str) -> None:
    _refused(seeded, {key: 1}, InvalidInput)


def test_string_values_in_shared_scopes_read_back_as_written(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    other = store.get_or_create("agent:main:other", user_id="u")
    for value in ("42", "true", "null", "[1, 2]", '"quoted"', "", "fr"):
        store.update_state(session.id, {"user:s": value, "agent:s": value, "own": value})
        assert dict(store.state(other.id)) == {"user:s": value, "agent:s": value}
        assert dict(store.state(session.id)) == {"own": value, "user:s": value, "agent:s": value}
        assert dict(store.user_state("u")) == {"s": value}
        assert dict(store.agent_state()) == {"s": value}


def test_state_at_an_entry_the_session_does_not_have_is_refused(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("a"), state={"a": 1})
    assert dict(store.state(session.id, at_seq=0)) == {}
    assert dict(store.state(session.id, at_seq=2)) == {"a": 1}
    for at_seq in (3, -1, "1", 1.0, True):
        with pytest.raises(InvalidInput):
            store.state(session.id, at_seq=at_seq)


# --- the tree ------------------------------------------------------------------------


def _numbered(store: Any, session_id: str, values: range) -> list[int]:
    """Append a message and set `n` for each value; the seqs of the state entries."""
    return [
        store.append(session_id, Message.user(f"m{v}"), state={"n": v, f"k{v}": v})[-1].seq
        for v in values
    ]


def test_rewind_brings_back_the_state_at_that_entry(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    seqs = _numbered(store, session.id, range(1, 6))  # seqs 2, 4, 6, 8, 10
    store.rewind(session.id, seqs[1])
    assert dict(store.state(session.id)) == {"n": 2, "k1": 1, "k2": 2}
    store.rewind(session.id, seqs[1] - 1)  # the message just before the state entry
    assert dict(store.state(session.id)) == {"n": 1, "k1": 1}
    store.rewind(session.id, seqs[4])  # forward again, to the old leaf
    assert dict(store.state(session.id)) == {"n": 5, **{f"k{v}": v for v in range(1, 6)}}
    # a rewind with a summary: the summary entry, the new leaf, changes no state
    rewound = store.rewind(session.id, seqs[2], summary="tried something else")
    assert rewound.leaf_seq == seqs[4] + 1
    assert dict(store.state(session.id)) == {"n": 3, "k1": 1, "k2": 2, "k3": 3}
    # the next change starts from the rewound state
    store.update_state(session.id, {"k1": REMOVE})
    assert dict(store.state(session.id)) == {"n": 3, "k2": 2, "k3": 3}
    store.rewind(session.id, 0)
    assert dict(store.state(session.id)) == {}


def test_undo_compaction_brings_back_the_state_before_the_compaction(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    conversation(store, session.id, 4)
    store.update_state(session.id, {"phase": "before"})
    result = store.compact(session.id, KeepLastTurns(1))
    assert result.entry is not None
    store.append(session.id, Message.user("after"), state={"phase": "after", "extra": 1})
    assert dict(store.state(session.id)) == {"phase": "after", "extra": 1}
    store.undo_compaction(session.id)
    assert dict(store.state(session.id)) == {"phase": "before"}


def test_a_branch_after_a_rewind_has_its_own_state_and_the_old_branch_keeps_its_own(
    store: Any,
) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    seqs = _numbered(store, session.id, range(1, 4))
    old_leaf = seqs[-1]
    store.rewind(session.id, seqs[0])
    new = store.append(session.id, Message.user("other"), state={"n": 10, "k3": REMOVE})
    new += store.append(session.id, [], state={"branch": "new"})
    new_leaf = new[-1].seq
    branches = store.branches(session.id)
    assert [(b.leaf_seq, b.active) for b in branches] == [(old_leaf, False), (new_leaf, True)]
    assert dict(store.state(session.id)) == {"n": 10, "k1": 1, "branch": "new"}
    assert dict(store.state(session.id, at_seq=new_leaf)) == {"n": 10, "k1": 1, "branch": "new"}
    assert dict(store.state(session.id, at_seq=old_leaf)) == {"n": 3, "k1": 1, "k2": 2, "k3": 3}
    store.rewind(session.id, old_leaf)
    assert dict(store.state(session.id)) == {"n": 3, "k1": 1, "k2": 2, "k3": 3}
    entries = _by_seq(store, session.id)
    for seq in entries:
        assert dict(store.state(session.id, at_seq=seq)) == _fold(entries, seq)


def test_a_fork_starts_from_the_state_at_the_fork_point_and_then_diverges(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    seqs = _numbered(store, session.id, range(1, 5))
    fork = store.fork(session.id, seqs[1], key="agent:main:fork")
    assert dict(store.state(fork.id)) == {"n": 2, "k1": 1, "k2": 2}
    store.update_state(fork.id, {"n": "fork", "k1": REMOVE})
    store.update_state(session.id, {"n": "source", "k2": REMOVE})
    assert dict(store.state(fork.id)) == {"n": "fork", "k2": 2}
    assert dict(store.state(session.id)) == {"n": "source", "k1": 1, "k3": 3, "k4": 4}
    assert dict(store.state(fork.id, at_seq=seqs[1])) == {"n": 2, "k1": 1, "k2": 2}
    # a fork of the leaf, and a fork of a rewound session's leaf
    assert dict(store.state(store.fork(session.id).id)) == dict(store.state(session.id))
    store.rewind(session.id, seqs[0] - 1)
    assert dict(store.state(store.fork(session.id).id)) == {}


def test_shared_state_is_not_branch_local(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    store.append(session.id, Message.user("a"), state={"own": 1, "user:x": 1, "agent:y": 1})
    store.append(session.id, Message.user("b"), state={"own": 2, "user:x": 2, "agent:y": 2})
    store.rewind(session.id, 1)
    assert dict(store.state(session.id)) == {"user:x": 2, "agent:y": 2}
    assert dict(store.state(session.id, at_seq=2)) == {"own": 1, "user:x": 2, "agent:y": 2}
    fork = store.fork(session.id, 1)
    store.update_state(fork.id, {"user:x": 3})
    assert store.state(session.id)["user:x"] == 3
    store.rewind(session.id, 4)
    assert dict(store.state(session.id)) == {"own": 2, "user:x": 3, "agent:y": 2}


def test_compaction_does_not_change_state(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    store.append(session.id, Message.system("be brief"), state={"early": 1, "user:u": 1})
    conversation(store, session.id, 3, system=False)
    store.update_state(session.id, {"late": 2})
    conversation(store, session.id, 2, system=False)
    before = dict(store.state(session.id))
    result = store.compact(session.id, KeepLastTurns(1))
    assert result.entry is not None
    assert dict(store.state(session.id)) == before
    assert dict(store.state(session.id, at_seq=result.entry.seq)) == before
    store.append(session.id, Message.user("next"))
    assert dict(store.state(session.id)) == before


def test_state_entries_are_not_messages_in_the_context(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    store.append(session.id, Message.system("sys"), state={"a": 1})
    store.append(session.id, [Message.user("q"), Message.assistant("r")], state={"b": "text"})
    store.update_state(session.id, {"c": 3})
    context = store.context(session.id)
    assert [(m.role, m.text) for m in context.messages] == [
        ("system", "sys"),
        ("user", "q"),
        ("assistant", "r"),
    ]
    assert all(e.type != "state" for e in context.entries)
    assert [m.text for m in context.for_model()] == ["sys", "q", "r"]
    assert store.search("text").hits == ()


# --- snapshots: the state at any entry is the fold of its path ----------------------

KEYS = ("a", "b", "c", "d", "e")


def _random_delta(rng: random.Random) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    for _ in range(rng.randint(1, 3)):
        key = rng.choice((*KEYS, *KEYS, "user:u", "agent:g", "temp:t"))
        choices: list[Any] = [
            REMOVE,
            None,
            rng.randint(0, 99),
            {"n": rng.randint(0, 9)},
            [rng.random()],
        ]
        if ":" not in key:  # strings in shared scopes have a test of their own
            choices.append("s")
        delta[key] = rng.choice(choices)
    return delta


def _change(store: Any, session_id: str, rng: random.Random) -> tuple[Entry, ...]:
    """One random change: with a message, or alone through `append` or `update_state`."""
    delta = _random_delta(rng)
    way = rng.randrange(3)
    if way == 0:
        return tuple(store.append(session_id, Message.user("m"), state=delta))
    if way == 1:
        return tuple(store.append(session_id, [], state=delta))
    store.update_state(session_id, delta)
    return ()


def test_the_state_at_every_entry_of_a_long_branching_session_is_the_fold_of_its_path(
    store: Any,
) -> None:
    """350 changes over several branches and a fork (snapshots every 64 changes on a
    path): `state(at_seq=N)` for every N is the fold of the changes on N's path."""
    rng = random.Random(20260301)
    session = store.get_or_create("agent:main:main", user_id="u")
    for _ in range(6):
        for _ in range(50):
            _change(store, session.id, rng)
        entries = _by_seq(store, session.id)
        leaf = store.get(session.id).leaf_seq
        assert _own(store.state(session.id)) == _fold(entries, leaf)
        on_path = _path(entries, leaf)[::-1]
        store.rewind(session.id, on_path[rng.randint(len(on_path) * 2 // 3, len(on_path) - 1)].seq)
        leaf = store.get(session.id).leaf_seq
        assert _own(store.state(session.id)) == _fold(entries, leaf)
    on_path = _path(_by_seq(store, session.id), store.get(session.id).leaf_seq)[::-1]
    fork = store.fork(session.id, on_path[len(on_path) * 2 // 3].seq)
    for _ in range(50):
        _change(store, fork.id, rng)
    shared = _shared(store.state(session.id))
    for sid, snapshots in ((session.id, 2), (fork.id, 1)):
        entries = _by_seq(store, sid)
        longest = max(sum(1 for e in _path(entries, seq) if e.type == "state") for seq in entries)
        assert longest > snapshots * SNAPSHOT_EVERY
        for seq in range(len(entries) + 1):
            got = store.state(sid, at_seq=seq)
            assert _own(got) == _fold(entries, seq), seq
            assert _shared(got) == shared
        assert _own(store.state(sid)) == _fold(entries, store.get(sid).leaf_seq)


@attrs.define
class TreeModel:
    """A session's entry tree: each entry's parent and the session part of its change
    (`None` for an entry that is not a state change)."""

    parents: list[int | None] = attrs.Factory(list)
    changes: list[dict[str, Any] | None] = attrs.Factory(list)
    leaf: int = 0

    def add(self, change: dict[str, Any] | None) -> int:
        self.parents.append(self.leaf or None)
        self.changes.append(change)
        self.leaf = len(self.parents)
        return self.leaf

    def path(self, seq: int) -> list[int]:
        seqs = []
        while seq:
            seqs.append(seq)
            seq = self.parents[seq - 1] or 0
        return seqs[::-1]

    def state_at(self, seq: int) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for step in self.path(seq):
            for key, value in (self.changes[step - 1] or {}).items():
                if value is REMOVE:
                    state.pop(key, None)
                else:
                    state[key] = value
        return state

    def forked(self, at: int) -> TreeModel:
        fork = TreeModel()
        for step in self.path(at):
            fork.add(self.changes[step - 1])
        return fork


shared_values = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.dictionaries(st.sampled_from(["x", "y"]), st.sampled_from(["", "x", "é"]), max_size=2),
    st.lists(st.booleans(), max_size=2),
    st.just(REMOVE),
)
values = shared_values | st.sampled_from(["", "x", "é"])
deltas = st.builds(
    lambda own, shared: {**own, **shared},
    st.dictionaries(st.sampled_from(KEYS), values, max_size=3),
    st.dictionaries(st.sampled_from(["user:u", "agent:g", "temp:t"]), shared_values, max_size=2),
)
_runs = itertools.count()


class StateMachine(RuleBasedStateMachine):
    """Appends with deltas, rewinds and forks; after each, every session's state (and
    any past one) must be the model's."""

    open_store: Any = None
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        # Each run gets an agent of its own, so runs sharing a database never meet.
        self.agent = f"s{next(_runs)}"
        self.root = type(self).open_store()
        self.store = self.root.for_agent(self.agent)
        self.model: dict[str, TreeModel] = {}
        self.shared: dict[str, Any] = {}

    def teardown(self) -> None:
        self.root.close()

    def _apply(self, session_id: str, messages: int, delta: dict[str, Any], way: str) -> None:
        model = self.model[session_id]
        own = {k: v for k, v in delta.items() if ":" not in k}
        if way == "update_state":
            got = self.store.update_state(session_id, delta)
            appended: tuple[Entry, ...] = ()
        else:
            entries = [Message.user(f"m{n}") for n in range(messages)]
            appended = tuple(self.store.append(session_id, entries, state=delta))
            got = None
        expected = [model.add(None) for _ in range(messages)]
        if own:
            expected.append(model.add(own))
        if way != "update_state":
            assert [e.seq for e in appended] == expected
        for key, value in delta.items():
            if key.startswith(SHARED_PREFIXES):
                if value is REMOVE:
                    self.shared.pop(key, None)
                else:
                    self.shared[key] = value
        if got is not None:
            assert dict(got) == {**model.state_at(model.leaf), **self.shared}

    def _burst(self, session_id: str, seed: int, count: int) -> None:
        rng = random.Random(seed)
        for _ in range(count):
            way = rng.choice(["append", "append", "update_state"])
            messages = rng.randint(0, 2) if way == "append" else 0
            self._apply(session_id, messages, _random_delta(rng), way)

    @initialize(
        target=sessions,
        seed=st.integers(0, 2**32 - 1),
        count=st.integers(SNAPSHOT_EVERY + 1, SNAPSHOT_EVERY + 20),
    )
    def long_session(self, seed: int, count: int) -> str:
        session = self.store.get_or_create("main", user_id="u")
        self.model[session.id] = TreeModel()
        self._burst(session.id, seed, count)
        return str(session.id)

    @rule(session_id=sessions, seed=st.integers(0, 2**32 - 1), count=st.integers(1, 30))
    def burst(self, session_id: str, seed: int, count: int) -> None:
        self._burst(session_id, seed, count)

    @rule(
        session_id=sessions,
        delta=deltas,
        messages=st.integers(0, 2),
        way=st.sampled_from(["append", "update_state"]),
    )
    def change(self, session_id: str, delta: dict[str, Any], messages: int, way: str) -> None:
        self._apply(session_id, 0 if way == "update_state" else messages, delta, way)

    @rule(session_id=sessions, data=st.data())
    def rewind(self, session_id: str, data: st.DataObject) -> None:
        model = self.model[session_id]
        to = data.draw(st.integers(0, len(model.parents)), label="to_seq")
        assert self.store.rewind(session_id, to).leaf_seq == to
        model.leaf = to

    @rule(target=sessions, session_id=sessions, data=st.data())
    def fork(self, session_id: str, data: st.DataObject) -> Any:
        if len(self.model) >= 4:
            return multiple()
        model = self.model[session_id]
        on_path = model.path(model.leaf)
        at = data.draw(st.sampled_from(on_path), label="at_seq") if on_path else None
        fork = self.store.fork(session_id, at)
        self.model[fork.id] = model.forked(at or 0)
        return str(fork.id)

    @rule(session_id=sessions, data=st.data())
    def past_states(self, session_id: str, data: st.DataObject) -> None:
        model = self.model[session_id]
        entries = _by_seq(self.store, session_id)
        assert len(entries) == len(model.parents)
        seqs = data.draw(
            st.lists(st.integers(0, len(entries)), min_size=1, max_size=8), label="seqs"
        )
        for seq in seqs:
            got = self.store.state(session_id, at_seq=seq)
            assert _own(got) == _fold(entries, seq) == model.state_at(seq)
            assert _shared(got) == self.shared

    @invariant()
    def states_at_the_leaves_match(self) -> None:
        for session_id, model in self.model.items():
            got = self.store.state(session_id)
            assert dict(got) == {**model.state_at(model.leaf), **self.shared}


def test_state_follows_the_tree_like_its_model(open_test_store: Any) -> None:
    machine = type("Machine", (StateMachine,), {"open_store": staticmethod(open_test_store)})
    in_memory = open_test_store.url == "sqlite:///:memory:"
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=10 if in_memory else 3,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# --- user_id -------------------------------------------------------------------------


def test_get_or_create_stores_the_user_only_when_it_creates_the_session(store: Any) -> None:
    first = store.get_or_create("agent:main:main", user_id="alice")
    assert first.user_id == "alice"
    assert store.get(first.id).user_id == "alice"
    again = store.get_or_create("agent:main:main", user_id="bob")
    assert (again.id, again.user_id) == (first.id, "alice")
    assert store.get_or_create("agent:main:main").user_id == "alice"
    assert store.get_or_create("agent:main:other").user_id is None
    for bad in ("", 42, "x" * 300):
        with pytest.raises(InvalidInput):
            store.get_or_create("agent:main:third", user_id=bad)
    assert store.current("agent:main:third") is None


def test_reset_keeps_the_user_and_fork_copies_it(store: Any) -> None:
    session = store.get_or_create("agent:main:main", user_id="alice")
    store.append(session.id, Message.user("hi"), state={"own": 1, "user:lang": ["fr"]})
    new = store.reset("agent:main:main")
    assert new.id != session.id
    assert new.user_id == "alice"
    assert dict(store.state(new.id)) == {"user:lang": ["fr"]}  # own state starts afresh
    fork = store.fork(session.id)
    assert fork.user_id == "alice"
    assert dict(store.state(fork.id)) == {"own": 1, "user:lang": ["fr"]}


def test_patch_sets_and_clears_the_user(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    bob = store.get_or_create("agent:main:bob", user_id="bob")
    store.update_state(bob.id, {"user:lang": ["de"]})
    patched = store.patch(session.id, user_id="bob")
    assert patched.user_id == "bob"
    assert dict(store.state(session.id)) == {"user:lang": ["de"]}
    assert store.patch(session.id, title="kept").user_id == "bob"
    store.update_state(session.id, {"user:lang": ["en"]})
    assert dict(store.state(bob.id)) == {"user:lang": ["en"]}
    cleared = store.patch(session.id, user_id=None)
    assert cleared.user_id is None
    assert dict(store.state(session.id)) == {}
    with pytest.raises(InvalidInput):
        store.update_state(session.id, {"user:lang": ["fr"]})
    with pytest.raises(ConflictError):
        store.patch(session.id, user_id="bob", expected_version=cleared.version - 1)
    assert store.get(session.id).user_id is None


def test_list_filters_by_user(store: Any) -> None:
    a1 = store.get_or_create("agent:main:a1", user_id="alice")
    a2 = store.get_or_create("agent:main:a2", user_id="alice")
    a3 = store.get_or_create("agent:ops:a3", user_id="alice")
    b = store.get_or_create("agent:main:b", user_id="bob")
    store.get_or_create("agent:main:none")
    archived = a1
    a1 = store.reset("agent:main:a1")

    def ids(**filters: Any) -> set[str]:
        return {s.id for s in store.list(limit=100, **filters).sessions}

    assert ids(user_id="alice") == {archived.id, a1.id, a2.id, a3.id}
    assert ids(user_id="alice", agent_id="main") == {archived.id, a1.id, a2.id}
    assert ids(user_id="alice", status="archived") == {archived.id}
    assert ids(user_id="bob") == {b.id}
    assert ids(user_id="nobody") == set()
    assert {s.id for s in store.for_agent("ops").list(user_id="alice").sessions} == {a3.id}
    first = store.list(user_id="alice", limit=2)
    rest = store.list(user_id="alice", limit=2, cursor=first.cursor)
    assert {s.id for s in (*first.sessions, *rest.sessions)} == ids(user_id="alice")


LINKS = SessionConfig.from_dict(
    {"dmScope": "per-channel-peer", "identityLinks": {"alice": ["telegram:123", "discord:999"]}}
)


def test_resolve_gives_a_direct_chat_its_canonical_peer_as_user(store: Any) -> None:
    telegram = store.resolve(Inbound(channel="telegram", peer_id="123", text="hi"), LINKS)
    discord = store.resolve(Inbound(channel="discord", peer_id="999", text="hi"), LINKS)
    other = store.resolve(Inbound(channel="discord", peer_id="555", text="hi"), LINKS)
    assert telegram.key != discord.key
    assert (telegram.session.user_id, discord.session.user_id) == ("alice", "alice")
    assert other.session.user_id == "555"
    store.update_state(telegram.session.id, {"user:lang": ["fr"], "own": 1})
    assert dict(store.state(discord.session.id)) == {"user:lang": ["fr"]}
    assert dict(store.state(other.session.id)) == {}
    # a reset through resolve keeps the user
    again = store.resolve(Inbound(channel="telegram", peer_id="123", text="/new"), LINKS)
    assert again.is_new
    assert again.session.user_id == "alice"
    assert dict(store.state(again.session.id)) == {"user:lang": ["fr"]}


def test_group_chats_and_key_only_messages_get_no_user(store: Any) -> None:
    group = store.resolve(
        Inbound(channel="telegram", chat_type="group", peer_id="123", text="hi"), LINKS
    )
    keyed = store.resolve(Inbound(key="agent:main:cron:nightly", peer_id="123"), LINKS)
    assert group.session.user_id is None
    assert keyed.session.user_id is None
    with pytest.raises(InvalidInput):
        store.update_state(group.session.id, {"user:lang": ["fr"]})


def test_the_user_of_a_direct_chat_is_its_peer_as_its_key_names_it(store: Any) -> None:
    plain = SessionConfig.from_dict({"dmScope": "per-channel-peer"})
    first = store.resolve(Inbound(channel="discord", peer_id="Carol"), plain)
    assert first.key == "agent:main:discord:direct:carol"
    linked = store.resolve(Inbound(channel="telegram", peer_id="Carol"), LINKS)
    assert linked.session.user_id == "carol"
    assert first.session.user_id == linked.session.user_id


def test_user_state_is_shared_by_the_sessions_of_one_user_only(store: Any) -> None:
    one = store.get_or_create("agent:main:telegram:direct:alice", user_id="alice")
    two = store.get_or_create("agent:main:discord:direct:alice", user_id="alice")
    bob = store.get_or_create("agent:main:discord:direct:bob", user_id="bob")
    elsewhere = store.get_or_create("agent:ops:main", user_id="alice")
    store.update_state(one.id, {"user:lang": ["fr"], "agent:g": 1})
    store.update_state(two.id, {"user:tz": ["UTC"]})
    assert dict(store.state(one.id)) == {"user:lang": ["fr"], "user:tz": ["UTC"], "agent:g": 1}
    assert dict(store.state(two.id)) == dict(store.state(one.id))
    assert dict(store.state(bob.id)) == {"agent:g": 1}
    assert dict(store.state(elsewhere.id)) == {}
    store.update_state(bob.id, {"user:lang": ["de"]})
    assert store.state(one.id)["user:lang"] == ["fr"]
    assert dict(store.user_state("alice")) == {"lang": ["fr"], "tz": ["UTC"]}


# --- retention -----------------------------------------------------------------------


def test_retention_removing_sessions_keeps_user_and_agent_state(
    store: Any, clock: ManualClock
) -> None:
    old = store.get_or_create("agent:main:old", user_id="u")
    store.append(old.id, Message.user("hi"), state={"own": 1, "user:lang": ["fr"], "agent:g": 1})
    clock.advance(days=40)
    report = store.maintain(RetentionPolicy(mode="enforce", prune_after=timedelta(days=30)))
    assert report.removed == 1
    assert store.current("agent:main:old") is None
    assert dict(store.user_state("u")) == {"lang": ["fr"]}
    assert dict(store.agent_state()) == {"g": 1}
    new = store.get_or_create("agent:main:new", user_id="u")
    assert dict(store.state(new.id)) == {"user:lang": ["fr"], "agent:g": 1}


# --- transcripts ---------------------------------------------------------------------


def test_a_transcript_carries_state_changes_as_custom_entries_and_imports_back(
    store: Any, tmp_path: Path
) -> None:
    session = store.get_or_create("agent:main:main", user_id="u")
    store.append(
        session.id,
        [Message.user("one")],
        state={"a": 1, "b": {"x": [1, 2]}, "user:z": 1, "agent:y": 2, "temp:t": 0},
    )
    store.append(session.id, [Message.user("two")], state={"a": REMOVE, "c": None})
    store.rewind(session.id, 2)
    store.append(session.id, [], state={"d": 4})
    for n in range(SNAPSHOT_EVERY + 5):  # past a snapshot
        store.update_state(session.id, {"n": n})
    count = store.get(session.id).entry_count
    before = [_own(store.state(session.id, at_seq=seq)) for seq in range(count + 1)]
    path = tmp_path / "session.jsonl"
    assert export_transcript(store, session.id, path) == count
    lines = [orjson.loads(line) for line in path.read_text().splitlines()]
    assert "state" not in {line["type"] for line in lines}
    customs = [line for line in lines if line["type"] == "custom"]
    assert len(customs) == count - 2
    assert {line["customType"] for line in customs} == {"aisopod.state"}
    assert customs[0]["data"] == {"set": {"a": 1, "b": {"x": [1, 2]}}, "remove": []}
    assert customs[1]["data"] == {"set": {"c": None}, "remove": ["a"]}
    assert customs[2]["parentId"] == lines[2]["id"]  # the branch after the rewind

    store.update_state(session.id, {"n": "changed since the export"})
    result = import_transcript(store, path, key="agent:main:main", existing="replace")
    assert result.session.id == session.id
    assert [e.type for e in all_entries(store, session.id)].count("state") == count - 2
    assert [_own(store.state(session.id, at_seq=seq)) for seq in range(count + 1)] == before
    assert _own(store.state(session.id)) == before[-1]
    store.update_state(session.id, {"after": True})
    assert _own(store.state(session.id)) == {**before[-1], "after": True}
    assert dict(store.user_state("u")) == {"z": 1}  # shared scopes are not the file's


# --- concurrency ---------------------------------------------------------------------

LANES = 3
WRITES = 20
APIS_OF_PROCESSES = ("sync", "async")


class Write(NamedTuple):
    session_id: str
    message: bool
    delta: dict[str, Any]


def lane_writes(process: int, lane: int, targets: list[str]) -> list[Write]:
    """What one thread or coroutine writes, in order: keys every writer shares (the
    same value under three keys, written together), and keys of the lane's own; to
    each of `targets` in turn, half of the time with a message."""
    name = f"{process}.{lane}"
    writes = []
    for n in range(WRITES):
        tag = [process, lane, n]
        delta = {
            "user:last": tag,
            "user:mirror": tag,
            "agent:last": tag,
            f"user:{name}": n,
            f"agent:{name}": n,
            name: n,
        }
        writes.append(Write(targets[n % len(targets)], n % 4 >= 2, delta))
    return writes


def targets_of(process: int, session_ids: list[str]) -> list[str]:
    # The async process writes one session: a group commit over two sessions can
    # deadlock with a writer of the second (see the test of that below).
    return session_ids if APIS_OF_PROCESSES[process] == "sync" else session_ids[1:]


def write_shared_state(url: str, process: int, session_ids: list[str]) -> None:
    """Run process `process`'s lanes: threads over a sync store, or coroutines over
    an async one."""
    plans = [lane_writes(process, lane, targets_of(process, session_ids)) for lane in range(LANES)]
    if APIS_OF_PROCESSES[process] == "sync":
        store = open_store(url)
        errors: list[BaseException] = []

        def run(plan: list[Write]) -> None:
            try:
                for write in plan:
                    if write.message:
                        store.append(write.session_id, Message.user("m"), state=write.delta)
                    else:
                        store.update_state(write.session_id, write.delta)
            except BaseException as err:  # reported to the parent
                errors.append(err)

        threads = [threading.Thread(target=run, args=(plan,)) for plan in plans]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        store.close()
        if errors:
            raise errors[0]
        return

    async def main() -> None:
        async with open_async_store(url) as store:

            async def run(plan: list[Write]) -> None:
                for write in plan:
                    if write.message:
                        await store.append(write.session_id, Message.user("m"), state=write.delta)
                    else:
                        await store.update_state(write.session_id, write.delta)

            await asyncio.gather(*(run(plan) for plan in plans))

    asyncio.run(main())


def test_processes_writing_shared_state_at_once_lose_nothing_and_half_apply_nothing(
    shared_database_url: str,
) -> None:
    """A process of threads on a sync store and one of coroutines on an async store
    write the same `user:` and `agent:` keys (and keys of their own) through two
    sessions of one user, while this process reads."""
    store = open_store(shared_database_url)
    ids = [store.get_or_create(f"agent:main:s{n}", user_id="u").id for n in range(2)]
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=write_shared_state, args=(shared_database_url, p, ids))
        for p in range(len(APIS_OF_PROCESSES))
    ]
    for worker in workers:
        worker.start()
    torn: list[Any] = []
    reads = 0
    while any(w.is_alive() for w in workers) or reads == 0:
        state = store.state(ids[reads % 2])
        reads += 1
        seen = [state.get("user:last"), state.get("user:mirror"), state.get("agent:last")]
        if seen[0] != seen[1] or seen[1] != seen[2]:
            torn.append(seen)
        time.sleep(0.002)
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    assert torn == []

    plans = {
        (p, lane): lane_writes(p, lane, targets_of(p, ids))
        for p in range(len(APIS_OF_PROCESSES))
        for lane in range(LANES)
    }
    user, agent = store.user_state("u"), store.agent_state()
    assert user["last"] in [plan[-1].delta["user:last"] for plan in plans.values()]
    assert user["mirror"] == user["last"] == agent["last"]
    for p, lane in plans:
        assert user[f"{p}.{lane}"] == agent[f"{p}.{lane}"] == WRITES - 1
    for session_id in ids:
        mine = [
            (name, w) for name, plan in plans.items() for w in plan if w.session_id == session_id
        ]
        entries = _by_seq(store, session_id)
        assert [e.type for e in entries.values()].count("state") == len(mine)
        assert [e.type for e in entries.values()].count("message") == sum(
            w.message for _, w in mine
        )
        own = _own(store.state(session_id))
        assert own == _fold(entries, store.get(session_id).leaf_seq)
        assert own == {f"{p}.{lane}": w.delta[f"{p}.{lane}"] for (p, lane), w in mine}
    store.close()


def test_a_group_commit_over_two_sessions_does_not_deadlock_with_a_writer_of_shared_state(
    postgres_dsn: str,
) -> None:
    """The async store commits appends to A and B together while another transaction
    holds B and then writes the `user:` row the group wrote (what a sync store's
    `update_state(B, {"user:x": ...})` does): both go through."""
    with temporary_schema(postgres_dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
        schema = url.rsplit("schema=", 1)[1]
        with open_store(url) as setup:
            ids = [setup.get_or_create(f"agent:main:{n}", user_id="u").id for n in "abc"]
            setup.update_state(ids[0], {"user:x": 0})
        first, second = sorted(ids[:2])  # a group locks its sessions in id order
        lock = f'SELECT 1 FROM "{schema}".sessions WHERE id = %s FOR UPDATE'
        with (
            psycopg.connect(postgres_dsn) as holder,
            psycopg.connect(postgres_dsn) as writer,
        ):
            holder.execute(lock, (ids[2],))  # keeps the committer busy until the group is queued
            writer.execute(lock, (second,))

            def write_shared_row() -> BaseException | None:
                try:
                    writer.execute(
                        f'UPDATE "{schema}".user_state SET value = %s'
                        " WHERE agent_id = 'main' AND user_id = 'u' AND key = 'x'",
                        ("3",),
                    )
                    writer.commit()
                except psycopg.Error as err:
                    writer.rollback()
                    return err
                return None

            async def main() -> tuple[list[Any], BaseException | None]:
                async with open_async_store(url) as store:
                    waiting = asyncio.ensure_future(store.append(ids[2], Message.user("c")))
                    await asyncio.sleep(0.2)
                    group = asyncio.gather(
                        store.append(first, Message.user("a"), state={"user:x": 1}),
                        store.append(second, Message.user("b"), state={"user:x": 2}),
                        return_exceptions=True,
                    )
                    await asyncio.sleep(0.2)
                    holder.commit()  # the committer takes the two appends as one group
                    await asyncio.sleep(0.3)  # the group holds the user: row, waits for B
                    error = await asyncio.to_thread(write_shared_row)
                    await waiting
                    return list(await group), error

            results, error = asyncio.run(main())
        assert error is None
        assert [type(r) for r in results] == [tuple, tuple]


def test_coroutines_appending_state_at_once_lose_no_change_and_fail_alone(
    database_url: str,
) -> None:
    """Appends with state sent together share group commits: each change lands, and
    the one refused fails alone."""

    async def main() -> tuple[list[Any], Any, Any, Any]:
        async with open_async_store(database_url) as store:
            session = await store.get_or_create("agent:main:main", user_id="u")
            bare = await store.get_or_create("agent:main:bare")
            calls = [
                store.append(session.id, Message.user(str(n)), state={f"k{n}": n, "user:n": n})
                for n in range(40)
            ]
            calls.insert(20, store.append(bare.id, Message.user("x"), state={"user:n": -1}))
            results = await asyncio.gather(*calls, return_exceptions=True)
            entries = await store.history(session.id, after=0, limit=1000)
            return (
                results,
                await store.state(session.id),
                entries.entries,
                await store.get(bare.id),
            )

    results, state, entries, bare = asyncio.run(main())
    assert isinstance(results.pop(20), InvalidInput)
    assert [[e.type for e in r] for r in results] == [["message", "state"]] * 40
    assert bare.entry_count == 0
    assert _own(state) == {f"k{n}": n for n in range(40)}
    assert state["user:n"] in range(40)
    by_seq = {e.seq: e for e in entries}
    assert _own(state) == _fold(by_seq, max(by_seq))
