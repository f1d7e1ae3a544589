"""The OpenAI Agents SDK adapter: the SDK's `Session` protocol on the session store."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest
from agents import Agent, RunConfig, Runner, SessionSettings, set_tracing_disabled
from agents.memory import Session
from agents.testing import ScriptedModel, assistant_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisopod_session import (
    AccessDenied,
    Entry,
    InvalidInput,
    InvalidPayload,
    InvalidSessionKey,
    NewEntry,
    SessionStore,
    open_store,
)
from aisopod_session._store import engine_of
from aisopod_session.adapters.openai_agents import ITEM_KEY, AisopodSession
from aisopod_session.backends.sqlite import INLINE_BYTES, INLINE_STEPS
from tests.adapters.conftest import StoreArg, fresh_name
from tests.adapters.strategies import extra_fields, json_values, texts
from tests.adapters.workers import agents_turns

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

T = TypeVar("T")

set_tracing_disabled(True)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


Item = dict[str, Any]


async def add(session: AisopodSession, items: list[Item]) -> None:
    """`session.add_items`, for plain dicts (the SDK types items as TypedDicts)."""
    await session.add_items(cast("list[TResponseInputItem]", items))


async def get(session: AisopodSession, limit: int | None = None) -> list[Item]:
    """`session.get_items`, as plain dicts."""
    return cast("list[Item]", await session.get_items(limit))


async def pop(session: AisopodSession) -> Item | None:
    """`session.pop_item`, as a plain dict."""
    item = await session.pop_item()
    return None if item is None else dict(item)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call(call_id: str, city: str = "Paris") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": "get_weather",
        "arguments": json.dumps({"city": city}),
    }


def output(call_id: str, text: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": text}


def last_entry(store: SessionStore, key: str) -> Entry:
    session = store.current(key)
    assert session is not None
    return store.path(session.id, last=1).entries[-1]


@pytest.fixture(name="make_session")
def make_session_fixture(store_arg: StoreArg) -> Iterator[Callable[..., AisopodSession]]:
    """Makes sessions on the test's store (closed after the test)."""
    made: list[AisopodSession] = []

    def make(name: str | None = None, **options: Any) -> AisopodSession:
        session = AisopodSession(name or fresh_name(), store_arg, **options)
        made.append(session)
        return session

    yield make
    for session in made:
        session.close()


# --- the SDK's Runner, for real ---------------------------------------------------------


