"""Pydantic AI message history, kept in an aisopod store by conversation id.

```python
from pydantic_ai import Agent
from aisopod_session.adapters.pydantic_ai import AisopodMessageHistory

history = AisopodMessageHistory("user-42")
result = agent.run_sync("Hello", message_history=history.load())
history.append(result.new_messages())
```

`load()` / `aload()` give the conversation's messages (the last `limit`, by
default all), ready for `message_history=`; `append()` / `aappend()` add a
run's new messages in one transaction. An append is idempotent: the same
messages appended again (a retried call after a lost reply) add nothing.

Each `ModelMessage` is kept verbatim, as Pydantic AI's own
`ModelMessagesTypeAdapter` writes it to JSON (bytes as base64), and comes back
equal. It is also the store's native messages: a request's system prompts a
system message, its user prompts a user message, each tool return (and each
retry aimed at a tool call) a tool result; a response is an assistant
message with its text, thinking and tool calls. The first of these keeps the
`ModelMessage`; a message with none is a `custom` entry. So `context()`,
search, export and the other adapters see the conversation, and a window of
the last N messages is widened back to the tool call of any tool return it
starts with (Pydantic AI's model APIs refuse a return without its call).
Native messages another adapter wrote are read as `ModelRequest`s and
`ModelResponse`s.

Requires the `pydantic-ai` extra: `pip install 'aisopod-session[pydantic-ai]'`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

try:
    from pydantic_ai.messages import (
        ModelMessage,
        ModelMessagesTypeAdapter,
        ModelRequest,
        ModelResponse,
        SystemPromptPart,
        TextPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )
except ImportError as _err:  # pragma: no cover - exercised in a test that hides the package
    raise ImportError(
        "aisopod_session.adapters.pydantic_ai needs Pydantic AI: "
        "pip install 'aisopod-session[pydantic-ai]'",
        name=_err.name,
    ) from _err

import attrs
import orjson
from pydantic import ValidationError

from aisopod_session._async import submit_append
from aisopod_session._entries import NewEntry
from aisopod_session._errors import InvalidPayload
from aisopod_session._model import Entry
from aisopod_session._store import engine_of
from aisopod_session.adapters._common import (
    KeyedConversation,
    StoreLike,
    is_missing,
    keep,
    native_calls,
    native_texts,
    restore,
    searchable,
    shown_text,
    storable,
)
from aisopod_shared import InvalidInput, Message, TokenUsage
from aisopod_shared import TextPart as NativeText
from aisopod_shared import ThinkingPart as NativeThinking
from aisopod_shared import ToolCallPart as NativeCall

__all__ = ["MESSAGE_KEY", "AisopodMessageHistory"]

MESSAGE_KEY: Final = "pydanticAiMessage"
"""Where an entry keeps its `ModelMessage`: a key of the native message, or the
`customType` of a `custom` entry (whose `data` is the message)."""

_PART_KEY: Final = "pydanticAiPart"
"""Marks the native messages after the first of one `ModelMessage`."""


class AisopodMessageHistory(KeyedConversation):
    """A Pydantic AI conversation's message history in an aisopod store.

    Args:
        conversation_id: a plain id (`"user-42"`: a conversation of `agent_id`,
            case and all) or a session key (`agent:<agent>:...`).
        store: a `SessionStore`, an `AsyncSessionStore`, a store URL or file
            path, or `None` for the default store (`$AISOPOD_SESSION_DB`, else
            `~/.aisopod/sessions.db`); a URL's store is shared in the process
            and let go of by `close()`.
        agent_id: the agent a plain id belongs to; by default the agent the
            store handle is scoped to, else `main`.

    The key is looked up on every call, so processes sharing the store see
    each other's messages; each async call is one hand-off to the store's
    worker threads.
    """

    def __init__(
        self, conversation_id: str, store: StoreLike = None, *, agent_id: str | None = None
    ) -> None:
        KeyedConversation.__init__(self, conversation_id, store, agent_id)

    def load(self, limit: int | None = None) -> list[ModelMessage]:
        """The conversation's last `limit` messages (all for `None`), oldest first,
        widened back to the call of a tool return it would start with."""
        store = self.open_store()
        return store.read_now(self._target, _limit(limit), _decode, pairs=True)

    async def aload(self, limit: int | None = None) -> list[ModelMessage]:
        """`load`, without blocking the event loop."""
        store = self.open_store()
        return await store.read(self._target, _limit(limit), _decode, pairs=True)

    def append(self, messages: Sequence[ModelMessage]) -> tuple[Entry, ...]:
        """Add a run's new messages (`result.new_messages()`) in one transaction; the
        same messages again add nothing. Returns the entries (those of the first
        call, for a repeat).

        Raises:
            InvalidPayload: for something that is not a list of `ModelMessage`s.
            PayloadTooLarge: for a message over the store's size limit.
        """
        store = self.open_store()
        request = self._request(messages)
        if request is None:
            return ()
        return engine_of(store.sync).run_append(request)

    async def aappend(self, messages: Sequence[ModelMessage]) -> tuple[Entry, ...]:
        """`append`, without blocking the event loop (concurrent appends share commits)."""
        store = self.open_store()
        request = self._request(messages)
        if request is None:
            return ()
        return await submit_append(store.async_store, request)

    def clear(self) -> None:
        """Start the conversation afresh; the old session stays, archived."""
        self.open_store().clear_now(self._key)

    def _request(self, messages: Sequence[ModelMessage]) -> Any:
        if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
            raise InvalidPayload("must be a list of ModelMessages", field="messages")
        if not messages:
            return None
        for message in messages:
            if not isinstance(message, ModelRequest | ModelResponse):
                raise InvalidPayload(
                    f"must be ModelRequest or ModelResponse, got {type(message).__name__}",
                    field="messages",
                )
        try:
            data = ModelMessagesTypeAdapter.dump_json(list(messages))
        except (ValueError, TypeError) as err:
            raise InvalidPayload(f"not JSON data: {err}", field="messages") from err
        values = orjson.loads(data) if b"NaN" not in data else json.loads(data)
        entries: list[Message | NewEntry] = []
        for value in values:
            entries.extend(_entries_of(value))
        key = "pydantic-ai:" + hashlib.sha256(data).hexdigest()
        engine = engine_of(self.open_store().sync)
        return engine.prepare_append("", entries, key=self._target, idempotency_key=key)


def _limit(limit: object) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInput("must be a non-negative integer or None", field="limit")
    return limit


# --- writing ---------------------------------------------------------------------------


def _entries_of(value: dict[str, Any]) -> list[Message | NewEntry]:
    """The entries that keep one `ModelMessage` (as JSON data; see the module docstring)."""
    natives = _natives(value)
    kept = keep(value, MESSAGE_KEY)
    if not natives:
        return [NewEntry("custom", {"customType": MESSAGE_KEY, **keep(value, "data")})]
    first, *rest = natives
    out: list[Message | NewEntry] = [_with(first, kept)]
    out.extend(_with(native, {_PART_KEY: index}) for index, native in enumerate(rest, 1))
    return out


def _with(message: Message, extra: Mapping[str, Any]) -> Message:
    """`message` with `extra` in place of its own (every other field kept)."""
    return attrs.evolve(message, extra=dict(extra))


def _natives(value: Mapping[str, Any]) -> list[Message]:
    parts = value.get("parts")
    parts = [p for p in parts if isinstance(p, Mapping)] if isinstance(parts, list) else []
    if value.get("kind") == "response":
        content: list[NativeText | NativeThinking | NativeCall] = []
        for part in parts:
            kind = part.get("part_kind")
            if kind == "text" and isinstance(part.get("content"), str) and part["content"]:
                content.append(NativeText(searchable(part["content"])))
            elif kind == "thinking" and isinstance(part.get("content"), str) and part["content"]:
                content.append(NativeThinking(searchable(part["content"])))
            elif kind == "tool-call":
                content.append(
                    NativeCall(
                        searchable(str(part.get("tool_call_id") or "")),
                        searchable(str(part.get("tool_name") or "")),
                        _arguments(part.get("args")),
                    )
                )
        if not content:
            return []
        return [Message("assistant", tuple(content), usage=_usage(value.get("usage")))]
    system = [p["content"] for p in parts if p.get("part_kind") == "system-prompt"]
    users = [_text(p.get("content")) for p in parts if p.get("part_kind") == "user-prompt"]
    out: list[Message] = []
    if any(system):
        out.append(
            Message("system", searchable("\n".join(s for s in system if isinstance(s, str))))
        )
    for part in parts:
        kind = part.get("part_kind")
        call_id = part.get("tool_call_id")
        if kind == "tool-return" or (kind == "retry-prompt" and call_id and part.get("tool_name")):
            out.append(
                Message.tool_result(
                    searchable(str(call_id or "")),
                    searchable(_text(part.get("content"))),
                    tool_name=searchable(str(part.get("tool_name") or "")) or None,
                    is_error=kind == "retry-prompt",
                )
            )
    if any(users):
        out.append(Message("user", searchable("\n".join(u for u in users if u))))
    return out


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(item for item in content if isinstance(item, str))
    try:
        return json.dumps(content, ensure_ascii=False)
    except (TypeError, ValueError):
        return ""


def _arguments(args: object) -> dict[str, Any]:
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return {}
    return args if isinstance(args, dict) and storable(args) else {}


def _usage(usage: object) -> TokenUsage | None:
    if not isinstance(usage, Mapping):
        return None
    counts = {k: v for k, v in usage.items() if isinstance(v, int) and not isinstance(v, bool)}
    cached = counts.get("cache_read_tokens", 0)
    prompt = counts.get("input_tokens", 0)
    output = counts.get("output_tokens", 0)
    if not (prompt or output):
        return None
    return TokenUsage(
        input=max(prompt - cached, 0),
        output=output,
        cache_read=cached,
        cache_write=counts.get("cache_write_tokens", 0),
        total=prompt + output,
    )


# --- reading ---------------------------------------------------------------------------


def _decode(kind: str, payload: Any) -> list[ModelMessage] | None:
    """The messages an entry is: the `ModelMessage` it keeps, else what its native
    message maps to; a compaction's summary is a user prompt."""
    if kind == "message":
        message = payload.get("message")
        value = restore(message, MESSAGE_KEY)
        if is_missing(value):
            if isinstance(message, Mapping) and _PART_KEY not in message:
                return _from_native(message)
            return None
    elif kind == "custom":
        if payload.get("customType") != MESSAGE_KEY:
            return None
        value = restore(payload, "data")
    else:
        text = shown_text(kind, payload)
        return [ModelRequest(parts=[UserPromptPart(text)])] if text else None
    if not isinstance(value, dict):
        return None
    try:
        data = orjson.dumps([value])
    except TypeError:  # NaN or a huge integer, kept encoded
        data = json.dumps([value]).encode()
    try:
        return ModelMessagesTypeAdapter.validate_json(data)
    except ValidationError:  # written by another version, no longer valid: left out
        return None


def _from_native(message: Mapping[str, Any]) -> list[ModelMessage] | None:
    role = message.get("role")
    content = message.get("content")
    text = "\n".join(native_texts(content))
    if role == "user" and text:
        return [ModelRequest(parts=[UserPromptPart(text)])]
    if role == "system" and text:
        return [ModelRequest(parts=[SystemPromptPart(text)])]
    if role == "assistant":
        parts: list[Any] = [TextPart(text)] if text else []
        parts.extend(
            ToolCallPart(call["name"], call["arguments"], tool_call_id=call["id"])
            for call in native_calls(content)
        )
        return [ModelResponse(parts=parts)] if parts else None
    if role == "toolResult" and isinstance(message.get("toolCallId"), str):
        name = message.get("toolName")
        return [
            ModelRequest(
                parts=[
                    ToolReturnPart(
                        name if isinstance(name, str) else "",
                        text,
                        tool_call_id=message["toolCallId"],
                    )
                ]
            )
        ]
    return None
