"""Code that runs in other processes (spawned): framework runs on a shared store.

Each worker waits for its turn (`wait`), runs, reports on `out` (what the
model was shown, or the error) and lets the next process go (`done`).
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

Step = tuple[str, ...]
"""A scripted model step: ("call", tool name, JSON arguments, call id) or ("say", text)."""


def describe_item(item: Any) -> str:
    """An SDK input item in a few words: `kind:text`."""
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        if isinstance(content, list):
            content = " ".join(str(part.get("text", "")) for part in content)
        return f"{item.get('role')}:{content}"
    if kind == "function_call":
        return f"function_call:{item.get('name')}"
    if kind == "function_call_output":
        return f"function_call_output:{item.get('output')}"
    return str(kind)


def agents_turns(
    url: str,
    session_id: str,
    prompts: list[str],
    steps: list[list[Step]],
    wait: Any,
    done: Any,
    out: Any,
) -> None:
    """Run one `Runner.run` per prompt on `AisopodSession(session_id, url)` with a
    model that answers from `steps`; report each model call's input, described."""
    try:
        if wait is not None and not wait.wait(120):
            raise TimeoutError("the other process never finished")
        out.put(("ok", asyncio.run(_agents_turns(url, session_id, prompts, steps))))
    except BaseException:
        out.put(("error", traceback.format_exc()))
    finally:
        if done is not None:
            done.set()


async def _agents_turns(
    url: str, session_id: str, prompts: list[str], steps: list[list[Step]]
) -> list[list[str]]:
    import json

    from agents import Agent, Runner, function_tool, set_tracing_disabled
    from agents.testing import ScriptedModel, assistant_message, function_call

    from aisopod_session.adapters.openai_agents import AisopodSession

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    script = [
        [
            function_call(step[1], json.loads(step[2]), call_id=step[3])
            if step[0] == "call"
            else assistant_message(step[1])
            for step in response
        ]
        for response in steps
    ]
    model = ScriptedModel(script)
    agent = Agent(name="weather", model=model, tools=[get_weather])
    session = AisopodSession(session_id, url)
    try:
        for prompt in prompts:
            await Runner.run(agent, prompt, session=session)
    finally:
        session.close()
    model.assert_complete()
    return [[describe_item(item) for item in call.input] for call in model.calls]


def langchain_turn(url: str, session_id: str, question: str, answer: str, out: Any) -> None:
    """One turn of a LangChain runnable with message history; report the prompt."""
    try:
        out.put(("ok", _langchain_turn(url, session_id, question, answer)))
    except BaseException:
        out.put(("error", traceback.format_exc()))


def _langchain_turn(url: str, session_id: str, question: str, answer: str) -> list[str]:
    from tests.adapters.chains import history_chain

    chain, prompts, close = history_chain(url, [answer])
    try:
        chain.invoke({"question": question}, config={"configurable": {"session_id": session_id}})
    finally:
        close()
    return prompts[-1]
