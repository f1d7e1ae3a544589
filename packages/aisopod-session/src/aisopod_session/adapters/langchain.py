"""LangChain's `BaseChatMessageHistory` on the aisopod session store.

A drop-in for `SQLChatMessageHistory` and friends, e.g. behind
`RunnableWithMessageHistory` (the class itself is a history factory, on the
default store; `lambda session_id: AisopodChatMessageHistory(session_id, url)`
names another):

    from aisopod_session.adapters.langchain import AisopodChatMessageHistory

    chain_with_history = RunnableWithMessageHistory(
        chain,
        AisopodChatMessageHistory,
        input_messages_key="question",
        history_messages_key="history",
    )

The session id is a session key (`agent:main:slack:channel:c1`) or a plain
name, which becomes a key of the agent (`user-42` -> `agent:main:user-42`;
keys are case-insensitive). Every LangChain message is a message entry of
the key's current session with its native role (human -> user, ai ->
assistant with its tool calls and token usage, system, tool -> a tool result
with its call id) and its text; messages without a native equivalent are
`custom` entries. The message itself is kept in the entry exactly as
`messages_to_dict` writes it (`langchainMessage`) and comes back equal. So
the store's search, context, compaction and tool-call pairing understand the
conversation.

`clear()` starts a new session for the key; the old one stays readable,
archived. Messages are read along the active path: entries a rewind left
behind are not returned, nor are entries appended by other means.

Requires the `langchain` extra: `pip install 'aisopod-session[langchain]'`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import BaseMessage, message_to_dict, messages_from_dict
except ImportError as _err:  # pragma: no cover - exercised in a test that hides LangChain
    raise ImportError(
        "aisopod_session.adapters.langchain needs LangChain: "
        "pip install 'aisopod-session[langchain]'",
        name=_err.name,
    ) from _err

from aisopod_session._compaction import Summarizer
from aisopod_session._entries import NativeMessage, NewEntry
from aisopod_session._errors import InvalidPayload
from aisopod_session.adapters._common import (
    Build,
    CompactionPolicy,
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
    texts_of,
)
from aisopod_shared import InvalidInput, Message, TextPart, TokenUsage, ToolCallPart

__all__ = ["MESSAGE_KEY", "AisopodChatMessageHistory"]

MESSAGE_KEY: Final = "langchainMessage"
"""Where an entry keeps its LangChain message (`message_to_dict`'s form): a key of
the message, or the `customType` of a `custom` entry (whose `data` is it)."""

_ROLES: Final = {
    "human": "user",
    "HumanMessageChunk": "user",
    "ai": "assistant",
    "AIMessageChunk": "assistant",
    "system": "system",
    "SystemMessageChunk": "system",
}
_CHAT_ROLES: Final = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "system": "system",
}


class AisopodChatMessageHistory(KeyedConversation, BaseChatMessageHistory):
    """A LangChain chat message history kept in an aisopod store.

    Args:
        session_id: a session key (`agent:<agent>:...`) or a plain name, made
            into a key of `agent_id` (`keys.request_key`).
        store: a `SessionStore`, an `AsyncSessionStore`, a store URL or file
            path, or `None` for the default store (`$AISOPOD_SESSION_DB`, else
            `~/.aisopod/sessions.db`). A URL's store is opened once per process
            and shared by every history given that URL; `close()` lets go of it
            and the last one closes it. A store handed in is never closed here.
        agent_id: the agent a plain name belongs to; by default the agent the
            store handle is scoped to, else `main`.

    The sync methods run on the calling thread; the async ones run the
    store's work off the event loop through an async store (the one handed
    in, else one over the store or URL given), so messages added by
    concurrent coroutines share commits. `add_messages` appends all its
    messages in one transaction.
    """

    def __init__(
        self,
        session_id: str,
        store: StoreLike = None,
        *,
        agent_id: str | None = None,
        compaction: CompactionPolicy | None = None,
        summarizer: Summarizer | None = None,
    ) -> None:
        KeyedConversation.__init__(
            self, session_id, store, agent_id, compaction=compaction, summarizer=summarizer
        )

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The messages of the key's current session along its active path, in order, as
        the model should see them: after a compaction, its summary (a human message)
        and the messages it kept, then the newer ones."""
        return _messages(self.open_store().read_now(self._target, None, _decode, pairs=False))

    async def aget_messages(self) -> list[BaseMessage]:
        """`messages`, without blocking the event loop."""
        store = self.open_store()
        return _messages(await store.read(self._target, None, _decode, pairs=False))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append messages to the key's current session (made if need be), in one write;
        then compact, when a compaction policy is set and says so."""
        store = self.open_store()
        self.compact_after_now(store.add_now(self._target, _build(messages)))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """`add_messages`, without blocking the event loop."""
        store = self.open_store()
        await self.compact_after(await store.add(self._target, _build(messages)))

    def clear(self) -> None:
        """Start the key on a new, empty session; the old one is archived, not deleted."""
        self.open_store().clear_now(self._key)

    async def aclear(self) -> None:
        """`clear`, without blocking the event loop."""
        await self.open_store().clear(self._key)


def _messages(data: list[dict[str, Any]]) -> list[BaseMessage]:
    return messages_from_dict(data)


def _build(messages: Sequence[BaseMessage]) -> Build:
    given = list(messages)  # read twice should the store refuse them as they are
    return lambda checked: (_entry_of(m, checked) for m in given)


def _entry_of(message: BaseMessage, checked: bool = True) -> Message | NewEntry | NativeMessage:
    """The entry that keeps a LangChain message (see the module docstring); `checked`
    as for `keep`.

    Raises:
        InvalidPayload: for something that is not a LangChain message, or
            whose content is not JSON data.
    """
    if not isinstance(message, BaseMessage):
        raise InvalidPayload(
            f"expected a LangChain message, got {type(message).__name__}", field="messages"
        )
    data = message_to_dict(message)
    kind, body = data["type"], data["data"]
    kept = keep(data, MESSAGE_KEY, checked=checked)
    found = [searchable(text) for text in texts_of(body.get("content")) if text]
    role = _ROLES.get(kind)
    if role is None and kind in ("chat", "ChatMessageChunk"):
        role = _CHAT_ROLES.get(body.get("role"))
    if role == "assistant":
        calls = tuple(_tool_calls(body.get("tool_calls"), checked))
        usage = _usage(body)
        if not calls and usage is None:
            return NativeMessage(role, found, kept)
        texts = tuple(TextPart(text) for text in found)
        return Message("assistant", texts + calls, usage=usage, extra=kept)
    if role is not None:
        # Text alone: prepared straight from its texts, no `Message` built.
        return NativeMessage(role, found, kept)
    call_id = body.get("tool_call_id")
    if kind in ("tool", "ToolMessageChunk") and isinstance(call_id, str):
        texts = tuple(TextPart(text) for text in found)
        return Message.tool_result(
            searchable(call_id), texts, is_error=body.get("status") == "error", extra=kept
        )
    return NewEntry("custom", {"customType": MESSAGE_KEY, **keep(data, "data", checked=checked)})


def _tool_calls(calls: object, checked: bool) -> list[ToolCallPart]:
    if not isinstance(calls, list):
        return []
    parts = []
    for call in calls:
        if not isinstance(call, Mapping):
            continue
        call_id, name, args = call.get("id"), call.get("name"), call.get("args")
        if isinstance(call_id, str) and isinstance(name, str):
            arguments = args if isinstance(args, dict) and storable(args, checked=checked) else {}
            parts.append(ToolCallPart(searchable(call_id), searchable(name), arguments))
    return parts


def _usage(body: Mapping[str, Any]) -> TokenUsage | None:
    """LangChain's `usage_metadata` as the store counts tokens (input without cache)."""
    usage = body.get("usage_metadata")
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("input_token_details")
    details = details if isinstance(details, Mapping) else {}
    try:
        read = details.get("cache_read") or 0
        write = details.get("cache_creation") or 0
        counts: dict[str, Any] = {
            "input": max((usage.get("input_tokens") or 0) - read - write, 0),
            "output": usage.get("output_tokens") or 0,
            "cache_read": read,
            "cache_write": write,
        }
        if usage.get("total_tokens") is not None:
            counts["total"] = usage["total_tokens"]
        return TokenUsage(**counts)
    except (InvalidInput, TypeError):
        return None


