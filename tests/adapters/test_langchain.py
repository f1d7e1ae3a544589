"""The LangChain adapter: `BaseChatMessageHistory` on the session store."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    messages_to_dict,
)

from aisopod_session import InvalidPayload, SessionStore
from aisopod_session.adapters.langchain import MESSAGE_KEY, AisopodChatMessageHistory
from tests.adapters.chains import history_chain
from tests.adapters.conftest import StoreArg, fresh_name
from tests.adapters.strategies import json_values, texts
from tests.adapters.workers import langchain_turn

CONFIG_KEY = "configurable"


@pytest.fixture(name="make_history")
def make_history_fixture(
    store_arg: StoreArg,
) -> Iterator[Callable[..., AisopodChatMessageHistory]]:
    """Makes histories on the test's store (closed after the test)."""
    made: list[AisopodChatMessageHistory] = []

    def make(name: str | None = None, **options: Any) -> AisopodChatMessageHistory:
        history = AisopodChatMessageHistory(name or fresh_name(), store_arg, **options)
        made.append(history)
        return history

    yield make
    for history in made:
        history.close()


def config(session_id: str) -> Any:
    return {CONFIG_KEY: {"session_id": session_id}}


TURN_2_PROMPT = [
    "system:You are helpful.",
    "human:I am Ann.",
    "ai:Nice to meet you, Ann.",
    "human:What is my name?",
]


# --- RunnableWithMessageHistory, for real -----------------------------------------------


def test_runnable_keeps_a_conversation_across_two_processes(store_url: str) -> None:
    """A first turn runs in another process; the second, here, is shown it."""
    context = multiprocessing.get_context("spawn")
    name = fresh_name()
    out = context.Queue()
    worker = context.Process(
        target=langchain_turn,
        args=(store_url, name, "I am Ann.", "Nice to meet you, Ann.", out),
    )
    worker.start()
    status, report = out.get(timeout=120)
    worker.join(30)
    assert status == "ok", report
    assert report == ["system:You are helpful.", "human:I am Ann."]

    chain, prompts, close = history_chain(store_url, ["Your name is Ann."])
    try:
        answer = chain.invoke({"question": "What is my name?"}, config=config(name))
        assert answer.content == "Your name is Ann."
        assert prompts == [TURN_2_PROMPT]
        history = AisopodChatMessageHistory(name, store_url)
        try:
            assert [m.type for m in history.messages] == ["human", "ai", "human", "ai"]
        finally:
            history.close()
    finally:
        close()


def test_runnable_with_history_sync(store_arg: StoreArg) -> None:
    """Two synchronous turns: the second prompt holds the first exchange."""
    name = fresh_name()
    chain, prompts, close = history_chain(store_arg, ["Nice to meet you, Ann.", "You are Ann."])
    try:
        chain.invoke({"question": "I am Ann."}, config=config(name))
        chain.invoke({"question": "What is my name?"}, config=config(name))
    finally:
        close()
    assert prompts[-1] == TURN_2_PROMPT


def test_runnable_with_history_async(store_arg: StoreArg) -> None:
    """Two asynchronous turns (`ainvoke`, `aget_messages`, `aadd_messages`)."""
    name = fresh_name()
    chain, prompts, close = history_chain(store_arg, ["Nice to meet you, Ann.", "You are Ann."])

    async def main() -> list[BaseMessage]:
        await chain.ainvoke({"question": "I am Ann."}, config=config(name))
        await chain.ainvoke({"question": "What is my name?"}, config=config(name))
        history = AisopodChatMessageHistory(name, store_arg)
        try:
            return await history.aget_messages()
        finally:
            history.close()

    try:
        messages = asyncio.run(main())
    finally:
        close()
    assert prompts[-1] == TURN_2_PROMPT
    assert [m.text for m in messages] == [
        "I am Ann.",
        "Nice to meet you, Ann.",
        "What is my name?",
        "You are Ann.",
    ]


# --- the history's own methods -------------------------------------------------------------


def test_is_a_chat_message_history(make_history: Callable[..., AisopodChatMessageHistory]) -> None:
    """A `BaseChatMessageHistory`, with its key and the id it was given."""
    history = make_history("User-42")
    assert isinstance(history, BaseChatMessageHistory)
    assert (history.session_id, history.key) == ("User-42", "agent:main:%55ser-42")
    assert history.messages == []


def test_add_read_and_clear_sync(
    make_history: Callable[..., AisopodChatMessageHistory], inspect: SessionStore
) -> None:
    """Messages come back in order; `clear` archives the session and starts afresh."""
    history = make_history()
    history.clear()  # nothing to clear: no session is made
    assert inspect.current(history.key) is None
    history.add_user_message("hi")
    history.add_messages([AIMessage("hello"), HumanMessage("bye")])
    assert [m.text for m in history.messages] == ["hi", "hello", "bye"]
    history.clear()
    assert history.messages == []
    sessions = inspect.list(key=history.key).sessions
    assert sorted(s.status for s in sessions) == ["active", "archived"]


def test_add_read_and_clear_async(
    make_history: Callable[..., AisopodChatMessageHistory], inspect: SessionStore
) -> None:
    """The async methods do what the sync ones do."""
    history = make_history()

    async def main() -> None:
        await history.aadd_messages([HumanMessage("hi"), AIMessage("hello")])
        assert [m.text for m in await history.aget_messages()] == ["hi", "hello"]
        await history.aclear()
        assert await history.aget_messages() == []

    asyncio.run(main())
    assert len(inspect.list(key=history.key).sessions) == 2


