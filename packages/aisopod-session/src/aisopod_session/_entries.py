"""What goes into a session's log: new entries, and their stored form.

`NewEntry` is what callers append (a `Message` is appended as a `message`
entry). `prepare` turns it into a `PreparedEntry`: the payload serialized
once, the text and usage extracted for indexing, the size checked, all
before any transaction starts so that locks are held for as short as possible.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import attrs

from aisopod_session._errors import InvalidPayload, PayloadTooLarge
from aisopod_shared import InvalidInput, Message, TokenUsage, converter, dumps, to_micros

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "NativeMessage",
    "NewEntry",
    "PreparedEntry",
    "Stamp",
    "USAGE_RECORD",
    "extract_text",
    "holds_nul",
    "extract_usage",
    "iso_timestamp",
    "prepare",
]

DEFAULT_MAX_PAYLOAD_BYTES = 16 * 1024 * 1024

USAGE_RECORD = "aisopod.usage"
"""The `customType` of an entry recording tokens no message carries (`NewEntry.usage_record`)."""

# The transcript format spells the role of a tool result `toolResult`;
# stored roles use the API's names, so a search by role finds both.
_ROLE_ALIASES = {"toolResult": "tool"}

# orjson writes NUL as `\u0000`; a backslash before it that is itself escaped
# (`\\u0000`) is the six characters of text, not a NUL.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _payload(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidPayload("an entry payload must be a JSON object", field="payload")
    return dict(value)


def _entry_type(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidPayload("an entry type must be a non-empty string", field="type")
    return value


def _entry_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidPayload("an entry id must be a non-empty string", field="id")
    return value


@attrs.frozen
class NewEntry:
    """An entry to append, in the transcript format's shape.

    `payload` holds every field of the entry but `type`, `id` and `parentId`
    (the store assigns the id when it is `None`, and the parent is the
    session's leaf). Use the constructors for the types aisopod knows.
    """

    type: str = attrs.field(converter=_entry_type)
    payload: Mapping[str, Any] = attrs.field(factory=dict, converter=_payload)
    id: str | None = attrs.field(default=None, converter=_entry_id)

    @classmethod
    def message(cls, message: Message) -> NewEntry:
        """A `message` entry."""
        return cls("message", {"message": message.to_json()})

    @classmethod
    def usage_record(cls, usage: TokenUsage, **details: Any) -> NewEntry:
        """Tokens a run spent that no message of it carries (a framework's run totals):
        counted in the session's usage and the store's stats, never in the context.
        `details` (JSON data) are kept beside it."""
        if not isinstance(usage, TokenUsage):
            raise InvalidPayload("usage must be a TokenUsage", field="usage")
        return cls(
            "custom",
            {"customType": USAGE_RECORD, "usage": converter.unstructure(usage), "data": details},
        )

    @classmethod
    def model_change(cls, provider: str, model_id: str) -> NewEntry:
        """The model changed; the context reports the latest one on the active branch."""
        return cls("model_change", {"provider": provider, "modelId": model_id})

    @classmethod
    def thinking_level_change(cls, level: str) -> NewEntry:
        """The thinking level changed (`off`, `minimal`, `low`, `medium`, `high`, `xhigh`)."""
        return cls("thinking_level_change", {"thinkingLevel": level})

    @classmethod
    def custom(cls, custom_type: str, data: Any = None) -> NewEntry:
        """Extension state; never part of the model's context."""
        return cls("custom", {"customType": custom_type, "data": data})

    @classmethod
    def custom_message(
        cls, custom_type: str, content: str | Sequence[Any], *, display: bool = True
    ) -> NewEntry:
        """A message an extension injects into the context, on the user's side."""
        parts = content if isinstance(content, str) else converter.unstructure(list(content))
        return cls(
            "custom_message", {"customType": custom_type, "content": parts, "display": display}
        )

    @classmethod
    def label(cls, target_id: str, label: str | None) -> NewEntry:
        """A bookmark on entry `target_id` (`None` clears it)."""
        payload: dict[str, Any] = {"targetId": target_id}
        if label is not None:
            payload["label"] = label
        return cls("label", payload)

    @classmethod
    def session_info(cls, name: str) -> NewEntry:
        """The session's display name."""
        return cls("session_info", {"name": name})

    @classmethod
    def branch_summary(cls, from_id: str, summary: str) -> NewEntry:
        """What an abandoned branch (ending at entry `from_id`) did; part of the context."""
        return cls("branch_summary", {"fromId": from_id, "summary": summary})


class NativeMessage(NamedTuple):
    """A message entry with text parts, given in the stored message's own shape: what
    `Message(role, text parts, extra=extra)` stores, made without building the
    `Message` (or a `NewEntry`). The framework adapters append one per item;
    `prepare` writes its JSON directly, once.
    """

    role: str
    texts: list[str]
    """The text parts' texts, in order (empty ones are left out)."""
    extra: dict[str, Any]
    """Keys of the message beside role and content, kept as they are."""


class PreparedEntry(NamedTuple):
    """A new entry ready for the database: serialized, measured and indexed.

    A named tuple rather than an attrs class: one is made per appended entry,
    on the hot path, and tuples are the cheapest records Python builds.
    """

    id: str | None
    type: str
    role: str | None
    payload: bytes
    payload_data: Mapping[str, Any] | None
    """The payload as data; `None` when only `payload` holds it (`NativeMessage`s: an
    append of a thousand keeps no dicts alive for the garbage collector to walk),
    decoded from there if an `Entry` is built of it."""
    text: str
    usage: TokenUsage | None
    tokens: int
    created_at: int
    """Microseconds since the epoch."""

    @property
    def size(self) -> int:
        """Bytes this entry adds to the session's size."""
        return len(self.payload) + len(self.text)


def iso_timestamp(when: datetime) -> str:
    """`2026-11-24T02:49:51.123Z`: the transcript format's timestamps (JavaScript's toISOString)."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


class Stamp(NamedTuple):
    """The instant of an append, in the two spellings it writes (computed once per append)."""

    millis: int
    micros: int

    @classmethod
    def of(cls, when: datetime) -> Stamp:
        """The stamp of `when` (an aware datetime)."""
        return cls.at(to_micros(when))

    @classmethod
    def at(cls, micros: int) -> Stamp:
        """The stamp of `micros` microseconds since the epoch."""
        return cls(micros // 1000, micros)


def prepare(
    item: Message | NewEntry | NativeMessage,
    stamp: Stamp,
    *,
    max_payload_bytes: int,
    verbatim: bool = False,
) -> PreparedEntry:
    """Serialize and index one entry to append.

    A message without a Unix-millisecond `timestamp` gets the append's, unless
    `verbatim` (imports and copies keep what they were given, key for key).
    The entry's own ISO `timestamp` is not stored when the caller gave none:
    it is the entry's `created_at`, and exports write it from there.

    Raises:
        InvalidPayload: for content JSON cannot carry (NaN, lone surrogates, ...).
        PayloadTooLarge: when the serialized entry is over `max_payload_bytes`.
    """
    usage: TokenUsage | None
    if type(item) is NativeMessage:
        return _prepare_native(item, stamp, max_payload_bytes)
    if isinstance(item, Message):
        entry_type, entry_id, role, usage = "message", None, item.role, item.usage
        message: Any = item.to_json()  # a fresh dict: ours to complete
        message.setdefault("timestamp", stamp.millis)
        payload: dict[str, Any] = {"message": message}
    elif isinstance(item, NewEntry):
        entry_type, entry_id, payload = item.type, item.id, dict(item.payload)
        role, usage, message = None, None, payload.get("message")
        if entry_type == "message":
            if not isinstance(message, Mapping):
                raise InvalidPayload("a message entry needs a `message` object", field="payload")
            role = message.get("role")
            if role is not None and not isinstance(role, str):
                raise InvalidPayload("a message role must be a string", field="role")
            if "timestamp" not in message and not verbatim:
                payload["message"] = {**message, "timestamp": stamp.millis}
            usage = extract_usage(payload)
        elif entry_type == "custom" and payload.get("customType") == USAGE_RECORD:
            usage = _usage_of(payload.get("usage"))
    else:
        raise InvalidPayload(
            f"append takes Message or NewEntry values, got {type(item).__name__}", field="entries"
        )
    data = _serialized(payload, max_payload_bytes)
    return _prepared(entry_type, entry_id, role, payload, data, usage, stamp, keep_payload=True)


def _prepared(
    entry_type: str,
    entry_id: str | None,
    role: str | None,
    payload: dict[str, Any],
    data: bytes,
    usage: TokenUsage | None,
    stamp: Stamp,
    *,
    keep_payload: bool,
    text: str | None = None,
) -> PreparedEntry:
    """The entry to append, from its checked and serialized payload: the one place
    its role, searchable text and token count are derived (the text is given only
    where the caller built the message from its texts: `_prepare_native`)."""
    # Positional, in PreparedEntry's field order: a named tuple built by keywords costs
    # twice as much, once per appended entry.
    return PreparedEntry(
        entry_id,
        entry_type,
        _ROLE_ALIASES.get(role, role) if role is not None else None,
        data,
        payload if keep_payload else None,
        extract_text(entry_type, payload) if text is None else text,
        usage,
        (
            usage.output
            if usage is not None and usage.output and entry_type == "message"
            else _estimate_tokens(data)
        ),
        stamp.micros,
    )


def _prepare_native(item: NativeMessage, stamp: Stamp, max_payload_bytes: int) -> PreparedEntry:
    """`prepare` of a `NativeMessage`: the entry `prepare` makes of the `Message` it
    stands for, built straight from its parts (this runs for every item an adapter adds)."""
    role = item.role
    if not isinstance(role, str):
        raise InvalidPayload("a message role must be a string", field="role")
    texts = [text for text in item.texts if text]
    message: dict[str, Any] = {
        "role": role,
        "content": [{"type": "text", "text": text} for text in texts],
    }
    extra = item.extra
    message.update(extra)
    message.setdefault("timestamp", stamp.millis)
    payload = {"message": message}
    data = _serialized(payload, max_payload_bytes)
    usage = extract_usage(payload) if "usage" in extra else None
    # The text `extract_text` would read back from the content just built, unless
    # `extra` puts other text where it looks.
    text = None if _TEXT_KEYS.intersection(extra) else _joined(texts)
    return _prepared(
        "message", None, role, payload, data, usage, stamp, keep_payload=False, text=text
    )


_TEXT_KEYS: Final = frozenset(("content", "command", "output"))
"""The keys of a message `extract_text` reads."""


def _serialized(payload: dict[str, Any], max_payload_bytes: int) -> bytes:
    """An entry's payload as JSON, refused when no backend can store it or it is too large."""
    try:
        data = dumps(payload)
    except InvalidInput as err:
        raise InvalidPayload(err.reason, field="payload") from err
    if holds_nul(data):
        # PostgreSQL cannot store NUL in text or jsonb; refusing it everywhere
        # keeps every backend's behaviour the same.
        raise InvalidPayload("NUL characters cannot be stored", field="payload")
    if len(data) > max_payload_bytes:
        raise PayloadTooLarge(len(data), max_payload_bytes)
    return data


def holds_nul(data: bytes) -> bool:
    """Whether serialized JSON holds a NUL character (which no backend may store)."""
    return b"\\u0000" in data and _ESCAPED_NUL.search(data) is not None


def _estimate_tokens(payload: bytes) -> int:
    # About four bytes of JSON per token: the estimate pi uses when a
    # provider reported nothing.
    return max(1, len(payload) // 4)


def extract_usage(payload: Mapping[str, Any]) -> TokenUsage | None:
    """The token usage of a message entry's payload, or `None` when it has none (or garbage)."""
    message = payload.get("message")
    return _usage_of(message.get("usage")) if isinstance(message, Mapping) else None


def _usage_of(value: Any) -> TokenUsage | None:
    if value is None:
        return None
    try:
        usage: TokenUsage = converter.structure(value, TokenUsage)
    except (InvalidInput, TypeError, ValueError):
        return None
    return usage


def extract_text(entry_type: str, payload: Mapping[str, Any]) -> str:
    """The searchable text of an entry: what a person would read in it."""
    if entry_type == "message":
        message = payload.get("message")
        # isinstance(x, dict) first: it is what JSON gives, and far cheaper than
        # the Mapping ABC's check.
        if not isinstance(message, dict) and not isinstance(message, Mapping):
            return ""
        text = _content_text(message.get("content"))
        # bashExecution messages carry their text outside `content`.
        command, output = message.get("command"), message.get("output")
        if command is None and output is None:
            return text  # every other message: no join to build
        return "\n".join(t for t in (text, command, output) if isinstance(t, str) and t)
    if entry_type in ("compaction", "branch_summary"):
        summary = payload.get("summary")
        return summary if isinstance(summary, str) else ""
    if entry_type == "custom_message":
        return _content_text(payload.get("content"))
    if entry_type == "session_info":
        name = payload.get("name")
        return name if isinstance(name, str) else ""
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts: list[str] = []
    for part in content:
        if not isinstance(part, dict) and not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if isinstance(text, str) and text:
                texts.append(text)
        elif kind == "toolResult":
            text = _content_text(part.get("content"))
            if text:
                texts.append(text)
    return _joined(texts)


def _joined(texts: list[str]) -> str:
    """A message's searchable text from its parts' texts (none empty), in order."""
    return texts[0] if len(texts) == 1 else "\n".join(texts)