def test_runner_keeps_a_conversation_across_two_processes(store_url: str) -> None:
    """Turns with a function tool run in one process; a second process, sharing the
    store, continues the conversation and its model is shown all of it."""
    context = multiprocessing.get_context("spawn")
    name = fresh_name()
    first_done = context.Event()
    outs = [context.Queue(), context.Queue()]
    first = context.Process(
        target=agents_turns,
        args=(
            store_url,
            name,
            ["What is the weather in Paris?", "Thanks!"],
            [
                [("call", "get_weather", '{"city": "Paris"}', "call_1")],
                [("say", "It is sunny in Paris.")],
                [("say", "You are welcome.")],
            ],
            None,
            first_done,
            outs[0],
        ),
    )
    second = context.Process(
        target=agents_turns,
        args=(
            store_url,
            name,
            ["And in Rome?"],
            [
                [("call", "get_weather", '{"city": "Rome"}', "call_2")],
                [("say", "Sunny in Rome too.")],
            ],
            first_done,
            None,
            outs[1],
        ),
    )
    first.start()
    second.start()
    reports = [out.get(timeout=120) for out in outs]
    first.join(30)
    second.join(30)
    for status, report in reports:
        assert status == "ok", report
    assert [first.exitcode, second.exitcode] == [0, 0]

    history = [
        "user:What is the weather in Paris?",
        "function_call:get_weather",
        "function_call_output:sunny in Paris",
        "assistant:It is sunny in Paris.",
        "user:Thanks!",
        "assistant:You are welcome.",
    ]
    second_calls = reports[1][1]
    assert second_calls[0] == [*history, "user:And in Rome?"]
    assert second_calls[1][-2:] == [
        "function_call:get_weather",
        "function_call_output:sunny in Rome",
    ]

    session = AisopodSession(name, store_url)
    try:
        items = run(get(session))
    finally:
        session.close()
    assert [item.get("type", "message") for item in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
        "message",
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert items[-1]["content"][0]["text"] == "Sunny in Rome too."


def test_runner_reads_the_history_through_the_session(
    make_session: Callable[..., AisopodSession],
) -> None:
    """Before a run the Runner gets the session's items; after it, they include the run's."""
    session = make_session()
    model = ScriptedModel([[assistant_message("Hello Ann.")], [assistant_message("You are Ann.")]])
    agent = Agent(name="a", model=model)

    async def main() -> None:
        await Runner.run(agent, "I am Ann.", session=session)
        result = await Runner.run(agent, "Who am I?", session=session)
        assert result.final_output == "You are Ann."

    run(main())
    assert model.last_call is not None
    assert [item.get("role") for item in model.last_call.input] == [
        "user",
        "assistant",
        "user",
    ]
    assert len(run(get(session))) == 4


def test_streamed_runs_use_the_session_too(
    make_session: Callable[..., AisopodSession],
) -> None:
    """`Runner.run_streamed` reads and writes the session as `Runner.run` does."""
    session = make_session()
    model = ScriptedModel([[assistant_message("one")], [assistant_message("two")]])
    agent = Agent(name="a", model=model)

    async def main() -> None:
        for prompt in ("first", "second"):
            result = Runner.run_streamed(agent, prompt, session=session)
            async for _ in result.stream_events():
                pass

    run(main())
    assert model.last_call is not None
    assert [item.get("role") for item in model.last_call.input] == ["user", "assistant", "user"]
    assert [item.get("role") for item in run(get(session))] == ["user", "assistant"] * 2


def test_run_config_limit_reaches_get_items(make_session: Callable[..., AisopodSession]) -> None:
    """`RunConfig(session_settings=SessionSettings(limit=N))` shows the model the last N items."""
    session = make_session(session_settings=SessionSettings(limit=10))
    model = ScriptedModel([[assistant_message(str(n))] for n in range(3)])
    agent = Agent(name="a", model=model)

    async def main() -> None:
        await Runner.run(agent, "zero", session=session)
        await Runner.run(agent, "one", session=session)
        limited = RunConfig(session_settings=SessionSettings(limit=2))
        await Runner.run(agent, "two", session=session, run_config=limited)

    run(main())
    assert model.last_call is not None
    shown = [(item.get("role"), item.get("content")) for item in model.last_call.input]
    assert shown[0] == ("user", "one")
    assert len(shown) == 3


# --- the documented session behaviours --------------------------------------------------


def test_is_an_sdk_session(make_session: Callable[..., AisopodSession]) -> None:
    """It satisfies the SDK's runtime-checkable `Session` protocol, with default settings."""
    session = make_session("User-42")
    assert isinstance(session, Session)
    assert session.session_id == "User-42"
    assert session.key == "agent:main:%55ser-42"
    assert session.session_settings == SessionSettings()


def test_items_come_back_in_the_order_added(make_session: Callable[..., AisopodSession]) -> None:
    """`get_items()` returns every item, oldest first, across several `add_items`."""
    session = make_session()
    batches = [[user("a"), assistant("b")], [user("c")], [call("c1"), output("c1", "d")]]

    async def main() -> list[Any]:
        assert await get(session) == []
        for batch in batches:
            await add(session, batch)
        return await get(session)

    assert run(main()) == [item for batch in batches for item in batch]


def test_batches_of_any_size_land_whole_on_a_new_key_and_after(
    make_session: Callable[..., AisopodSession], inspect: SessionStore
) -> None:
    """A batch big enough for PostgreSQL's COPY path (and one under it) goes to the
    key's session, made by the first batch: every item, in order, the tree unbroken."""
    session = make_session()
    first = [user(f"first {n}") for n in range(300)]
    second = [assistant(f"second {n}") for n in range(5)]
    third = [user(f"third {n}") for n in range(200)]

    async def main() -> list[Any]:
        for batch in (first, second, third):
            await add(session, batch)
        return await get(session)

    assert run(main()) == first + second + third
    stored = inspect.current(session.key)
    assert stored is not None
    entries = inspect.history(stored.id, last=505).entries
    assert [e.seq for e in entries] == list(range(1, 506))
    assert [e.parent_seq for e in entries] == [None, *range(1, 505)]


def test_windows_small_and_large_read_the_same_items(
    make_session: Callable[..., AisopodSession], inspect: SessionStore
) -> None:
    """A small window of an SQLite file is read on the event loop's thread, one past
    its bounds (long items, many entries that are no items) on a worker thread: the
    items are the same either way, on every backend."""
    session = make_session()
    long_items = [user(str(n) * (INLINE_BYTES // 2)) for n in range(4)]
    short_items = [user(str(n)) for n in range(3)]
    # More rows than an inline read may step through (about 10 steps a row).
    notes = [NewEntry("custom", {"customType": "note", "data": {}})] * (INLINE_STEPS // 8)

    async def main() -> None:
        await add(session, long_items)
        assert await get(session, 3) == long_items[1:]
        await add(session, short_items)
        assert await get(session, 4) == long_items[3:] + short_items
        stored = inspect.current(session.key)
        assert stored is not None
        inspect.append(stored.id, notes)
        await add(session, [user("last")])
        assert await get(session, 5) == long_items[3:] + short_items + [user("last")]

    run(main())


def test_limit_is_resolved_as_the_sdk_sessions_do(
    make_session: Callable[..., AisopodSession],
) -> None:
    """The argument wins, then `session_settings.limit`, then all; 0 gives none and a
    negative limit all (as `SQLiteSession`)."""
    items = [user(str(n)) for n in range(5)]
    limited = make_session(session_settings={"limit": 2})
    unlimited = AisopodSession(limited.session_id, limited.store)

    async def main() -> None:
        await add(limited, items)
        assert await get(limited) == items[-2:]
        assert await get(limited, 3) == items[-3:]
        assert await get(limited, 10) == items
        assert await get(limited, 0) == []
        assert await get(limited, -1) == items
        assert await get(unlimited) == items
        assert await get(unlimited, 1) == items[-1:]

    run(main())
    assert limited.session_settings == SessionSettings(limit=2)


def test_pop_item_corrects_the_last_exchange(
    make_session: Callable[..., AisopodSession], inspect: SessionStore
) -> None:
    """The SDK docs' correction: pop the answer, pop the question, ask again. The popped
    items stay in the history, on an abandoned branch."""
    session = make_session()
    model = ScriptedModel([[assistant_message("5")], [assistant_message("5, really")]])
    agent = Agent(name="a", model=model)

    async def main() -> None:
        await Runner.run(agent, "What's 2 + 2?", session=session)
        answer = await pop(session)
        question = await pop(session)
        assert answer is not None
        assert answer.get("role") == "assistant"
        assert question == user("What's 2 + 2?")
        await Runner.run(agent, "What's 2 + 3?", session=session)

    run(main())
    assert model.last_call is not None
    assert model.last_call.input == [user("What's 2 + 3?")]
    assert [item.get("role") for item in run(get(session))] == ["user", "assistant"]
    current = inspect.current(session.key)
    assert current is not None
    everything = inspect.history(current.id, last=10).entries
    assert [entry.text for entry in everything] == [
        "What's 2 + 2?",
        "5",
        "What's 2 + 3?",
        "5, really",
    ]
    assert len(inspect.branches(current.id)) == 2


def test_pop_item_of_an_empty_session_is_none(
    make_session: Callable[..., AisopodSession], inspect: SessionStore
) -> None:
    """Popping a session that has no items returns `None` and makes no session."""
    session = make_session()
    assert run(pop(session)) is None
    assert inspect.current(session.key) is None
    run(add(session, [user("one")]))
    assert run(pop(session)) == user("one")
    assert run(pop(session)) is None


def test_concurrent_pops_take_distinct_items(
    make_session: Callable[..., AisopodSession],
) -> None:
    """Pops racing on one key (through several session objects) never return one item twice."""
    name = fresh_name()
    sessions = [make_session(name) for _ in range(3)]
    items = [user(str(n)) for n in range(6)]

    async def main() -> list[Any]:
        await add(sessions[0], items)
        return await asyncio.gather(*(pop(sessions[n % 3]) for n in range(6)))

    popped = run(main())
    assert sorted(json.dumps(item) for item in popped) == sorted(json.dumps(i) for i in items)
    assert run(get(sessions[1])) == []


def test_clear_session_starts_afresh_and_archives(
    make_session: Callable[..., AisopodSession], inspect: SessionStore
) -> None:
    """After `clear_session` the session has no items; the old session is archived, whole."""
    session = make_session()

    async def main() -> None:
        await session.clear_session()  # nothing to clear: no session is made
        assert inspect.current(session.key) is None
        await add(session, [user("secret"), assistant("noted")])
        await session.clear_session()
        assert await get(session) == []
        await add(session, [user("again")])

    run(main())
    sessions = inspect.list(key=session.key).sessions
    assert sorted(s.status for s in sessions) == ["active", "archived"]
    archived = next(s for s in sessions if s.status == "archived")
    assert [e.text for e in inspect.history(archived.id).entries] == ["secret", "noted"]
    assert run(get(session)) == [user("again")]


def test_sessions_do_not_see_each_other(make_session: Callable[..., AisopodSession]) -> None:
    """Two session ids are two conversations."""
    first, second = make_session(), make_session()
    run(add(first, [user("first")]))
    run(add(second, [user("second")]))
    assert run(get(first)) == [user("first")]
    assert run(get(second)) == [user("second")]


# --- tool calls and their outputs stay together -----------------------------------------


def test_window_widens_back_to_the_tool_call(
    make_session: Callable[..., AisopodSession],
) -> None:
    """With `keep_tool_pairs`, a window that would start with a tool output starts with
    its call instead; with parallel calls, with the earliest call any kept output needs."""
    session = make_session(keep_tool_pairs=True)
    single = [user("weather?"), call("c1"), output("c1", "sunny"), assistant("sunny")]
    parallel = [
        user("and Rome, Oslo?"),
        call("c2", "Rome"),
        call("c3", "Oslo"),
        output("c2", "warm"),
        output("c3", "cold"),
        assistant("warm and cold"),
    ]

    async def main() -> None:
        await add(session, single)
        assert await get(session, 2) == single[1:]
        assert await get(session, 3) == single[1:]
        await add(session, parallel)
        assert await get(session, 2) == parallel[1:]
        assert await get(session, 4) == parallel[1:]
        assert await get(session, 5) == parallel[1:]
        assert await get(session, 6) == parallel

    run(main())


def _orphaned(items: list[dict[str, Any]]) -> bool:
    """Whether a window has a function_call_output without its function_call."""
    called: set[str] = set()
    for item in items:
        if item.get("type") == "function_call":
            called.add(item["call_id"])
        elif item.get("type") == "function_call_output" and item["call_id"] not in called:
            return True
    return False


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any] | None]:
    """Items of a conversation with tool calls (parallel ones too); `None` marks an
    entry that is not an item (a model change), which reads must skip."""
    items: list[dict[str, Any] | None] = []
    for turn in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["user", "assistant", "tools", "native"]))
        if kind == "user":
            items.append(user(f"u{turn}"))
        elif kind == "assistant":
            items.append(assistant(f"a{turn}"))
        elif kind == "native":
            items.extend([None] * draw(st.integers(1, 12)))
        else:
            ids = [f"t{turn}.{n}" for n in range(draw(st.integers(1, 3)))]
            items.extend(call(i) for i in ids)
            items.extend([None] * draw(st.integers(0, 12)))  # e.g. labels, model changes
            items.extend(output(i, f"out {i}") for i in draw(st.permutations(ids)))
    return items


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conversation=conversations(), limit=st.integers(0, 14))
def test_window_never_starts_with_an_orphan_output(
    memory_store: SessionStore, conversation: list[dict[str, Any] | None], limit: int
) -> None:
    """`get_items(limit)` is the shortest suffix of at least `limit` items (or all) that
    keeps every output with its call, however the items sit in pages of the path."""
    session = AisopodSession(fresh_name(), memory_store, keep_tool_pairs=True)
    sid = memory_store.get_or_create(session.key).id
    for item in conversation:
        if item is None:
            memory_store.append(sid, NewEntry.model_change("openai", "gpt-4.1"))
        else:
            run(add(session, [item]))
    items = [item for item in conversation if item is not None]
    window = run(get(session, limit))
    if limit == 0:
        assert window == []
        return
    assert window == items[len(items) - len(window) :]
    assert len(window) >= min(limit, len(items))
    assert not _orphaned(window)
    for shorter in range(min(limit, len(items)), len(window)):
        assert _orphaned(items[len(items) - shorter :])


