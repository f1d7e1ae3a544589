"""Appending entries and reading them back: counters, usage, idempotency, paging."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aisopod_session import ConflictError, DuplicateEntryId, NewEntry, SessionNotFound
from aisopod_session.backends.postgres import _COPY_FROM as COPY_FROM
from aisopod_shared import Message, TokenUsage, ToolCallPart
from tests.session.invariants import check_invariants
from tests.session.snapshot import all_entries


def _session(store: Any, key: str = "agent:main:main") -> Any:
    return store.get_or_create(key)


def test_append_assigns_gapless_seqs_and_chains_parents(store: Any) -> None:
    session = _session(store)
    first = store.append(session.id, [Message.user("a"), Message.assistant("b")])
    second = store.append(session.id, Message.user("c"))
    entries = [*first, *second]
    assert [e.seq for e in entries] == [1, 2, 3]
    assert [e.parent_seq for e in entries] == [None, 1, 2]
    assert len({e.id for e in entries}) == 3
    assert [e.role for e in entries] == ["user", "assistant", "user"]
    stored = store.history(session.id).entries
    assert [(e.seq, e.id, e.parent_seq) for e in stored] == [
        (e.seq, e.id, e.parent_seq) for e in entries
    ]


def test_append_moves_counters_usage_and_version_together(store: Any) -> None:
    session = _session(store)
    store.append(
        session.id,
        [
            Message.user("question"),
            Message.assistant(
                "answer",
                tool_calls=[ToolCallPart("call-1", "search", {"q": "x"})],
                usage=TokenUsage(input=100, output=20, cache_read=5, cost=0.25),
            ),
            Message.tool_result("call-1", "result", tool_name="search"),
            NewEntry.model_change("anthropic", "claude"),
        ],
    )
    store.append(session.id, Message.assistant("more", usage=TokenUsage(input=10, output=2)))
    after = store.get(session.id)
    assert after.entry_count == 5
    assert after.message_count == 4
    assert after.usage.input == 110
    assert after.usage.output == 22
    assert after.usage.cache_read == 5
    assert after.usage.total == 137
    assert math.isclose(after.usage.cost, 0.25)
    assert after.version == session.version + 2
    assert after.leaf_seq == 5
    assert after.size_bytes > 0
    assert after.updated_at >= session.updated_at


def test_messages_come_back_as_they_went_in(store: Any) -> None:
    session = _session(store)
    sent = Message.assistant(
        "héllo 👋",
        tool_calls=[ToolCallPart("c", "f", {"n": 1, "nested": {"list": [1, 2.5, None, True]}})],
        usage=TokenUsage(input=1, output=2, cost=0.000123),
        model="m-1",
    )
    store.append(session.id, sent)
    entry = store.history(session.id).entries[0]
    got = entry.message
    assert got is not None
    assert got.content == sent.content
    assert got.usage == sent.usage
    assert got.model == "m-1"
    assert isinstance(got.timestamp, int)
    assert entry.payload["message"]["content"][1]["arguments"]["nested"] == {
        "list": [1, 2.5, None, True]
    }
    assert "timestamp" not in entry.payload  # it is the entry's created_at
    assert entry.created_at == store.get(session.id).updated_at


def test_a_read_gives_back_the_entries_an_append_returned(store: Any) -> None:
    """Including a reported usage of zero, which is not the same as none reported."""
    session = _session(store)
    appended = store.append(
        session.id,
        [
            Message.user("no usage"),
            Message.assistant("cached, free", usage=TokenUsage()),
            Message.assistant("paid", usage=TokenUsage(input=3, output=4, cost=0.5)),
        ],
    )
    assert store.history(session.id).entries == appended
    assert [e.usage for e in appended] == [
        None,
        TokenUsage(),
        TokenUsage(input=3, output=4, cost=0.5),
    ]


def test_unknown_entry_types_and_fields_are_kept_verbatim(store: Any) -> None:
    session = _session(store)
    payload = {"weird": {"deep": [1, "two", 3.0]}, "n": 12345678901234}
    store.append(session.id, NewEntry("future_type", payload, id="abcd1234"))
    entry = store.history(session.id).entries[0]
    assert entry.type == "future_type"
    assert entry.id == "abcd1234"
    assert entry.payload["weird"] == payload["weird"]
    assert entry.payload["n"] == 12345678901234
    assert entry.message is None


def test_a_generated_id_that_clashes_with_a_given_one_is_made_again(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A given id can look like a generated one; the append then retries with fresh
    digits, and the failed try wrote nothing (on PostgreSQL, one statement)."""
    from aisopod_session import _engine
    from aisopod_session._ids import entry_id, new_entry_suffixes

    session = _session(store)
    store.append(session.id, NewEntry("custom", {"customType": "note"}, id=entry_id(2, "0000")))
    draws = iter([["0000"]])
    monkeypatch.setattr(
        _engine, "new_entry_suffixes", lambda count: next(draws, None) or new_entry_suffixes(count)
    )
    (entry,) = store.append(session.id, Message.user("second"))
    assert entry.seq == 2
    assert entry.id.startswith("00000002")
    assert entry.id != entry_id(2, "0000")
    assert [e.seq for e in store.history(session.id).entries] == [1, 2]
    assert store.get(session.id).entry_count == 2


