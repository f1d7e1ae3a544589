"""The adapters' contract beyond the happy path: exact windows, ids, closing, usage,
compaction seen through the frameworks, and one conversation across frameworks.

Every test runs on SQLite and PostgreSQL, the store given by URL (how the store is
handed over is `test_stores.py`'s subject; closing is tested with every form).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TypeVar, cast

import pytest
from agents import Agent, Runner, set_tracing_disabled
from agents.memory import OpenAIResponsesCompactionSession
from agents.testing import ScriptedModel, assistant_message
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from openai import AsyncOpenAI

from aisopod_session import (
    InvalidInput,
    InvalidSessionKey,
    KeepLastTurns,
    Message,
    SessionStore,
    StoreUnavailable,
)
from aisopod_session.adapters import CompactionPolicy, conversation_id, conversation_key
from aisopod_session.adapters.langchain import AisopodChatMessageHistory
from aisopod_session.adapters.openai_agents import AisopodSession
from aisopod_session.transfer import export_transcript
from aisopod_shared import ToolCallPart
from tests.adapters.conftest import StoreArg, fresh_name

T = TypeVar("T")

set_tracing_disabled(True)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def call(call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def output(call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": "done"}


async def add(session: AisopodSession, items: list[dict[str, Any]]) -> None:
    await session.add_items(cast("Any", items))


async def get(session: AisopodSession, limit: int | None = None) -> list[dict[str, Any]]:
    return cast("list[dict[str, Any]]", await session.get_items(limit))


@pytest.fixture(name="made")
def made_fixture() -> Iterator[list[AisopodSession | AisopodChatMessageHistory]]:
    """Adapters a test made, closed after it."""
    made: list[AisopodSession | AisopodChatMessageHistory] = []
    yield made
    for adapter in made:
        adapter.close()


@pytest.fixture(name="sdk")
def sdk_fixture(
    store_url: str, made: list[AisopodSession | AisopodChatMessageHistory]
) -> Callable[..., AisopodSession]:
    def make(name: str | None = None, **options: Any) -> AisopodSession:
        session = AisopodSession(name or fresh_name(), store_url, **options)
        made.append(session)
        return session

    return make


@pytest.fixture(name="chat")
def chat_fixture(
    store_url: str, made: list[AisopodSession | AisopodChatMessageHistory]
) -> Callable[..., AisopodChatMessageHistory]:
    def make(name: str | None = None, **options: Any) -> AisopodChatMessageHistory:
        history = AisopodChatMessageHistory(name or fresh_name(), store_url, **options)
        made.append(history)
        return history

    return make


# --- exactly the protocol ------------------------------------------------------------------


def test_get_items_returns_exactly_the_limit(sdk: Callable[..., AisopodSession]) -> None:
    """As the SDK's own sessions: the latest `limit` items, even when the first is a tool
    output whose call lies before the window (the SDK's runner drops such outputs)."""
    session = sdk()
    items = [user("weather?"), call("c1"), output("c1"), user("thanks")]
    run(add(session, items))
    for limit in range(len(items) + 2):
        expected = items[max(0, len(items) - limit) :] if limit else []
        assert run(get(session, limit)) == expected
    widened = sdk(session.session_id, keep_tool_pairs=True)
    assert run(get(widened, 2)) == items[1:]


def test_an_unknown_setting_is_the_sdks_own_error(store_url: str, inspect: SessionStore) -> None:
    """A typo in `session_settings` is refused by the SDK's coercion (as `SQLiteSession`
    refuses it) instead of silently leaving the limit unset; nothing is written."""
    name = fresh_name()
    with pytest.raises(TypeError, match="limt"):
        AisopodSession(name, store_url, session_settings={"limt": 5})
    assert inspect.list(key_prefix="agent:main:user-").sessions == ()


@pytest.mark.parametrize("blank", ["", " ", "\n\t"])
def test_a_blank_session_id_is_refused(store_url: str, blank: str) -> None:
    """An empty or blank id never lands in the agent's main session."""
    with pytest.raises(InvalidSessionKey):
        AisopodSession(blank, store_url)
    with pytest.raises(InvalidSessionKey):
        AisopodChatMessageHistory(blank, store_url)


def test_ids_keep_their_case(
    sdk: Callable[..., AisopodSession], chat: Callable[..., AisopodChatMessageHistory]
) -> None:
    """`User-42` and `user-42` are two conversations, as in `SQLiteSession`; so are ids
    that differ in surrounding spaces."""
    suffix = fresh_name()
    upper, lower, spaced = sdk(f"User-{suffix}"), sdk(f"user-{suffix}"), sdk(f" user-{suffix}")
    run(add(upper, [user("upper")]))
    run(add(lower, [user("lower")]))
    assert run(get(upper)) == [user("upper")]
    assert run(get(lower)) == [user("lower")]
    assert run(get(spaced)) == []
    assert len({upper.key, lower.key, spaced.key}) == 3
    assert chat(f"User-{suffix}").messages == [HumanMessage("upper")]


@settings(max_examples=200, deadline=None)
@given(session_id=st.text(min_size=1).filter(lambda t: t.strip() and "\x00" not in t))
def test_the_key_mapping_is_reversible(session_id: str) -> None:
    """Each plain id has a key of its own, which a store keeps as it is (lowercase) and
    which gives the id back."""
    key = conversation_key(session_id, "main")
    if session_id.strip()[:6].lower() == "agent:":
        return
    assert key == key.lower()
    assert conversation_id(key) == session_id


def test_every_method_fails_after_close(store_arg: StoreArg) -> None:
    """A closed adapter says so, with the store's typed error, whatever is called, however
    its store was handed over."""
    session = AisopodSession(fresh_name(), store_arg)
    history = AisopodChatMessageHistory(fresh_name(), store_arg)
    session.close()
    history.close()
    calls: list[Callable[[], Any]] = [
        lambda: run(session.get_items()),
        lambda: run(session.add_items([cast("Any", user("x"))])),
        lambda: run(session.pop_item()),
        lambda: run(session.clear_session()),
        lambda: run(session.store_run_usage(None)),
        lambda: history.messages,
        lambda: history.add_messages([HumanMessage("x")]),
        lambda: history.clear(),
        lambda: run(history.aget_messages()),
        lambda: run(history.aadd_messages([HumanMessage("x")])),
        lambda: run(history.aclear()),
    ]
    for attempt in calls:
        with pytest.raises(StoreUnavailable, match="closed"):
            attempt()
    session.close()  # closing again does nothing more


def test_run_usage_counts_in_the_session(
    sdk: Callable[..., AisopodSession], inspect: SessionStore
) -> None:
    """`store_run_usage(result)` records what a run cost: the session's totals and the
    store's stats show it; the conversation's items do not change."""
    session = sdk()
    model = ScriptedModel([[assistant_message("hello")]])
    agent = Agent(name="a", model=model)

    async def main() -> Any:
        result = await Runner.run(agent, "hi", session=session)
        await session.store_run_usage(result)
        return result

    result = run(main())
    usage = result.context_wrapper.usage
    stored = inspect.current(session.key)
    assert stored is not None
    assert stored.usage.output == usage.output_tokens
    assert stored.usage.total == usage.total_tokens
    items = run(get(session))
    assert [i.get("role") for i in items] == ["user", "assistant"]
    with pytest.raises(InvalidInput):
        run(session.store_run_usage(object()))


# --- compaction, as the frameworks see it ------------------------------------------------


def _conversation(turns: int) -> list[Message]:
    messages: list[Message] = []
    for n in range(turns):
        messages += [Message.user(f"question {n}"), Message.assistant(f"answer {n}")]
    return messages


def test_a_compaction_is_what_the_frameworks_read(
    sdk: Callable[..., AisopodSession],
    chat: Callable[..., AisopodChatMessageHistory],
    inspect: SessionStore,
) -> None:
    """After `compact` (the API or `aisopod-session compact`), `get_items()` and
    `messages` are the summary and the kept turns; the history keeps everything."""
    session = sdk()
    sid = inspect.get_or_create(session.key).id
    inspect.append(sid, _conversation(6))
    inspect.compact(sid, KeepLastTurns(2), lambda entries: "they talked about six things")
    items = run(get(session))
    assert items[0]["role"] == "user"
    assert "they talked about six things" in items[0]["content"]
    assert items[1:] == [
        {"role": role, "content": f"{kind} {n}"}
        for n in (4, 5)
        for role, kind in (("user", "question"), ("assistant", "answer"))
    ]
    assert run(get(session, 2)) == items[-2:]
    messages = chat(session.key).messages
    assert isinstance(messages[0], HumanMessage)
    assert "six things" in str(messages[0].content)
    assert [m.content for m in messages[1:]] == ["question 4", "answer 4", "question 5", "answer 5"]
    assert len(inspect.history(sid, limit=100).entries) == 13


def test_after_a_rewind_the_frameworks_read_the_active_branch(
    sdk: Callable[..., AisopodSession],
    chat: Callable[..., AisopodChatMessageHistory],
    inspect: SessionStore,
) -> None:
    """A rewound and continued conversation reads as its active branch only, whatever
    the window: across the branch point, within one page and over several."""
    session = sdk()
    run(add(session, [user(f"old {n}") for n in range(1, 21)]))  # seqs 1..20
    sid = inspect.get_or_create(session.key).id
    inspect.rewind(sid, 5)
    run(add(session, [user(f"new {n}") for n in range(1, 11)]))  # seqs 21..30, 21 <- 5
    inspect.rewind(sid, 25)
    run(add(session, [user(f"newer {n}") for n in range(1, 4)]))  # seqs 31..33, 31 <- 25
    active = [
        *(f"old {n}" for n in range(1, 6)),
        *(f"new {n}" for n in range(1, 6)),
        *(f"newer {n}" for n in range(1, 4)),
    ]
    assert [item["content"] for item in run(get(session))] == active
    for limit in (1, 3, 4, 8, 9, 12, 13, 40):
        assert [item["content"] for item in run(get(session, limit))] == active[-limit:]
    assert [m.content for m in chat(session.key).messages] == active


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_adapter_compacts_by_its_policy(
    sdk: Callable[..., AisopodSession],
    chat: Callable[..., AisopodChatMessageHistory],
    inspect: SessionStore,
    kind: str,
) -> None:
    """Given a policy and a summariser (sync or async), an adapter compacts after adding
    once the policy's count is reached, and reads the summary afterwards."""
    seen: list[int] = []

    def summarize(entries: Any) -> str:
        seen.append(len(entries))
        return "summary of earlier turns"

    async def asummarize(entries: Any) -> str:
        return summarize(entries)

    policy = CompactionPolicy(after_entries=8, keep=KeepLastTurns(1))
    summarizer = summarize if kind == "sync" else asummarize
    session = sdk(compaction=policy, summarizer=summarizer)
    for n in range(3):
        run(add(session, [user(f"q{n}"), {"role": "assistant", "content": f"a{n}"}]))
    assert seen == []
    run(add(session, [user("q3"), {"role": "assistant", "content": "a3"}]))
    assert seen == [6]
    items = run(get(session))
    assert "summary of earlier turns" in items[0]["content"]
    assert items[1:] == [user("q3"), {"role": "assistant", "content": "a3"}]
    stored = inspect.current(session.key)
    assert stored is not None
    assert stored.compaction_count == 1

    history = chat(compaction=policy, summarizer=summarize)
    if kind == "sync":
        for n in range(4):
            history.add_messages([HumanMessage(f"q{n}"), AIMessage(f"a{n}")])
    else:
        for n in range(4):
            run(history.aadd_messages([HumanMessage(f"q{n}"), AIMessage(f"a{n}")]))
    assert "summary" in str(history.messages[0].content)
    assert [m.content for m in history.messages[1:]] == ["q3", "a3"]
    with pytest.raises(InvalidInput):
        CompactionPolicy(after_entries=0)


class _CompactionAPI(BaseHTTPRequestHandler):
    """The Responses API's compaction endpoint, as a local server: the SDK's wrapper
    sends the conversation and gets its user messages and one compaction item back."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kept = [
            {
                "type": "message",
                "id": f"msg_{n}",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": "kept"}],
            }
            for n, item in enumerate(body["input"])
            if item.get("role") == "user"
        ]
        reply = {
            "id": "cmp_1",
            "object": "response.compaction",
            "created_at": 1,
            "output": [*kept, {"type": "compaction", "id": "cmp_1", "encrypted_content": "x"}],
            "usage": {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 2,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 12,
            },
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_sdks_compaction_wrapper_deletes_nothing(
    sdk: Callable[..., AisopodSession], inspect: SessionStore
) -> None:
    """`OpenAIResponsesCompactionSession` around our session: its rewrite (clear, then
    add the compacted items) works, and the conversation before it stays, archived."""
    server = HTTPServer(("127.0.0.1", 0), _CompactionAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        session = sdk()
        client = AsyncOpenAI(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="x")
        wrapper = OpenAIResponsesCompactionSession(
            session.session_id, underlying_session=session, client=client, model="gpt-4.1"
        )
        items = [user("one"), {"role": "assistant", "content": "1"}, user("two")]

        async def main() -> list[Any]:
            await wrapper.add_items(cast("Any", items))
            await wrapper.run_compaction({"force": True, "compaction_mode": "input"})
            return await wrapper.get_items()

        compacted = run(main())
    finally:
        server.shutdown()
        server.server_close()
    assert [item.get("type") for item in compacted] == ["message", "message", "compaction"]
    sessions = inspect.list(key=session.key).sessions
    assert len(sessions) == 2
    archived = next(s for s in sessions if s.status != "active")
    texts = [e.text for e in inspect.history(archived.id).entries]
    assert texts == ["one", "1", "two"]


# --- one store, every framework -----------------------------------------------------------


def test_a_conversation_moves_between_frameworks(
    sdk: Callable[..., AisopodSession],
    chat: Callable[..., AisopodChatMessageHistory],
    inspect: SessionStore,
) -> None:
    """Items written through the SDK read as LangChain messages and as the store's
    messages; LangChain's read as SDK items; native messages read as both."""
    session = sdk()
    history = chat(session.key)
    run(
        add(
            session,
            [
                {"role": "system", "content": "be brief"},
                user("weather in Paris?"),
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "weather",
                    "arguments": '{"city": "Paris"}',
                },
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"role": "assistant", "content": "Sunny."},
            ],
        )
    )
    history.add_messages(
        [
            HumanMessage("and Rome?"),
            AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Rome"}, "id": "c2"}]),
            ToolMessage("warm", tool_call_id="c2"),
            AIMessage("Warm."),
        ]
    )
    sid = inspect.current(session.key)
    assert sid is not None
    inspect.append(
        sid.id,
        Message.assistant("Anything else?", tool_calls=[ToolCallPart("c3", "noop", {})]),
    )

    messages = history.messages
    assert isinstance(messages[0], SystemMessage)
    assert [type(m).__name__ for m in messages] == [
        "SystemMessage",
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "AIMessage",
    ]
    assert isinstance(messages[2], AIMessage)
    assert messages[2].tool_calls[0]["args"] == {"city": "Paris"}
    assert isinstance(messages[3], ToolMessage)
    assert messages[3].tool_call_id == "c1"

    items = run(get(session))
    assert items[5] == {"role": "user", "content": "and Rome?"}
    assert items[6]["type"] == "function_call"
    assert json.loads(items[6]["arguments"]) == {"city": "Rome"}
    assert items[7] == {"type": "function_call_output", "call_id": "c2", "output": "warm"}
    assert items[8] == {"role": "assistant", "content": "Warm."}
    assert items[9:] == [
        {"role": "assistant", "content": "Anything else?"},
        {"type": "function_call", "call_id": "c3", "name": "noop", "arguments": "{}"},
    ]

    context = inspect.context(sid.id)
    assert [m.role for m in context.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
        "assistant",
    ]
    assert inspect.search("Rome").hits

    # Exported as an OpenClaw transcript, the conversation reads as messages with
    # their roles and tool calls; the frameworks' own items ride along.
    out = io.StringIO()
    assert export_transcript(inspect, sid.id, out) == 10
    lines = [json.loads(line) for line in out.getvalue().splitlines()[1:]]
    assert [line["message"]["role"] for line in lines] == [
        "system",
        "user",
        "assistant",
        "toolResult",
        "assistant",
        "user",
        "assistant",
        "toolResult",
        "assistant",
        "assistant",
    ]
    assert lines[2]["message"]["content"][0]["name"] == "weather"