# --- lossless and native -----------------------------------------------------------------


def _content(text: str) -> list[dict[str, Any]]:
    return [{"type": "input_text", "text": text}]


ITEM_SHAPES: list[Callable[[str], dict[str, Any]]] = [
    lambda t: {"role": "user", "content": t},
    lambda t: {"type": "message", "role": "user", "content": _content(t)},
    lambda t: {"role": "system", "content": t},
    lambda t: {"role": "developer", "content": t},
    lambda t: {"role": "assistant", "content": t},
    assistant,
    lambda t: {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "refusal", "refusal": t}],
    },
    lambda t: {"type": "function_call", "call_id": t, "name": "f", "arguments": t},
    lambda t: {"type": "function_call_output", "call_id": "c", "output": t},
    lambda t: {"type": "function_call_output", "call_id": "c", "output": _content(t)},
    lambda t: {"type": "custom_tool_call", "call_id": "c", "name": "f", "input": t},
    lambda t: {"type": "custom_tool_call_output", "call_id": "c", "output": t},
    lambda t: {"type": "computer_call", "call_id": "c", "action": {"type": "click", "x": 1}},
    lambda t: {"type": "computer_call_output", "call_id": "c", "output": {"type": "x", "t": t}},
    lambda t: {"type": "shell_call", "call_id": "c", "action": {"commands": [t]}},
    lambda t: {"type": "shell_call_output", "call_id": "c", "output": [{"stdout": t}]},
    lambda t: {"type": "local_shell_call", "id": "l", "call_id": "c", "action": {"cmd": [t]}},
    lambda t: {"type": "local_shell_call_output", "id": "c", "output": t},
    lambda t: {"type": "apply_patch_call", "call_id": "c", "operation": {"diff": t}},
    lambda t: {"type": "apply_patch_call_output", "call_id": "c", "output": t},
    lambda t: {"type": "reasoning", "id": "r", "summary": [{"type": "summary_text", "text": t}]},
    lambda t: {"type": "web_search_call", "id": "w", "status": "completed", "action": t},
    lambda t: {"type": "mcp_call", "id": "m", "name": "f", "arguments": t, "output": t},
    lambda t: {"type": "item_reference", "id": t},
    lambda t: {"type": "something_new", "payload": t},
    lambda t: {"role": "critic", "content": t},
]


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    """An item of any shape, with any text, and extra fields of any JSON."""
    shape = draw(st.sampled_from(ITEM_SHAPES))
    return {**shape(draw(texts())), **draw(extra_fields())}


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=st.lists(items(), min_size=1, max_size=4), more=json_values())
def test_items_round_trip_exactly(
    memory_store: SessionStore, batch: list[dict[str, Any]], more: Any
) -> None:
    """Every item comes back equal, key for key and in key order, whatever it holds
    (NUL, lone surrogates, huge integers, infinities, unknown types and fields)."""
    batch[0]["x_more"] = more
    session = AisopodSession(fresh_name(), memory_store)
    run(add(session, batch))
    back = run(get(session))
    assert back == batch
    assert json.dumps(back) == json.dumps(batch)


