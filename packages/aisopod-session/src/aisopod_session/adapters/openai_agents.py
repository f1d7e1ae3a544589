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
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as _err:  # pragma: no cover - exercised in a test that hides the SDK
    raise ImportError(
        "aisopod_session.adapters.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'aisopod-session[openai-agents]'",
        name=_err.name,
    ) from _err

from aisopod_session._entries import NewEntry
from aisopod_session._errors import InvalidPayload
from aisopod_session._model import Entry
from aisopod_session.adapters._common import (
    KeyedConversation,
    StoreLike,
    is_missing,
    keep,
    restore,
    searchable,
    storable,
    texts_of,
)
from aisopod_shared import Message, TextPart, ThinkingPart, ToolCallPart, loads

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
        session_id: a session key (`agent:<agent>:...`) or a plain name, made
            into a key of `agent_id` (`keys.request_key`).
        store: a `SessionStore`, an `AsyncSessionStore`, a store URL or file
            path, or `None` for the default store (`$AISOPOD_SESSION_DB`, else
            `~/.aisopod/sessions.db`). A URL's store is opened once per process
            and shared by every session given that URL; `close()` lets go of it
            and the last one closes it. A store handed in is never closed here.
        agent_id: the agent a plain name belongs to; by default the agent the
            store handle is scoped to, else `main`.
        session_settings: the SDK's `SessionSettings` (or a dict of them); its
            `limit` is how many items `get_items()` returns by default.

    Behaviour, as the SDK's built-in sessions:

    - `get_items(limit)`: the latest items in order; `limit` is the argument,
      else `session_settings.limit`, else all (read a page at a time; a limit
      keeps each read small); `0` gives none, a negative limit all. The
      window never starts with a tool output whose call it leaves out: it is
      widened back to include the call (and the calls of any output that
      brings in), so it may hold more than `limit` items.
    - `add_items`: appends all the items in one transaction.
    - `pop_item`: returns the latest item and moves the session's leaf back
      before it. Nothing is deleted: the item stays in the history, on an
      abandoned branch (`store.branches`), and the next item starts a new one.
    - `clear_session`: starts a new session for the key; the old one stays
      readable, archived (`store.list(key=session.key)`).

    Items are read along the active path, so popped items are not returned.
    Entries appended to the key's session by other means (native messages,
    summaries) are not items and are not returned. Every method runs the
    store's work off the event loop through an async store (the one handed
    in, else one over the store or URL given), so items added by concurrent
    coroutines share commits; the key is looked up on every call, so
    processes sharing the store see each other's items, pops and clears.
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
    ) -> None:
        if session_settings is None:
            self.session_settings = SessionSettings()
        elif isinstance(session_settings, SessionSettings):
            self.session_settings = session_settings
        else:
            self.session_settings = SessionSettings(**dict(session_settings))
        KeyedConversation.__init__(self, session_id, store, agent_id)

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest `limit` items (see the class docstring), oldest first."""
        resolved = resolve_session_limit(limit, self.session_settings)
        items = await self._store.read(self._key, resolved, _decode, pairs=True)
        return cast("list[TResponseInputItem]", items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append items to the session, in one transaction.

        Raises:
            InvalidPayload: for an item that is not a JSON object.
            PayloadTooLarge: for an item over the store's size limit.
        """
        entries = [_entry_of(item) for item in items]
        await self._store.add(self._key, entries)

    async def pop_item(self) -> TResponseInputItem | None:
        """Take the latest item off the active branch and return it (`None` when empty)."""
        item = await self._store.pop(self._key, _decode)
        return cast("TResponseInputItem | None", item)

    async def clear_session(self) -> None:
        """Start the key on a new, empty session; the old one is archived, not deleted."""
        await self._store.clear(self._key)


def _entry_of(item: Mapping[str, Any]) -> Message | NewEntry:
    """The entry that keeps an SDK item (see the module docstring).

    Raises:
        InvalidPayload: for an item that is not a JSON object.
    """
    if not isinstance(item, Mapping):
        raise InvalidPayload(f"an item must be a dict, got {type(item).__name__}", field="items")
    value = dict(item)
    kind = value.get("type", "message")
    kept = keep(value, ITEM_KEY)
    if kind == "message":
        given = value.get("role")
        role = _ROLES.get(given) if isinstance(given, str) else None
        if role is not None:
            texts = texts_of(value.get("content"), ("text", "refusal"))
            return Message(role, _text_parts(texts), extra=kept)
    elif kind in _CALLS:
        call_id = value.get("call_id")
        if isinstance(call_id, str):
            name = value.get("name")
            part = ToolCallPart(
                searchable(call_id),
                searchable(name if isinstance(name, str) else kind),
                _arguments(value),
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
    return NewEntry("custom", {"customType": ITEM_KEY, **keep(value, "data")})


def _text_parts(texts: list[str]) -> tuple[TextPart, ...]:
    return tuple(TextPart(searchable(text)) for text in texts if text)


def _arguments(item: Mapping[str, Any]) -> dict[str, Any]:
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
        return arguments if storable(arguments) else {}
    return {}


def _decode(entry: Entry) -> dict[str, Any] | None:
    """The item an entry keeps, or `None` for an entry that keeps none."""
    if entry.type == "message":
        value = restore(entry.payload.get("message"), ITEM_KEY)
    elif entry.type == "custom" and entry.payload.get("customType") == ITEM_KEY:
        value = restore(entry.payload, "data")
    else:
        return None
    if is_missing(value) or not isinstance(value, dict):
        return None
    return value
