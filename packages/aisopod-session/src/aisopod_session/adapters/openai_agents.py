"""The OpenAI Agents SDK's `Session` protocol on the aisopod session store.

A drop-in for the SDK's `SQLiteSession`, on any aisopod store (an SQLite
file, PostgreSQL) and shared by every process that opens it:

    from agents import Agent, Runner
    from aisopod_session.adapters.openai_agents import AisopodSession

    session = AisopodSession("user-42")  # in place of SQLiteSession("user-42")
    result = await Runner.run(agent, "What did I ask you yesterday?", session=session)

The session id is a session key (`agent:main:telegram:direct:123`) or a
plain name, which becomes a key of the agent (`user-42` ->
`agent:main:user-42`; keys are case-insensitive). Every item is an entry of
the key's current session:

- a user, assistant, system or developer message is a message entry with
  that role (developer as system) and its text;
- a tool call (`function_call`, `custom_tool_call`, `computer_call`, shell
  and patch calls, ...) is an assistant message with a `toolCall` part, and
  its output a tool result message with the same call id, holding the
  output's text;
- a `reasoning` item is an assistant message with its summary as thinking;
- anything else (hosted tool calls, MCP items, references, ...) is a
  `custom` entry: kept and returned, but not part of the store's context.

The item itself is kept in the entry exactly as given (`openaiItem`) and
comes back equal, key for key. So the store's search finds what was said
and what tools returned, its context and compaction see a conversation, and
its tool-call pairing keeps calls with their outputs.

Requires the `openai-agents` extra: `pip install 'aisopod-session[openai-agents]'`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, cast

try:
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )
except ImportError as _err:  # pragma: no cover - exercised in a test that hides the SDK
    raise ImportError(
        "aisopod_session.adapters.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'aisopod-session[openai-agents]'",
        name=_err.name,
    ) from _err

from aisopod_session._compaction import Summarizer
from aisopod_session._entries import NativeMessage, NewEntry
from aisopod_session._errors import InvalidPayload
from aisopod_session.adapters._common import (
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
from aisopod_shared import Message, TextPart, ThinkingPart, TokenUsage, ToolCallPart, dumps, loads

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["ITEM_KEY", "AisopodSession"]

ITEM_KEY: Final = "openaiItem"
"""Where an entry keeps its item: a key of the message, or the `customType` of a
`custom` entry (whose `data` is the item)."""

_ROLES: Final = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
}

# Tool calls and their outputs, paired by `call_id` (the SDK's own pairing,
# `agents.run_internal.items._TOOL_CALL_TO_OUTPUT_TYPE`).
_CALLS: Final = frozenset(
    {
        "function_call",
        "custom_tool_call",
        "computer_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
        "tool_search_call",
        "program",
    }
)
_OUTPUTS: Final = frozenset(
    {
        "function_call_output",
        "custom_tool_call_output",
        "computer_call_output",
        "local_shell_call_output",
        "shell_call_output",
        "apply_patch_call_output",
        "tool_search_output",
        "program_output",
    }
)
# What a call's arguments are, for the native tool call (the item keeps them all).
_ARGUMENT_FIELDS: Final = ("arguments", "input", "action", "operation")


class AisopodSession(KeyedConversation):
    """An OpenAI Agents SDK session (the `Session` protocol) kept in an aisopod store.

    Args:
        session_id: a plain id (`"user-42"`: a conversation of `agent_id`, case
            and all, see `conversation_key`) or a session key
            (`agent:<agent>:...`, case-insensitive). An empty or blank id is
            refused.
        store: a `SessionStore`, an `AsyncSessionStore`, a store URL or file
            path, or `None` for the default store (`$AISOPOD_SESSION_DB`, else
            `~/.aisopod/sessions.db`). A URL's store is opened once per process
            and shared by every session given that URL; `close()` lets go of it
            and the last one closes it. A store handed in is never closed here.
        agent_id: the agent a plain id belongs to; by default the agent the
            store handle is scoped to, else `main`.
        session_settings: the SDK's `SessionSettings` (or a dict of them, read
            by the SDK's own coercion: an unknown field is the SDK's
            `TypeError`); its `limit` is how many items `get_items()` returns
            by default.
        keep_tool_pairs: widen `get_items(limit)` so the window never starts
            with a tool output whose call it leaves out (it may then hold more
            than `limit` items). Off by default: the SDK's runner drops such
            outputs itself, and its own sessions return exactly `limit` items.
        compaction: compact the conversation in the store when the policy says
            so, after `add_items` (`CompactionPolicy`); `summarizer` writes the
            summary (entries in, text out, sync or async; by default a summary
            of the dropped turns' headings, no model).

    Behaviour, as the SDK's built-in sessions:

    - `get_items(limit)`: the latest `limit` items in order; `limit` is the
      argument, else `session_settings.limit`, else all; `0` gives none, a
      negative limit all. After a compaction (here or by `aisopod-session
      compact`), the items are what the model should see: the summary (a user
      message) and the items the compaction kept, then the newer ones; the
      whole history stays in the store (`store.history`).
    - `add_items`: appends all the items in one transaction.
    - `pop_item`: returns the latest item and moves the session's leaf back
      before it. Nothing is deleted: the item stays in the history, on an
      abandoned branch (`store.branches`), and the next item starts a new one.
    - `clear_session`: starts a new session for the key; the old one stays
      readable, archived (`store.list(key=session.key)`). So the SDK's
      `OpenAIResponsesCompactionSession` wrapped around this session rewrites
      the conversation without deleting a thing.
    - `store_run_usage(result)`: records a run's token usage in the session.
    - After `close()`, every method raises `StoreUnavailable`.

    Items are read along the active path, so popped items are not returned.
    Entries written by other means (the store's API, another framework's
    adapter, an import) are items too, as their messages map (see the module
    docstring). Each call is one call on the store: on its worker threads, so
    the event loop never waits on the database and items added by concurrent
    coroutines share commits, except that `get_items` of up to 100 items from
    an SQLite file runs on the loop's own thread when it can without waiting
    (`AsyncSessionStore`); the key is looked up on every call, so processes
    sharing the store see each other's items, pops and clears.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        store: StoreLike = None,
        *,
        agent_id: str | None = None,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
        keep_tool_pairs: bool = False,
        compaction: CompactionPolicy | None = None,
        summarizer: Summarizer | None = None,
    ) -> None:
        self.session_settings = (
            coerce_session_settings(
                dict(session_settings)
                if isinstance(session_settings, Mapping)
                else session_settings
            )
            if session_settings is not None
            else SessionSettings()
        )
        self.keep_tool_pairs = bool(keep_tool_pairs)
        KeyedConversation.__init__(
            self, session_id, store, agent_id, compaction=compaction, summarizer=summarizer
        )

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest `limit` items (see the class docstring), oldest first."""
        store = self.open_store()
        resolved = resolve_session_limit(limit, self.session_settings)
        if resolved is not None and resolved < 0:
            resolved = None
        items = await store.read(self._target, resolved, _decode, pairs=self.keep_tool_pairs)
        return cast("list[TResponseInputItem]", items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items to the session, in one transaction.

        Raises:
            InvalidPayload: for an item that is not a JSON object.
            PayloadTooLarge: for an item over the store's size limit.
        """
        store = self.open_store()
        given = list(items)  # read twice should the store refuse them as they are
        appended = await store.add(
            self._target, lambda checked: (_entry_of(item, checked) for item in given)
        )
        await self.compact_after(appended)

    async def store_run_usage(self, result: Any) -> None:
        """Record the token usage of a run (a `RunResult`, or its
        `context_wrapper.usage`) in the session: its totals (`store.get`,
        `aisopod-session show`) and the store's stats count it. Cached input
        tokens count as cache reads; the run's request count is kept beside it.

        Raises:
            InvalidPayload: for something that is neither.
        """
        store = self.open_store()
        entry = _usage_entry(result)
        await store.add(self._target, lambda _: [entry])

    async def pop_item(self) -> TResponseInputItem | None:
        """Take the latest item off the active branch and return it (`None` when empty)."""
        item = await self.open_store().pop(self._key, _decode)
        return cast("TResponseInputItem | None", item)

    async def clear_session(self) -> None:
        """Start the key on a new, empty session; the old one is archived, not deleted."""
        await self.open_store().clear(self._key)