@pytest.mark.parametrize(
    ("item", "role", "text"),
    [
        (user("What is the weather in Paris?"), "user", "What is the weather in Paris?"),
        ({"type": "message", "role": "user", "content": _content("typed")}, "user", "typed"),
        (assistant("It is sunny."), "assistant", "It is sunny."),
        ({"role": "developer", "content": "Be brief."}, "system", "Be brief."),
        (
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "refusal", "refusal": "No."}],
            },
            "assistant",
            "No.",
        ),
        (output("c1", "sunny in Paris"), "tool", "sunny in Paris"),
        (
            {"type": "function_call_output", "call_id": "c", "output": _content("parts out")},
            "tool",
            "parts out",
        ),
        ({"type": "shell_call_output", "call_id": "c", "output": [{"stdout": "ls"}]}, "tool", "ls"),
        ({"type": "local_shell_call_output", "id": "c", "output": "done"}, "tool", "done"),
        (call("c1"), "assistant", ""),
        ({"type": "reasoning", "id": "r", "summary": []}, "assistant", ""),
        (user("nul \x00 and \ud800"), "user", "nul \ufffd and \ufffd"),
    ],
)
def test_items_are_native_messages_with_their_text(
    memory_store: SessionStore, item: dict[str, Any], role: str, text: str
) -> None:
    """Each item is a message entry with its native role, and its human text is what the
    store indexes; the item itself is kept in the message."""
    session = AisopodSession(fresh_name(), memory_store)
    run(add(session, [item]))
    entry = last_entry(memory_store, session.key)
    assert (entry.type, entry.role, entry.text) == ("message", role, text)
    assert ITEM_KEY in entry.payload["message"] or f"{ITEM_KEY}B64" in entry.payload["message"]


