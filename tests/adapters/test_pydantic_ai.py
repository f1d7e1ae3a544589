"""The Pydantic AI adapter: an agent's message history in the session store.

A real `Agent` on Pydantic AI's own test models (no network), on SQLite and
PostgreSQL, one store per backend for the module (each test its own
conversation).
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic_ai import Agent, AgentRunResult, ModelRetry
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel

from aisopod_session import (
    InvalidInput,
    InvalidPayload,
    Message,
    PayloadTooLarge,
    SessionStore,
    open_store,
)
from aisopod_session.adapters.openai_agents import AisopodSession
from aisopod_session.adapters.pydantic_ai import MESSAGE_KEY, AisopodMessageHistory
from aisopod_session.transfer import export_transcript
from tests.adapters.conftest import BACKENDS
from tests.session.postgres_schema import temporary_schema


@pytest.fixture(name="store", scope="module", params=BACKENDS)
def store_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionStore]:
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("pydantic_ai") / "sessions.db"
        with open_store(f"sqlite:///{path}") as store:
            yield store
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        with (
            temporary_schema(dsn, f"pai_{uuid.uuid4().hex[:12]}") as url,
            open_store(url) as store,
        ):
            yield store


@pytest.fixture(name="history")
def history_fixture(store: SessionStore) -> AisopodMessageHistory:
    return AisopodMessageHistory(f"Chat-{uuid.uuid4().hex[:10]}", store)


def run_agent(agent: Agent[None, str], prompt: str, **kwargs: Any) -> AgentRunResult[str]:
    """`agent.run` to its end, on an event loop closed afterwards (`run_sync` leaves
    one open, which strict warnings report)."""
    return asyncio.run(agent.run(prompt, **kwargs))


def weather_agent() -> Agent[None, str]:
    """An agent whose model calls its two tools in one response, then answers."""

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        if any(p.part_kind == "tool-return" for p in last.parts):
            returns = [p.content for p in last.parts if p.part_kind == "tool-return"]
            return ModelResponse(parts=[TextPart(f"so: {' and '.join(map(str, returns))}")])
        n = len(messages)
        return ModelResponse(
            parts=[
                ToolCallPart("weather", {"city": "Oslo"}, tool_call_id=f"w{n}"),
                ToolCallPart("time", {"zone": "CET"}, tool_call_id=f"t{n}"),
            ]
        )

    agent: Agent[None, str] = Agent(FunctionModel(model), system_prompt="be brief")

    @agent.tool_plain
    def weather(city: str) -> str:
        return f"sunny in {city}"

    @agent.tool_plain
    def time(zone: str) -> str:
        return f"noon {zone}"

    return agent


def test_runs_continue_the_conversation(history: AisopodMessageHistory) -> None:
    """Several runs with tool calls: each sees the whole history, which round-trips."""
    agent = weather_agent()
    everything: list[ModelMessage] = []
    for prompt in ["weather?", "and now?", "once more"]:
        result = run_agent(agent, prompt, message_history=history.load())
        assert result.all_messages()[: len(everything)] == everything
        history.append(result.new_messages())
        everything = result.all_messages()
        assert history.load() == everything
    assert "sunny in Oslo" in result.output


def test_async_runs(store: SessionStore) -> None:
    history = AisopodMessageHistory(f"a-{uuid.uuid4().hex[:8]}", store)
    agent: Agent[None, str] = Agent(TestModel())

    async def go() -> None:
        for prompt in ["one", "two"]:
            result = await agent.run(prompt, message_history=await history.aload())
            await history.aappend(result.new_messages())
        assert await history.aload() == result.all_messages()

    asyncio.run(go())


def test_a_retried_append_adds_nothing(history: AisopodMessageHistory, store: SessionStore) -> None:
    result = run_agent(weather_agent(), "weather?")
    first = history.append(result.new_messages())
    again = history.append(result.new_messages())
    assert [e.id for e in again] == [e.id for e in first]
    assert history.load() == result.all_messages()
    session = store.current(history.key)
    assert session is not None
    assert session.entry_count == len(first)


def test_messages_round_trip_through_the_type_adapter(history: AisopodMessageHistory) -> None:
    """Bytes, odd text, every field: as Pydantic AI's own type adapter gives them back."""
    from pydantic_ai.messages import BinaryContent

    messages: list[ModelMessage] = [
        ModelRequest(
            parts=[
                UserPromptPart(
                    ["look \x00 here", BinaryContent(b"\x00\xff", media_type="image/png")]
                )
            ]
        ),
        ModelResponse(parts=[TextPart("odd \u2028 text")], model_name="m"),
        ModelResponse(parts=[]),
    ]
    history.append(messages)
    loaded = history.load()
    # Pydantic AI's own trip (which reads an image back as a BinaryImage).
    assert loaded == ModelMessagesTypeAdapter.validate_json(
        ModelMessagesTypeAdapter.dump_json(messages)
    )
    assert ModelMessagesTypeAdapter.dump_json(loaded) == ModelMessagesTypeAdapter.dump_json(
        messages
    )


def test_a_window_never_starts_with_an_orphan_tool_return(history: AisopodMessageHistory) -> None:
    result = run_agent(weather_agent(), "weather?")
    history.append(result.new_messages())
    everything = result.all_messages()
    # [request(system, user), response(2 calls), request(2 returns), response(text)]
    assert [m.kind for m in everything] == ["request", "response", "request", "response"]
    window = history.load(2)
    assert window == everything[1:]
    assert history.load(1) == everything[-1:]
    assert history.load(0) == []