def _entry_of(item: Mapping[str, Any], checked: bool = True) -> Message | NewEntry | NativeMessage:
    """The entry that keeps an SDK item (see the module docstring); `checked` as for
    `keep`.

    Raises:
        InvalidPayload: for an item that is not a JSON object.
    """
    if not isinstance(item, Mapping):
        raise InvalidPayload(f"an item must be a dict, got {type(item).__name__}", field="items")
    # The item itself when it is a dict: it is serialized before the add returns.
    value = item if type(item) is dict else dict(item)
    kind = value.get("type", "message")
    kept = keep(value, ITEM_KEY, checked=checked)
    if kind == "message":
        given = value.get("role")
        role = _ROLES.get(given) if isinstance(given, str) else None
        if role is not None:
            # The commonest item: prepared straight from its texts, no `Message` built.
            texts = texts_of(value.get("content"), ("text", "refusal"))
            return NativeMessage(role, [searchable(text) for text in texts if text], kept)
    elif kind in _CALLS:
        call_id = value.get("call_id")
        if isinstance(call_id, str):
            name = value.get("name")
            part = ToolCallPart(
                searchable(call_id),
                searchable(name if isinstance(name, str) else kind),
                _arguments(value, checked),
            )
            return Message("assistant", (part,), extra=kept)
    elif kind in _OUTPUTS:
        call_id = value.get(
            "call_id", value.get("id") if kind == "local_shell_call_output" else None
        )
        if isinstance(call_id, str):
            output = value.get("result" if kind == "program_output" else "output")
            texts = texts_of(output, ("text", "stdout", "stderr"))
            return Message.tool_result(searchable(call_id), _text_parts(texts), extra=kept)
    elif kind == "reasoning":
        thoughts = [ThinkingPart(searchable(text)) for text in texts_of(value.get("summary"))]
        return Message("assistant", tuple(thoughts), extra=kept)
    return NewEntry("custom", {"customType": ITEM_KEY, **keep(value, "data", checked=checked)})