def test_items_without_a_native_form_are_custom_entries(memory_store: SessionStore) -> None:
    """Hosted tool calls, references and unknown items are `custom` entries, outside the
    store's context, and still come back."""
    session = AisopodSession(fresh_name(), memory_store)
    odd = [{"type": "web_search_call", "id": "w", "status": "completed"}, {"role": "critic"}]
    run(add(session, [user("hi"), *odd]))
    sid = memory_store.get_or_create(session.key).id
    entries = memory_store.path(sid).entries
    assert [e.type for e in entries] == ["message", "custom", "custom"]
    assert len(memory_store.context(sid).messages) == 1
    assert run(get(session)) == [user("hi"), *odd]


def test_the_store_understands_the_conversation(memory_store: SessionStore) -> None:
    """The store's context of an SDK conversation pairs the tool call with its result."""
    session = AisopodSession(fresh_name(), memory_store)
    items = [user("weather?"), call("c1"), output("c1", "sunny in Paris"), assistant("Sunny.")]
    run(add(session, items))
    sid = memory_store.get_or_create(session.key).id
    messages = memory_store.context(sid).for_model()
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1].tool_calls[0].id == messages[2].tool_call_id == "c1"
    assert messages[1].tool_calls[0].arguments == {"city": "Paris"}
    assert [m.text for m in messages] == ["weather?", "", "sunny in Paris", "Sunny."]