def test_the_store_sees_the_conversation(
    history: AisopodMessageHistory, store: SessionStore
) -> None:
    """Text, tool calls and returns are native messages: context, search, export."""
    result = run_agent(weather_agent(), "weather in oslo?")
    history.append(result.new_messages())
    session = store.current(history.key)
    assert session is not None
    roles = [m.role for m in store.context(session.id).messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert store.search("sunny", session_id=session.id).hits
    out = io.StringIO()
    export_transcript(store, session.id, out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sum(MESSAGE_KEY in (line.get("message") or {}) for line in lines) == 4


def test_other_adapters_messages_are_read(store: SessionStore) -> None:
    """A conversation another framework (or the store's API) wrote continues here."""
    name = f"mixed-{uuid.uuid4().hex[:8]}"
    sdk = AisopodSession(name, store)
    asyncio.run(sdk.add_items([{"role": "user", "content": "hi from the sdk"}]))
    history = AisopodMessageHistory(name, store)
    session = store.current(history.key)
    assert session is not None
    store.append(session.id, Message.assistant("hello back"))
    loaded = history.load()
    assert len(loaded) == 2
    assert isinstance(loaded[0], ModelRequest)
    assert isinstance(loaded[0].parts[0], UserPromptPart)
    assert loaded[0].parts[0].content == "hi from the sdk"
    assert isinstance(loaded[1], ModelResponse)
    assert loaded[1].parts == [TextPart("hello back")]
    result = run_agent(Agent(TestModel()), "go on", message_history=loaded)
    history.append(result.new_messages())
    assert len(history.load()) == 4


@pytest.mark.parametrize(
    "bad",
    [
        [{"kind": "request", "parts": []}],
        "not a list",
        [ModelRequest(parts=[UserPromptPart("ok")]), 42],
        # What Pydantic AI's own type adapter cannot write either.
        [ModelResponse(parts=[TextPart("\ud800")])],
    ],
)
def test_bad_input_changes_nothing(history: AisopodMessageHistory, bad: Any) -> None:
    with pytest.raises(InvalidPayload):
        history.append(bad)
    assert history.load() == []


def test_a_bad_limit_is_refused(history: AisopodMessageHistory) -> None:
    with pytest.raises(InvalidInput):
        history.load(-1)


def retrying_agent() -> Agent[None, str]:
    """An agent whose tool asks for a retry the first time it is called in a run."""
    calls: list[int] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        if any(retried(p) is False for p in last.parts):
            return ModelResponse(parts=[TextPart("done")])
        return ModelResponse(
            parts=[ToolCallPart("lookup", {"q": "x"}, tool_call_id=f"c{len(messages)}")]
        )

    agent: Agent[None, str] = Agent(FunctionModel(model))

    @agent.tool_plain(retries=2)
    def lookup(q: str) -> str:
        calls.append(1)
        if len(calls) % 2 == 1:
            raise ModelRetry("try again")
        return f"found {q}"

    return agent


def retried(part: object) -> bool | None:
    """Whether a tool's answer asks the model to retry (`None`: not a tool's answer).
    Pydantic AI writes a retry as a `RetryPromptPart`, or (newer versions) as a
    `ToolReturnPart` whose outcome is `retried`."""
    if isinstance(part, RetryPromptPart):
        return part.tool_name is not None
    if isinstance(part, ToolReturnPart):
        return getattr(part, "outcome", None) == "retried"
    return None


def orphans(window: list[ModelMessage]) -> set[str]:
    """The tool call ids answered in `window` (returns, retries) that it does not call."""
    called = {
        p.tool_call_id
        for m in window
        if isinstance(m, ModelResponse)
        for p in m.parts
        if isinstance(p, ToolCallPart)
    }
    answered = {
        p.tool_call_id
        for m in window
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart | RetryPromptPart) and p.tool_name
    }
    return answered - called


def test_no_window_starts_with_a_tool_answer(history: AisopodMessageHistory) -> None:
    """Over several runs with tool calls and retries, every window of the last N
    messages holds the call of each tool return and retry in it, and continues."""
    agent = retrying_agent()
    for prompt in ["first", "second"]:
        result = run_agent(agent, prompt, message_history=history.load())
        history.append(result.new_messages())
    everything = result.all_messages()
    assert any(retried(p) for m in everything for p in m.parts)
    for n in range(1, len(everything) + 1):
        window = history.load(n)
        assert len(window) >= n
        assert window == everything[-len(window) :]
        assert not orphans(window), n
    shortest = history.load(1)
    result = run_agent(agent, "third", message_history=shortest)
    assert result.output == "done"


def test_oversized_and_unknown_input_change_nothing(
    history: AisopodMessageHistory, store: SessionStore
) -> None:
    with pytest.raises(PayloadTooLarge):
        history.append([ModelRequest(parts=[UserPromptPart("x" * (17 * 1024 * 1024))])])
    assert history.load() == []
    for bad_id in ["", "   ", 42]:
        with pytest.raises(InvalidInput):
            AisopodMessageHistory(bad_id, store)  # type: ignore[arg-type]
