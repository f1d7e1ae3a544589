"""Conversation messages and their parts.

The JSON shape of a message is the one OpenClaw/pi transcripts use (camelCase,
content parts tagged by `type`, tool results as messages with role
`toolResult`), so that a message appended through the API and one imported
from a transcript are stored alike. Keys and part types this module does not
know are kept in `extra` / `UnknownPart` and written back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

import attrs

from aisopod_shared._errors import InvalidInput
from aisopod_shared._json import JSONObject, converter, register_camel_case, structure
from aisopod_shared._usage import TokenUsage

__all__ = [
    "ROLES",
    "Content",
    "ImagePart",
    "Message",
    "Part",
    "TextPart",
    "ThinkingPart",
    "ToolCallPart",
    "ToolResultPart",
    "UnknownPart",
]

ROLES: Final = ("system", "user", "assistant", "tool")
"""The roles aisopod gives meaning to; other role strings are kept as they are."""

# How the transcript format spells the role of a tool result.
_JSON_ROLE = {"tool": "toolResult"}
_API_ROLE = {value: key for key, value in _JSON_ROLE.items()}


def _text(field: str) -> Any:
    def check(_: Any, __: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str):
            raise InvalidInput(f"must be a string, got {type(value).__name__}", field=field)

    return check


def _optional_text(field: str) -> Any:
    check = _text(field)

    def optional(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            check(instance, attribute, value)

    return optional


def _extra(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("extra must be a mapping", field="extra")
    return dict(value)


@attrs.frozen
class TextPart:
    """Plain text."""

    text: str = attrs.field(validator=_text("text"))
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_extra, repr=False)


@attrs.frozen
class ImagePart:
    """An image, base64-encoded."""

    data: str = attrs.field(validator=_text("data"), repr=False)
    mime_type: str = attrs.field(validator=_text("mime_type"))
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_extra, repr=False)


@attrs.frozen
class ThinkingPart:
    """A model's visible reasoning."""

    thinking: str = attrs.field(validator=_text("thinking"))
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_extra, repr=False)


def _arguments(value: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput("tool call arguments must be a JSON object", field="arguments")
    return dict(value)


@attrs.frozen
class ToolCallPart:
    """A request from the model to call a tool, with JSON arguments."""

    id: str = attrs.field(validator=_text("id"))
    name: str = attrs.field(validator=_text("name"))
    arguments: Mapping[str, Any] = attrs.field(factory=dict, converter=_arguments)
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_extra, repr=False)


@attrs.frozen
class UnknownPart:
    """A part of a type aisopod does not know, kept verbatim."""

    data: Mapping[str, Any] = attrs.field(converter=_extra)

    @property
    def type(self) -> str:
        """The part's `type` string."""
        return str(self.data.get("type", ""))


def _content(value: str | Sequence[Any]) -> str | tuple[Any, ...]:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        parts = tuple(value)
        for part in parts:
            if not isinstance(part, _PART_TYPES):
                raise InvalidInput(
                    f"content parts must be Part values, got {type(part).__name__}",
                    field="content",
                )
        return parts
    raise InvalidInput("content must be a string or a list of parts", field="content")


@attrs.frozen
class ToolResultPart:
    """The result of a tool call, as a content part (for providers that nest it)."""

    tool_call_id: str = attrs.field(validator=_text("tool_call_id"))
    content: str | tuple[Part, ...] = attrs.field(default="", converter=_content)
    is_error: bool = False
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_extra, repr=False)


Part: TypeAlias = TextPart | ImagePart | ThinkingPart | ToolCallPart | ToolResultPart | UnknownPart
Content: TypeAlias = str | tuple[Part, ...]

_PART_TYPES = (TextPart, ImagePart, ThinkingPart, ToolCallPart, ToolResultPart, UnknownPart)


def _usage(value: TokenUsage | None) -> TokenUsage | None:
    if value is not None and not isinstance(value, TokenUsage):
        raise InvalidInput("usage must be a TokenUsage", field="usage")
    return value