def test_an_item_must_be_a_dict(memory_store: SessionStore) -> None:
    """Something that is not an item is refused, and nothing of the batch is added."""
    session = AisopodSession(fresh_name(), memory_store)
    with pytest.raises(InvalidPayload):
        run(add(session, [user("fine"), "not an item"]))  # type: ignore[list-item]
    assert run(get(session)) == []


# --- stores and keys ---------------------------------------------------------------------


def test_default_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without a store, the session opens the default one (`$AISOPOD_SESSION_DB`)."""
    monkeypatch.setenv("AISOPOD_SESSION_DB", str(tmp_path / "default.db"))
    session = AisopodSession("user-42")
    try:
        run(add(session, [user("hi")]))
        assert run(get(session)) == [user("hi")]
    finally:
        session.close()
    with open_store(tmp_path / "default.db") as store:
        assert store.current("agent:main:user-42") is not None


def test_sessions_on_one_url_share_one_store(sqlite_url: str) -> None:
    """Sessions given the same URL share the store it opens; the last to close closes it."""
    first, second = AisopodSession("a", sqlite_url), AisopodSession("b", sqlite_url)
    assert first.store is second.store
    first.close()
    first.close()  # letting go twice counts once
    run(add(second, [user("still open")]))
    assert run(get(second)) == [user("still open")]
    second.close()
    third = AisopodSession("b", sqlite_url)
    try:
        assert third.store is not second.store
        assert run(get(third)) == [user("still open")]
    finally:
        third.close()


FORK_SCRIPT = """
import asyncio, os, sys
from aisopod_session.adapters.openai_agents import AisopodSession