def _usage_entry(result: Any) -> NewEntry:
    """The usage record of a run (see `AisopodSession.store_run_usage`)."""
    usage = getattr(getattr(result, "context_wrapper", None), "usage", result)
    try:
        cached = usage.input_tokens_details.cached_tokens or 0
        counts = TokenUsage(
            input=max(usage.input_tokens - cached, 0),
            output=usage.output_tokens,
            cache_read=cached,
            total=usage.total_tokens,
        )
        requests = int(usage.requests)
    except (AttributeError, TypeError, ValueError) as err:
        raise InvalidPayload(
            f"expected a RunResult or its usage, got {type(result).__name__}", field="result"
        ) from err
    return NewEntry.usage_record(counts, requests=requests)


def _text_parts(texts: list[str]) -> tuple[TextPart, ...]:
    return tuple(TextPart(searchable(text)) for text in texts if text)


def _arguments(item: Mapping[str, Any], checked: bool) -> dict[str, Any]:
    """A call's arguments as a JSON object, when the store can keep them as they are."""
    for field in _ARGUMENT_FIELDS:
        if field not in item:
            continue
        value = item[field]
        if field == "arguments" and isinstance(value, str):
            try:
                value = loads(value, field=field)
            except ValueError:
                return {}
        arguments = value if isinstance(value, dict) else {field: value}
        return arguments if storable(arguments, checked=checked) else {}
    return {}


def _decode(kind: str, payload: Any) -> list[dict[str, Any]] | None:
    """The items an entry is: the item it keeps, else those its native message maps to
    (see the module docstring); a compaction is its summary, as a user message."""
    if kind == "message":
        message = payload.get("message")
        try:
            value = message[ITEM_KEY]
        except (KeyError, TypeError):  # not a dict, or no item in it
            value = None
        if type(value) is dict:  # the commonest entry (this runs for every one read)
            return [value]
        if value is None:  # kept encoded, or not an item: the slow way
            value = restore(message, ITEM_KEY)
            if is_missing(value):
                return _items_of(message) if isinstance(message, Mapping) else None
    elif kind == "custom":
        if payload.get("customType") != ITEM_KEY:
            return None
        value = restore(payload, "data")
    else:
        text = shown_text(kind, payload)
        return [{"role": "user", "content": text}] if text else None
    return [value] if isinstance(value, dict) else None


def _items_of(message: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The SDK items of a native message: user, system and assistant text, tool calls
    and their results (thinking and images have no item of their own and are left out)."""
    role = message.get("role")
    content = message.get("content")
    text = "\n".join(native_texts(content))
    if role in ("user", "system"):
        return [{"role": role, "content": text}] if text else None
    if role == "assistant":
        items: list[dict[str, Any]] = [{"role": "assistant", "content": text}] if text else []
        for call in native_calls(content):
            items.append(
                {
                    "type": "function_call",
                    "call_id": call["id"],
                    "name": call["name"],
                    "arguments": dumps(call["arguments"]).decode(),
                }
            )
        return items or None
    if role == "toolResult" and isinstance(message.get("toolCallId"), str):
        return [{"type": "function_call_output", "call_id": message["toolCallId"], "output": text}]
    return None