@attrs.frozen
class Message:
    """One message of a conversation.

    Build them with `Message.user(...)`, `Message.assistant(...)`,
    `Message.system(...)` and `Message.tool_result(...)`. `role` is one of
    `ROLES` for messages aisopod makes; other role strings (from imported
    transcripts) are kept as they are; so is a message without `content`
    (`None`: some transcript roles carry their text elsewhere). `timestamp` is
    Unix milliseconds; the store fills it in when it is left out.
    """

    role: str = attrs.field(validator=_text("role"))
    content: Content | None = attrs.field(
        default=None, converter=attrs.converters.optional(_content)
    )
    tool_call_id: str | None = attrs.field(default=None, validator=_optional_text("tool_call_id"))
    tool_name: str | None = attrs.field(default=None, validator=_optional_text("tool_name"))
    is_error: bool | None = None
    usage: TokenUsage | None = attrs.field(default=None, converter=_usage)
    model: str | None = attrs.field(default=None, validator=_optional_text("model"))
    provider: str | None = attrs.field(default=None, validator=_optional_text("provider"))
    stop_reason: str | None = attrs.field(default=None, validator=_optional_text("stop_reason"))
    timestamp: int | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, converter=_extra, repr=False)

    @classmethod
    def user(cls, content: str | Sequence[Part], **kwargs: Any) -> Message:
        """A message from the person talking to the agent."""
        return cls("user", content, **kwargs)

    @classmethod
    def system(cls, content: str, **kwargs: Any) -> Message:
        """The system prompt, or another instruction from the operator."""
        return cls("system", content, **kwargs)

    @classmethod
    def assistant(
        cls,
        content: str | Sequence[Part] = "",
        *,
        tool_calls: Sequence[ToolCallPart] = (),
        usage: TokenUsage | None = None,
        **kwargs: Any,
    ) -> Message:
        """A reply from the model: text parts, then any tool calls it makes."""
        parts: list[Part] = [TextPart(content)] if isinstance(content, str) and content else []
        if not isinstance(content, str):
            parts.extend(content)
        parts.extend(tool_calls)
        return cls("assistant", tuple(parts), usage=usage, **kwargs)

    @classmethod
    def tool_result(
        cls,
        tool_call_id: str,
        content: str | Sequence[Part],
        *,
        tool_name: str | None = None,
        is_error: bool = False,
        **kwargs: Any,
    ) -> Message:
        """The result of the tool call `tool_call_id`."""
        parts = (TextPart(content),) if isinstance(content, str) else tuple(content)
        return cls(
            "tool",
            parts,
            tool_call_id=tool_call_id,
            tool_name=tool_name,
            is_error=is_error,
            **kwargs,
        )

    @property
    def text(self) -> str:
        """The message's text: the string content, or its text parts joined by newlines."""
        return content_text(self.content)

    @property
    def tool_calls(self) -> tuple[ToolCallPart, ...]:
        """The tool calls this message makes, in order."""
        if not isinstance(self.content, tuple):
            return ()
        return tuple(part for part in self.content if isinstance(part, ToolCallPart))

    def to_json(self) -> JSONObject:
        """The message as transcript-shaped JSON data."""
        data: JSONObject = converter.unstructure(self, Message)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        """Read a transcript-shaped message; unknown keys land in `extra`.

        Raises:
            InvalidInput: when `data` is not a message.
        """
        return structure(data, Message)


def content_text(content: Content | Any) -> str:
    """The text of message content (a string or parts); other parts contribute nothing."""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence):
        return ""
    texts: list[str] = []
    for part in content:
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ToolResultPart):
            texts.append(content_text(part.content))
    return "\n".join(text for text in texts if text)


# --- JSON shape ---------------------------------------------------------------

_TAGS: dict[str, type[Any]] = {
    "text": TextPart,
    "image": ImagePart,
    "thinking": ThinkingPart,
    "toolCall": ToolCallPart,
    "toolResult": ToolResultPart,
}
for _tag, _cls in _TAGS.items():
    register_camel_case(_cls, tag=("type", _tag))

converter.register_unstructure_hook(UnknownPart, lambda part: dict(part.data))


def _structure_part(data: Any, _: Any) -> Part:
    if not isinstance(data, Mapping):
        raise InvalidInput("a content part must be a JSON object", field="content")
    cls = _TAGS.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return UnknownPart(data)
    part: Part = converter.structure(data, cls)
    return part


def _structure_content(data: Any, _: Any) -> Content:
    if isinstance(data, str):
        return data
    if isinstance(data, list | tuple):
        return tuple(_structure_part(item, Part) for item in data)
    raise InvalidInput("content must be a string or a list of parts", field="content")


def _unstructure_content(content: Content) -> str | list[JSONObject]:
    if isinstance(content, str):
        return content
    return [converter.unstructure(part, type(part)) for part in content]


converter.register_structure_hook(Part, _structure_part)
converter.register_structure_hook(Content, _structure_content)
converter.register_unstructure_hook(Content, _unstructure_content)

register_camel_case(Message)
_message_to_json = converter.get_unstructure_hook(Message)
_message_from_json = converter.get_structure_hook(Message)


def _message_to_transcript(message: Message) -> JSONObject:
    data: JSONObject = _message_to_json(message)
    data["role"] = _JSON_ROLE.get(message.role, message.role)
    return data


def _message_from_transcript(data: Any, cls: Any) -> Message:
    if isinstance(data, Mapping) and data.get("role") in _API_ROLE:
        data = {**data, "role": _API_ROLE[data["role"]]}
    message: Message = _message_from_json(data, cls)
    return message


converter.register_unstructure_hook(Message, _message_to_transcript)
converter.register_structure_hook(Message, _message_from_transcript)
