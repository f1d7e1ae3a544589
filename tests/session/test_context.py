"""Context building: the active branch, compaction applied, settings reported."""

from __future__ import annotations

from typing import Any

import pytest

from aisopod_session import ContextBudgetTooSmall, KeepLastTurns, ModelRef, NewEntry
from aisopod_session._toolpairs import call_ids, result_ids
from aisopod_shared import Message
from tests.session.conversation import conversation, turn


def test_context_of_a_plain_session_is_its_messages(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 3)
    context = store.context(session.id)
    history = store.history(session.id).entries
    assert [m.text for m in context.messages] == [e.text for e in history]
    assert context.compaction is None
    assert not context.truncated
    assert context.tokens == sum(e.tokens for e in history)


def test_only_message_like_entries_become_messages(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    first = store.append(session.id, Message.user("hello"))[0]
    store.append(
        session.id,
        [
            NewEntry.custom("ui-state", {"collapsed": True}),
            NewEntry.label(first.id, "start"),
            NewEntry.session_info("Trip planning"),
            NewEntry.custom_message("reminder", "remember the budget", display=False),
            NewEntry(
                "message",
                {
                    "message": {
                        "role": "bashExecution",
                        "command": "ls",
                        "output": "a.txt",
                        "exitCode": 0,
                    }
                },
            ),
            NewEntry("shiny_new_type", {"anything": 1}),
        ],
    )
    context = store.context(session.id)
    assert [m.role for m in context.messages] == ["user", "custom", "bashExecution"]
    assert context.messages[1].text == "remember the budget"
    assert context.messages[1].extra == {"customType": "reminder", "display": False}
    plain = context.for_model()
    assert [m.role for m in plain] == ["user", "user"]
    assert [m.text for m in plain] == ["hello", "remember the budget"]


def test_model_and_thinking_level_come_from_the_active_path(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, NewEntry.thinking_level_change("high"))
    store.append(session.id, NewEntry.model_change("anthropic", "claude-x"))
    conversation(store, session.id, 4, system=False)  # assistant replies name model m-1
    assert store.context(session.id).model == ModelRef("p", "m-1")
    assert store.context(session.id).thinking_level == "high"
    store.append(session.id, NewEntry.model_change("openai", "gpt-y"))
    assert store.context(session.id).model == ModelRef("openai", "gpt-y")
    leaf = store.get(session.id).leaf_seq
    store.append(session.id, NewEntry.thinking_level_change("off"))
    assert store.context(session.id).thinking_level == "off"
    store.rewind(session.id, leaf)  # back before the change: the branch decides
    assert store.context(session.id).thinking_level == "high"


def test_settings_before_a_compaction_still_count(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, NewEntry.thinking_level_change("medium"))
    store.append(session.id, NewEntry.model_change("anthropic", "claude-x"))
    for n in range(6):
        store.append(session.id, [Message.user(f"q{n}"), Message.assistant(f"a{n}")])
    store.compact(session.id, KeepLastTurns(1))
    context = store.context(session.id)
    assert [m.text for m in context.messages][1:] == ["q5", "a5"]
    assert context.model == ModelRef("anthropic", "claude-x")
    assert context.thinking_level == "medium"


def test_max_tokens_keeps_the_newest_whole_turns_and_the_system_prompt(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 30)
    full = store.context(session.id)
    budget = full.tokens // 4
    context = store.context(session.id, max_tokens=budget)
    assert context.truncated
    assert context.messages[0].role == "system"
    assert context.tokens <= budget
    assert context.entries[-1] == full.entries[-1]
    seen: set[str] = set()
    for entry in context.entries:
        assert all(i in seen for i in result_ids(entry)), "a tool result lost its call"
        seen.update(call_ids(entry))
    roomy = store.context(session.id, max_tokens=full.tokens * 2)
    assert roomy.messages == full.messages
    assert not roomy.truncated


def test_max_tokens_after_a_compaction_keeps_the_summary(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 12)
    store.compact(session.id, KeepLastTurns(8))
    with pytest.raises(ContextBudgetTooSmall) as caught:
        store.context(session.id, max_tokens=200)
    context = store.context(session.id, max_tokens=caught.value.needed)
    assert [m.role for m in context.messages][:3] == ["system", "compactionSummary", "user"]
    assert context.messages[2].text == "question 11"
    assert context.tokens == caught.value.needed
    assert context.truncated


def test_every_budget_starts_with_a_turn_and_says_exactly_what_it_left_out(store: Any) -> None:
    """From too small for the last turn to roomy: a typed error, or a context that
    starts (after the system prompt) where a model can start reading, within the
    budget, `truncated` exactly when a message is missing."""
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 6)
    full = store.context(session.id)
    with pytest.raises(ContextBudgetTooSmall) as caught:
        store.context(session.id, max_tokens=1)
    needed = caught.value.needed
    assert 0 < needed < full.tokens
    for budget in range(1, full.tokens + 60, 7):
        if budget < needed:
            with pytest.raises(ContextBudgetTooSmall, match=f"{budget} tokens cannot hold"):
                store.context(session.id, max_tokens=budget)
            continue
        context = store.context(session.id, max_tokens=budget)
        roles = [m.role for m in context.messages]
        assert roles[0] == "system"
        assert roles[1] == "user", roles
        assert context.tokens <= budget
        assert context.truncated == (context.messages != full.messages)
        assert context.messages == full.messages[:1] + full.messages[-(len(roles) - 1) :]


def test_appends_after_a_compaction_follow_the_kept_entries(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 4)
    store.compact(session.id, KeepLastTurns(1))
    store.append(session.id, turn(99, tools=0))
    texts = [m.text for m in store.context(session.id).messages]
    assert texts[-2:] == ["question 99", "answer 99"]
    assert texts[2] == "question 3"