def _batch(count: int) -> list[Message]:
    return [
        Message.user(f"question {n}")
        if n % 2 == 0
        else Message.assistant(f"answer {n}", usage=TokenUsage(input=n, output=1, cost=0.5))
        for n in range(count)
    ]


@pytest.mark.parametrize("count", [COPY_FROM - 1, COPY_FROM, 1000])
def test_a_batch_chains_counts_and_is_found_like_single_appends(store: Any, count: int) -> None:
    """Either side of the size where PostgreSQL sends a batch by COPY, and far past it:
    the same seqs, parents, counters and search index as appends of one entry."""
    session = _session(store)
    before = store.append(session.id, Message.user("before"))
    batch = store.append(session.id, _batch(count), idempotency_key="batch")
    after = store.append(session.id, Message.user("after"))
    entries = [*before, *batch, *after]
    assert [e.seq for e in entries] == list(range(1, count + 3))
    assert [e.parent_seq for e in entries] == [None, *range(1, count + 2)]
    assert all_entries(store, session.id) == entries
    found = store.get(session.id)
    assert found.entry_count == found.message_count == count + 2
    assert found.usage.input == sum(range(1, count, 2))
    assert found.usage.output == count // 2
    assert math.isclose(found.usage.cost, 0.5 * (count // 2))
    assert found.leaf_seq == count + 2
    assert found.version == session.version + 3
    (hit,) = store.search(f'"{batch[-1].text}"').hits
    assert hit.seq == count + 1
    again = store.append(session.id, _batch(count), idempotency_key="batch")
    assert again == batch
    check_invariants(store)


def test_a_batch_with_an_entry_that_cannot_go_in_writes_nothing(store: Any) -> None:
    """An id already in the session, at the end of a batch PostgreSQL sends by COPY."""
    session = _session(store)
    (first,) = store.append(session.id, NewEntry("custom", {"customType": "note"}, id="taken"))
    version = store.get(session.id).version
    clash = NewEntry("custom", {"customType": "note"}, id=first.id)
    with pytest.raises(DuplicateEntryId):
        store.append(session.id, [*_batch(500), clash])
    assert all_entries(store, session.id) == [first]
    after = store.get(session.id)
    assert (after.entry_count, after.version, after.usage.input) == (1, version, 0)
    assert not store.search("question").hits
    (next_entry,) = store.append(session.id, Message.user("next"))
    assert next_entry.seq == 2


def test_retry_with_the_same_idempotency_key_adds_nothing(store: Any) -> None:
    session = _session(store)
    first = store.append(
        session.id, [Message.user("a"), Message.assistant("b")], idempotency_key="turn-1"
    )
    version = store.get(session.id).version
    again = store.append(
        session.id, [Message.user("a"), Message.assistant("b")], idempotency_key="turn-1"
    )
    assert [e.id for e in again] == [e.id for e in first]
    assert [e.seq for e in again] == [1, 2]
    after = store.get(session.id)
    assert after.entry_count == 2
    assert after.version == version
    store.append(session.id, Message.user("c"), idempotency_key="turn-2")
    assert store.get(session.id).entry_count == 3


def test_idempotency_keys_are_per_session(store: Any) -> None:
    a = _session(store, "agent:main:a")
    b = _session(store, "agent:main:b")
    store.append(a.id, Message.user("x"), idempotency_key="k")
    store.append(b.id, Message.user("x"), idempotency_key="k")
    assert store.get(b.id).entry_count == 1


def test_expected_version_mismatch_raises_and_writes_nothing(store: Any) -> None:
    session = _session(store)
    store.append(session.id, Message.user("a"), expected_version=session.version)
    with pytest.raises(ConflictError) as caught:
        store.append(session.id, Message.user("b"), expected_version=session.version)
    assert caught.value.session_id == session.id
    assert caught.value.expected == session.version
    assert caught.value.actual == session.version + 1
    assert store.get(session.id).entry_count == 1


def test_append_to_an_unknown_session_raises(store: Any) -> None:
    with pytest.raises(SessionNotFound):
        store.append("nope", Message.user("x"))


def test_empty_append_writes_nothing(store: Any) -> None:
    session = _session(store)
    assert store.append(session.id, []) == ()
    assert store.get(session.id).version == session.version


def test_history_pages_backwards_with_the_cursor(store: Any) -> None:
    session = _session(store)
    store.append(session.id, [Message.user(str(n)) for n in range(1, 26)])
    page = store.history(session.id, last=10)
    assert [e.seq for e in page.entries] == list(range(16, 26))
    seen = [e.seq for e in page.entries]
    while page.cursor is not None:
        page = store.history(session.id, before=page.cursor, limit=10)
        seen = [e.seq for e in page.entries] + seen
    assert seen == list(range(1, 26))


def test_history_reads_forward_from_a_seq(store: Any) -> None:
    session = _session(store)
    store.append(session.id, [Message.user(str(n)) for n in range(1, 12)])
    page = store.history(session.id, after=0, limit=5)
    assert [e.seq for e in page.entries] == [1, 2, 3, 4, 5]
    seen: list[int] = []
    after = 0
    while True:
        page = store.history(session.id, after=after, limit=5)
        seen.extend(e.seq for e in page.entries)
        if page.cursor is None:
            break
        after = page.cursor
    assert seen == list(range(1, 12))


def test_history_of_an_empty_session_is_empty(store: Any) -> None:
    session = _session(store)
    page = store.history(session.id, last=5)
    assert page.entries == ()
    assert page.cursor is None
    assert store.history(session.id, after=0).entries == ()


def test_sessions_do_not_share_entries(store: Any) -> None:
    a = _session(store, "agent:main:a")
    b = _session(store, "agent:main:b")
    store.append(a.id, [Message.user("a1"), Message.user("a2")])
    store.append(b.id, Message.user("b1"))
    assert [e.text for e in store.history(a.id).entries] == ["a1", "a2"]
    assert [e.seq for e in store.history(b.id).entries] == [1]


def test_data_survives_reopening(open_persistent_store: Any) -> None:
    store = open_persistent_store()
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user("kept"), Message.assistant("too")])
    store.close()
    reopened = open_persistent_store()
    assert [e.text for e in reopened.history(session.id).entries] == ["kept", "too"]
    assert reopened.current("agent:main:main").id == session.id