def test_messages_are_native_and_searchable(
    make_history: Callable[..., AisopodChatMessageHistory], inspect: SessionStore
) -> None:
    """Each message is a message entry with its native role and text; tool calls pair
    with their results and token usage counts towards the session's."""
    history = make_history()
    history.add_messages(
        [
            SystemMessage("You are helpful."),
            HumanMessage([{"type": "text", "text": "Weather in Paris?"}, "Quickly."]),
            AIMessage(
                "",
                tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}],
                usage_metadata={
                    "input_tokens": 10,
                    "output_tokens": 5,
                    "total_tokens": 15,
                    "input_token_details": {"cache_read": 4},
                },
            ),
            ToolMessage("sunny in Paris", tool_call_id="c1"),
            AIMessage("It is sunny."),
        ]
    )
    session = inspect.current(history.key)
    assert session is not None
    entries = inspect.path(session.id).entries
    assert [(e.type, e.role) for e in entries] == [
        ("message", "system"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "tool"),
        ("message", "assistant"),
    ]
    assert [e.text for e in entries] == [
        "You are helpful.",
        "Weather in Paris?\nQuickly.",
        "",
        "sunny in Paris",
        "It is sunny.",
    ]
    assert all(MESSAGE_KEY in e.payload["message"] for e in entries)
    messages = inspect.context(session.id).for_model()
    assert messages[2].tool_calls[0].id == messages[3].tool_call_id == "c1"
    assert messages[2].tool_calls[0].arguments == {"city": "Paris"}
    usage = inspect.get(session.id).usage
    assert (usage.input, usage.output, usage.cache_read, usage.total) == (6, 5, 4, 15)


def test_a_long_history_is_read_whole_and_in_order(memory_store: SessionStore) -> None:
    """`messages` reads the whole active path, a bounded page at a time."""
    history = AisopodChatMessageHistory(fresh_name(), memory_store)
    history.add_messages([HumanMessage(str(n)) for n in range(2500)])
    assert [m.text for m in history.messages] == [str(n) for n in range(2500)]


def test_messages_without_a_native_role_are_custom_entries(memory_store: SessionStore) -> None:
    """A function message or a chat message with an unknown role is kept as a `custom`
    entry, outside the store's context, and still comes back."""
    history = AisopodChatMessageHistory(fresh_name(), memory_store)
    odd: list[BaseMessage] = [
        FunctionMessage(content="42", name="f"),
        ChatMessage(content="hm", role="critic"),
    ]
    history.add_messages([HumanMessage("hi"), *odd])
    sid = memory_store.get_or_create(history.key).id
    assert [e.type for e in memory_store.path(sid).entries] == ["message", "custom", "custom"]
    assert messages_to_dict(history.messages[1:]) == messages_to_dict(odd)


def test_only_messages_may_be_added(memory_store: SessionStore) -> None:
    """Something that is not a message is refused, and nothing of the batch is added."""
    history = AisopodChatMessageHistory(fresh_name(), memory_store)
    with pytest.raises(InvalidPayload):
        history.add_messages([HumanMessage("fine"), "not a message"])  # type: ignore[list-item]
    assert history.messages == []


# --- lossless ------------------------------------------------------------------------------


def _json_object() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(texts(), json_values(), max_size=3)


def _content() -> st.SearchStrategy[Any]:
    blocks = st.lists(
        st.builds(lambda text: {"type": "text", "text": text}, texts()) | texts(), max_size=3
    )
    return texts() | blocks


def _tool_calls() -> st.SearchStrategy[list[dict[str, Any]]]:
    call = st.builds(
        lambda name, args, call_id: {"name": name, "args": args, "id": call_id},
        texts(),
        _json_object(),
        texts(),
    )
    return st.lists(call, max_size=2)


def _usage() -> st.SearchStrategy[dict[str, Any] | None]:
    counts = st.integers(0, 10**6)
    usage = st.builds(
        lambda i, o: {"input_tokens": i, "output_tokens": o, "total_tokens": i + o}, counts, counts
    )
    return st.none() | usage


def lc_messages() -> st.SearchStrategy[BaseMessage]:
    """LangChain messages of every kind, with any content and extra fields."""
    common = {
        "content": _content(),
        "additional_kwargs": _json_object(),
        "response_metadata": _json_object(),
        "id": st.none() | texts(),
        "name": st.none() | texts(),
    }
    return st.one_of(
        st.builds(HumanMessage, **common),
        st.builds(SystemMessage, **common),
        st.builds(AIMessage, **common, tool_calls=_tool_calls(), usage_metadata=_usage()),
        st.builds(AIMessageChunk, **common),
        st.builds(
            ToolMessage,
            **common,
            tool_call_id=texts(),
            status=st.sampled_from(["success", "error"]),
            artifact=json_values(),
        ),
        st.builds(ChatMessage, **common, role=st.sampled_from(["user", "assistant", "x"])),
        st.builds(FunctionMessage, **{**common, "name": texts()}),
    )


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=st.lists(lc_messages(), min_size=1, max_size=4))
def test_messages_round_trip_exactly(
    memory_store: SessionStore, messages: list[BaseMessage]
) -> None:
    """Every message comes back as `messages_to_dict` wrote it, key for key."""
    history = AisopodChatMessageHistory(fresh_name(), memory_store)
    history.add_messages(messages)
    given_data = messages_to_dict(messages)
    back = messages_to_dict(history.messages)
    assert back == given_data
    assert json.dumps(back) == json.dumps(given_data)
    assert [type(m) for m in history.messages] == [type(m) for m in messages]
