"""Realistic conversations to append in tests: turns with tool calls and results."""

from __future__ import annotations

from typing import Any

from aisopod_shared import Message, TokenUsage, ToolCallPart


def turn(n: int, *, tools: int = 1, model: str = "m-1") -> list[Message]:
    """A user message, then `tools` tool calls each answered, then the reply."""
    messages = [Message.user(f"question {n}")]
    for t in range(tools):
        call = f"call-{n}-{t}"
        messages.append(
            Message.assistant(tool_calls=[ToolCallPart(call, "lookup", {"q": n, "t": t})])
        )
        messages.append(Message.tool_result(call, f"result {n}.{t}", tool_name="lookup"))
    messages.append(
        Message.assistant(
            f"answer {n}", usage=TokenUsage(input=100 + n, output=10), model=model, provider="p"
        )
    )
    return messages


def conversation(store: Any, session_id: str, turns: int, *, system: bool = True) -> None:
    """Append a system prompt (optionally) and `turns` turns."""
    if system:
        store.append(session_id, Message.system("You are a careful assistant."))
    for n in range(turns):
        store.append(session_id, turn(n, tools=n % 3))