url = sys.argv[1]
parent = AisopodSession("a", url)
asyncio.run(parent.add_items([{"role": "user", "content": "before the fork"}]))
pid = os.fork()
if pid == 0:
    child = AisopodSession("a", url)
    ok = child.store is not parent.store and len(asyncio.run(child.get_items())) == 1
    asyncio.run(child.add_items([{"role": "user", "content": "from the child"}]))
    child.close()
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert len(asyncio.run(parent.get_items())) == 2
parent.close()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_store(sqlite_url: str, tmp_path: Path) -> None:
    """A child forked after a URL's store was opened does not use the parent's connections
    (run in a fresh interpreter: forking this multi-threaded one is not safe)."""
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script), sqlite_url],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_store_must_be_a_store_or_a_url() -> None:
    """Anything else is refused up front."""
    with pytest.raises(InvalidInput):
        AisopodSession("user-42", 42)  # type: ignore[arg-type]


def test_session_ids_become_keys(memory_store: SessionStore) -> None:
    """A plain id is a conversation of the agent and keeps its case (as `SQLiteSession`
    ids do); a session key names its agent and ignores case."""
    assert AisopodSession("User-42", memory_store).key == "agent:main:%55ser-42"
    assert AisopodSession("user-42", memory_store, agent_id="Ops").key == "agent:ops:user-42"
    assert AisopodSession("main", memory_store).key == "agent:main:main"
    key = "agent:ops:telegram:direct:123"
    assert AisopodSession(key, memory_store, agent_id="main").key == key
    assert AisopodSession(key.upper(), memory_store).key == key
    scoped = memory_store.for_agent("ops")
    assert AisopodSession("user-42", scoped).key == "agent:ops:user-42"
    with pytest.raises(InvalidSessionKey):
        AisopodSession("agent:", memory_store)
    run(add(AisopodSession("User-42", memory_store), [user("hi")]))
    assert run(get(AisopodSession("User-42", memory_store))) == [user("hi")]
    assert run(get(AisopodSession("user-42", memory_store))) == []


def test_a_scoped_store_keeps_other_agents_out(memory_store: SessionStore) -> None:
    """A session on a store handle scoped to one agent cannot name another's key: it is
    refused when made."""
    with pytest.raises(AccessDenied):
        AisopodSession("agent:main:secret", memory_store.for_agent("ops"))


def test_the_event_loop_is_not_blocked(
    memory_store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a synchronous store, every transaction runs on the store's worker threads."""
    threads: set[int] = set()
    backend = engine_of(memory_store).backend
    for name in ("read", "read_statement", "write", "write_append"):
        method = getattr(backend, name)

        def spy(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            threads.add(threading.get_ident())
            return _method(*args, **kwargs)

        monkeypatch.setattr(backend, name, spy)
    session = AisopodSession(fresh_name(), memory_store)

    async def main() -> int:
        await add(session, [user("hi"), assistant("hello")])
        await get(session)
        await pop(session)
        await session.clear_session()
        return threading.get_ident()

    loop_thread = run(main())
    assert threads
    assert loop_thread not in threads


def test_on_a_file_only_small_reads_run_on_the_event_loop(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an SQLite file, `get_items(limit)` of a few items reads on the loop's own
    thread, on the connection that never waits; every other transaction (adds, a
    read of every item, pops, clears) runs on the store's worker threads."""
    normal: set[int] = set()
    inline: set[int] = set()
    with open_store(sqlite_url) as store:
        backend = engine_of(store).backend
        for name, threads in (("_connection", normal), ("_inline_connection", inline)):
            method = getattr(backend, name)

            def spy(*args: Any, _method: Any = method, _threads: set[int] = threads) -> Any:
                _threads.add(threading.get_ident())
                return _method(*args)

            monkeypatch.setattr(backend, name, spy)
        session = AisopodSession(fresh_name(), store)

        async def main() -> int:
            await add(session, [user("hi"), assistant("hello"), user("again")])
            assert await get(session, 2) == [assistant("hello"), user("again")]
            assert await get(session) == [user("hi"), assistant("hello"), user("again")]
            assert await pop(session) == user("again")
            await session.clear_session()
            return threading.get_ident()

        loop_thread = run(main())
    assert loop_thread in inline
    assert loop_thread not in normal
    assert normal  # the worker threads'
