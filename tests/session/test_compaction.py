"""Compaction: shorter context, history intact, tool pairs whole, undoable."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisopod_session import (
    ConflictError,
    Entry,
    InvalidInput,
    KeepLastTurns,
    NewEntry,
    TokenBudget,
    headings_summarizer,
)
from aisopod_session._toolpairs import call_ids, result_ids
from aisopod_shared import Message, ToolCallPart
from tests.session.conversation import conversation, turn
from tests.session.snapshot import snapshot


def _all_history(store: Any, session_id: str) -> list[Entry]:
    return list(store.history(session_id, after=0, limit=10_000).entries)


def _orphans(entries: Sequence[Entry]) -> list[str]:
    """Tool results in `entries` whose call is not before them."""
    seen: set[str] = set()
    orphans: list[str] = []
    for entry in entries:
        orphans.extend(i for i in result_ids(entry) if i not in seen)
        seen.update(call_ids(entry))
    return orphans


def test_keep_last_turns_summarises_the_rest_and_keeps_history(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 6)
    before = _all_history(store, session.id)
    result = store.compact(session.id, KeepLastTurns(2))
    assert result.compacted
    entry = result.entry
    assert entry is not None
    assert entry.type == "compaction"
    assert entry.payload["summary"] == "- question 0\n- question 1\n- question 2\n- question 3"
    kept = next(e for e in before if e.seq == result.first_kept_seq)
    assert kept.text == "question 4"
    assert entry.payload["firstKeptEntryId"] == kept.id
    assert _all_history(store, session.id)[: len(before)] == before  # nothing destroyed
    context = store.context(session.id)
    roles = [m.role for m in context.messages]
    assert roles[:3] == ["system", "compactionSummary", "user"]
    assert context.messages[2].text == "question 4"
    assert context.compaction is not None
    assert context.compaction.seq == entry.seq
    assert not _orphans(context.entries)
    session_after = store.get(session.id)
    assert session_after.compaction_count == 1
    assert session_after.compacted_at is not None
    assert session_after.entry_count == len(before) + 1


def test_a_second_compaction_summarises_the_first(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 6)
    store.compact(session.id, KeepLastTurns(3))
    for n in range(6, 9):
        store.append(session.id, turn(n))
    second = store.compact(session.id, KeepLastTurns(2))
    assert second.entry is not None
    summary = second.entry.payload["summary"]
    assert summary.startswith("- question 0\n- question 1\n- question 2")
    assert "- question 6" in summary
    context = store.context(session.id)
    assert [m.role for m in context.messages][:3] == ["system", "compactionSummary", "user"]
    assert context.messages[2].text == "question 7"


def test_compacting_twice_in_a_row_leaves_one_summary_in_the_context(store: Any) -> None:
    """The latest compaction alone decides what comes before the kept entries: an
    earlier compaction among them is not in the context, and its summary is in the
    next one once."""
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 10)
    first = store.compact(session.id, KeepLastTurns(2))
    second = store.compact(session.id, KeepLastTurns(1))
    assert first.entry is not None
    assert second.entry is not None
    context = store.context(session.id)
    assert [e.type for e in context.entries].count("compaction") == 1
    assert context.compaction is not None
    assert context.compaction.seq == second.entry.seq
    assert [m.role for m in context.messages][:3] == ["system", "compactionSummary", "user"]
    assert context.messages[2].text == "question 9"
    summary = second.entry.payload["summary"]
    assert summary.count("- question 0") == 1
    assert summary.count("- question 8") == 1
    assert "question 9" not in summary
    third = store.compact(session.id, KeepLastTurns(1))
    assert not third.compacted  # nothing new to drop
    store.append(session.id, turn(10))
    fourth = store.compact(session.id, KeepLastTurns(1))
    assert fourth.entry is not None
    assert fourth.entry.payload["summary"].count("- question 0") == 1
    assert [e.type for e in store.context(session.id).entries].count("compaction") == 1


def test_nothing_to_drop_is_a_no_op(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 2)
    before = snapshot(store)
    result = store.compact(session.id, KeepLastTurns(5))
    assert not result.compacted
    assert result.entry is None
    assert snapshot(store) == before
    empty = store.get_or_create("agent:main:empty")
    assert not store.compact(empty.id, TokenBudget(10)).compacted


def test_token_budget_keeps_what_fits(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 10)
    result = store.compact(session.id, TokenBudget(120))
    assert result.compacted
    context = store.context(session.id)
    kept = [e for e in context.entries if e.type == "message" and e.role != "system"]
    assert sum(e.tokens for e in kept) <= 120
    assert not _orphans(context.entries)
    assert context.messages[0].role == "system"


def test_a_cut_never_separates_a_tool_call_from_its_result(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("start"))
    # One long tool exchange: call, then results far later.
    store.append(
        session.id,
        Message.assistant(tool_calls=[ToolCallPart("long", "run", {}), ToolCallPart("b", "x", {})]),
    )
    store.append(session.id, Message.tool_result("b", "quick"))
    store.append(session.id, [Message.user("meanwhile"), Message.assistant("ok")])
    store.append(session.id, Message.tool_result("long", "slow result"))
    store.append(session.id, [Message.user("last"), Message.assistant("done")])
    store.compact(session.id, KeepLastTurns(2))
    context = store.context(session.id)
    assert not _orphans(context.entries)
    assert "slow result" in [m.text for m in context.messages]


def test_undo_moves_the_leaf_back_before_the_compaction(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 5)
    full = store.context(session.id)
    result = store.compact(session.id, KeepLastTurns(1))
    assert result.entry is not None
    undone = store.undo_compaction(session.id)
    assert undone.leaf_seq == result.entry.seq - 1
    assert store.context(session.id).messages == full.messages
    with pytest.raises(InvalidInput):
        store.undo_compaction(session.id)


def test_an_async_summariser_runs_outside_any_transaction(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 4)
    seen: list[int] = []

    async def summarise(entries: Sequence[Entry]) -> str:
        await asyncio.sleep(0)
        seen.append(len(entries))
        return f"{len(entries)} entries about questions"

    result = store.compact(session.id, KeepLastTurns(1), summarise)
    assert result.entry is not None
    assert result.entry.payload["summary"] == f"{seen[0]} entries about questions"


def test_a_rewind_during_summarising_is_a_conflict_and_writes_nothing(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 4, system=False)

    def summarise(entries: Sequence[Entry]) -> str:
        store.rewind(session.id, 2)
        return "too late"

    with pytest.raises(ConflictError):
        store.compact(session.id, KeepLastTurns(1), summarise)
    assert store.get(session.id).compaction_count == 0


def test_a_summariser_must_return_text(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 3)
    with pytest.raises(InvalidInput):
        store.compact(session.id, KeepLastTurns(1), lambda entries: 42)
    with pytest.raises(InvalidInput):
        KeepLastTurns(0)
    with pytest.raises(InvalidInput):
        store.compact(session.id, "keep a few")


def test_the_builtin_summariser_lists_the_dropped_turns() -> None:
    assert headings_summarizer([]) == "(nothing to summarise)"


# --- properties -----------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), st.integers(0, 3)),
        st.tuples(st.just("compact_turns"), st.integers(1, 4)),
        st.tuples(st.just("compact_tokens"), st.integers(20, 400)),
        st.tuples(st.just("rewind"), st.integers(0, 30)),
        st.tuples(st.just("custom"), st.just(0)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=steps)
def test_after_any_compaction_history_is_whole_and_no_result_is_orphaned(
    open_test_store: Any, plan: list[tuple[str, int]]
) -> None:
    store = open_test_store().for_agent("prop")
    session = store.reset("agent:prop:main")
    appended = 0
    store.append(session.id, Message.system("system prompt"))
    appended += 1
    for n, (action, arg) in enumerate(plan):
        if action == "turn":
            appended += len(store.append(session.id, turn(n, tools=arg)))
        elif action == "custom":
            appended += len(store.append(session.id, NewEntry.custom_message("note", f"note {n}")))
        elif action == "rewind":
            leaf = store.get(session.id).leaf_seq
            store.rewind(session.id, min(arg, leaf))
        else:
            strategy = KeepLastTurns(arg) if action == "compact_turns" else TokenBudget(arg)
            result = store.compact(session.id, strategy)
            appended += 1 if result.compacted else 0
        history = _all_history(store, session.id)
        assert [e.seq for e in history] == list(range(1, appended + 1))
        context = store.context(session.id)
        assert not _orphans(context.entries)
        path = store.path(session.id, last=10_000).entries
        if path and path[0].role == "system":
            assert context.messages[0].role == "system"


def test_the_builtin_summary_stays_bounded(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(f"turn {n}") for n in range(100)])
    entries = store.history(session.id, after=0, limit=1000).entries
    summary = headings_summarizer(entries)
    lines = summary.splitlines()
    assert lines[0] == "- (60 earlier turns)"
    assert lines[1:] == [f"- turn {n}" for n in range(60, 100)]
