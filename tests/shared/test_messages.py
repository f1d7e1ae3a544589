"""Messages and parts as Python values: constructors, `.text`, `.tool_calls`, validation."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from aisopod_shared import (
    ROLES,
    AisopodError,
    ImagePart,
    InvalidInput,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
    UnknownPart,
    content_text,
)


def test_user_builds_a_user_message_with_string_content() -> None:
    message = Message.user("hello")

    assert message.role == "user"
    assert message.content == "hello"
    assert message.text == "hello"
    assert message.tool_calls == ()
    assert message.usage is None


def test_user_keeps_parts_as_a_tuple_in_order() -> None:
    parts: list[Part] = [TextPart("look"), ImagePart("aGk=", "image/png")]

    message = Message.user(parts)

    assert message.role == "user"
    assert message.content == tuple(parts)


def test_system_builds_a_system_message() -> None:
    message = Message.system("be brief")

    assert message.role == "system"
    assert message.content == "be brief"


def test_assistant_puts_text_first_then_tool_calls_and_keeps_usage() -> None:
    call = ToolCallPart("call_1", "read", {"path": "a.txt"})
    usage = TokenUsage(input=10, output=5, cost=0.25)

    message = Message.assistant("hi", tool_calls=[call], usage=usage)

    assert message.role == "assistant"
    assert message.content == (TextPart("hi"), call)
    assert message.text == "hi"
    assert message.tool_calls == (call,)
    assert message.usage == usage


def test_assistant_without_text_holds_only_its_tool_calls() -> None:
    call = ToolCallPart("call_1", "ls")

    assert Message.assistant(tool_calls=[call]).content == (call,)
    assert Message.assistant().content == ()
    assert Message.assistant("").text == ""


def test_assistant_with_parts_keeps_them_before_the_tool_calls() -> None:
    thinking = ThinkingPart("hmm")
    text = TextPart("answer")
    call = ToolCallPart("c", "run", {"n": 1})

    message = Message.assistant([thinking, text], tool_calls=[call])

    assert message.content == (thinking, text, call)
    assert message.tool_calls == (call,)


def test_assistant_passes_other_fields_through() -> None:
    message = Message.assistant(
        "ok", model="m-1", provider="acme", stop_reason="stop", timestamp=1_700_000_000_000
    )

    assert (message.model, message.provider, message.stop_reason) == ("m-1", "acme", "stop")
    assert message.timestamp == 1_700_000_000_000


def test_tool_result_builds_a_tool_message_with_a_text_part() -> None:
    message = Message.tool_result("call_1", "file contents", tool_name="read")

    assert message.role == "tool"
    assert message.content == (TextPart("file contents"),)
    assert message.tool_call_id == "call_1"
    assert message.tool_name == "read"
    assert message.is_error is False
    assert message.text == "file contents"


def test_tool_result_accepts_parts_and_an_error_flag() -> None:
    parts: list[Part] = [TextPart("boom"), ImagePart("aGk=", "image/png")]

    message = Message.tool_result("call_2", parts, is_error=True)

    assert message.content == tuple(parts)
    assert message.is_error is True
    assert message.tool_name is None


def test_tool_role_is_one_of_the_known_roles() -> None:
    assert set(ROLES) == {"system", "user", "assistant", "tool"}
    assert Message.tool_result("c", "x").role in ROLES


def test_text_joins_text_parts_with_newlines_and_skips_everything_else() -> None:
    message = Message.user(
        [
            TextPart("first"),
            ImagePart("aGk=", "image/png"),
            ThinkingPart("private"),
            TextPart(""),
            ToolCallPart("c", "n", {"text": "not this"}),
            UnknownPart({"type": "x", "text": "nor this"}),
            ToolResultPart("c", (TextPart("nested"),)),
            TextPart("last"),
        ]
    )

    assert message.text == "first\nnested\nlast"


def test_tool_calls_lists_every_call_in_order() -> None:
    first = ToolCallPart("a", "one")
    second = ToolCallPart("b", "two", {"x": [1, 2]})

    message = Message("assistant", (first, TextPart("between"), second))

    assert message.tool_calls == (first, second)
    assert Message("assistant", "just text").tool_calls == ()


def test_content_text_handles_strings_parts_and_garbage() -> None:
    assert content_text("plain") == "plain"
    assert content_text((TextPart("a"), TextPart("b"))) == "a\nb"
    assert content_text(None) == ""
    assert content_text(42) == ""


def test_unknown_part_reports_its_type() -> None:
    assert UnknownPart({"type": "audio", "data": "x"}).type == "audio"
    assert UnknownPart({"data": "x"}).type == ""


def test_messages_and_parts_are_frozen_values() -> None:
    message = Message.user("hi")

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        message.role = "system"  # type: ignore[misc]
    assert Message.user("hi") == message


def test_arguments_and_extra_are_copied_into_plain_dicts() -> None:
    arguments = {"k": "v"}
    call = ToolCallPart("c", "n", arguments)
    arguments["k"] = "changed"

    assert call.arguments == {"k": "v"}
    assert TextPart("t", extra={"textSignature": "s"}).extra == {"textSignature": "s"}


# --- bad input ---------------------------------------------------------------


def _raises_invalid_input(build: Any, *args: Any, **kwargs: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        build(*args, **kwargs)
    assert isinstance(info.value, AisopodError)
    assert isinstance(info.value, ValueError)
    return info.value


@pytest.mark.parametrize("text", [5, None, b"bytes", ["a"]])
def test_non_string_text_is_refused(text: Any) -> None:
    error = _raises_invalid_input(TextPart, text)
    assert error.field == "text"


@pytest.mark.parametrize(
    ("build", "args", "field"),
    [
        (ThinkingPart, (1,), "thinking"),
        (ImagePart, (1, "image/png"), "data"),
        (ImagePart, ("aGk=", None), "mime_type"),
        (ToolCallPart, (1, "name"), "id"),
        (ToolCallPart, ("id", 1), "name"),
        (ToolResultPart, (1,), "tool_call_id"),
        (Message, (1,), "role"),
    ],
)
def test_non_string_fields_are_refused(build: Any, args: tuple[Any, ...], field: str) -> None:
    assert _raises_invalid_input(build, *args).field == field


@pytest.mark.parametrize("field", ["tool_call_id", "tool_name", "model", "provider", "stop_reason"])
def test_optional_string_fields_refuse_non_strings(field: str) -> None:
    assert _raises_invalid_input(Message, "user", "x", **{field: 7}).field == field


@pytest.mark.parametrize("arguments", [[1, 2], "a=1", 3, None])
def test_non_mapping_tool_call_arguments_are_refused(arguments: Any) -> None:
    assert _raises_invalid_input(ToolCallPart, "c", "n", arguments).field == "arguments"


@pytest.mark.parametrize(
    "content", [5, b"bytes", ["a string is not a part"], [{"type": "text", "text": "dict"}]]
)
def test_content_of_the_wrong_type_is_refused(content: Any) -> None:
    assert _raises_invalid_input(Message, "user", content).field == "content"
    assert _raises_invalid_input(ToolResultPart, "c", content).field == "content"


def test_message_content_may_be_left_out_but_tool_result_content_may_not_be_none() -> None:
    assert Message("bashExecution").content is None
    assert Message("user", None).text == ""
    assert _raises_invalid_input(ToolResultPart, "c", None).field == "content"


def test_usage_must_be_a_token_usage() -> None:
    error = _raises_invalid_input(Message, "assistant", "x", usage={"input": 1})
    assert error.field == "usage"


def test_extra_must_be_a_mapping() -> None:
    assert _raises_invalid_input(TextPart, "t", extra=["k"]).field == "extra"
    assert _raises_invalid_input(Message, "user", extra="k").field == "extra"