def _decode(kind: str, payload: Any) -> list[dict[str, Any]] | None:
    """The `messages_to_dict` form of an entry: the message it keeps, else the one its
    native message maps to; a compaction is its summary, as a human message."""
    if kind == "message":
        message = payload.get("message")
        value = restore(message, MESSAGE_KEY)
        if is_missing(value):
            found = _dict_of(message) if isinstance(message, Mapping) else None
            return [found] if found is not None else None
    elif kind == "custom":
        if payload.get("customType") != MESSAGE_KEY:
            return None
        value = restore(payload, "data")
    else:
        text = shown_text(kind, payload)
        return [{"type": "human", "data": {"content": text}}] if text else None
    if not isinstance(value, dict) or "type" not in value:
        return None
    return [value]


def _dict_of(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `messages_to_dict` form of a native message: human, ai (with its tool
    calls), system and tool messages, with their text."""
    role = message.get("role")
    content = message.get("content")
    text = "\n".join(native_texts(content))
    if role in ("user", "system"):
        return {"type": "human" if role == "user" else "system", "data": {"content": text}}
    if role == "assistant":
        calls = [
            {"name": c["name"], "args": c["arguments"], "id": c["id"], "type": "tool_call"}
            for c in native_calls(content)
        ]
        if not text and not calls:
            return None
        return {"type": "ai", "data": {"content": text, "tool_calls": calls}}
    call_id = message.get("toolCallId")
    if role == "toolResult" and isinstance(call_id, str):
        data: dict[str, Any] = {"content": text, "tool_call_id": call_id}
        if message.get("isError") is True:
            data["status"] = "error"
        return {"type": "tool", "data": data}
    return None
