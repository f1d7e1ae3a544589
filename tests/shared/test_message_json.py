"""Messages as transcript-shaped JSON: shapes, round trips, unknown keys, bad input."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given

from aisopod_shared import (
    AisopodError,
    ImagePart,
    InvalidInput,
    Message,
    TextPart,
    ThinkingPart,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
    UnknownPart,
    dumps,
    loads,
)
from tests.shared.strategies import messages

# One message per part type, with the exact JSON each must become.
SHAPES: list[tuple[Message, dict[str, Any]]] = [
    (
        Message.user("plain"),
        {"role": "user", "content": "plain"},
    ),
    (
        Message.user([TextPart("hi")]),
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ),
    (
        Message.user([ImagePart("aGk=", "image/png")]),
        {"role": "user", "content": [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]},
    ),
    (
        Message.assistant([ThinkingPart("let me see")]),
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "let me see"}]},
    ),
    (
        Message.assistant(
            tool_calls=[ToolCallPart("call_1", "read", {"path": "a", "n": [1, 2.5]})]
        ),
        {
            "role": "assistant",
            "content": [
                {
                    "type": "toolCall",
                    "id": "call_1",
                    "name": "read",
                    "arguments": {"path": "a", "n": [1, 2.5]},
                }
            ],
        },
    ),
    (
        Message.user([ToolResultPart("call_1", (TextPart("out"),), is_error=True)]),
        {
            "role": "user",
            "content": [
                {
                    "type": "toolResult",
                    "toolCallId": "call_1",
                    "content": [{"type": "text", "text": "out"}],
                    "isError": True,
                }
            ],
        },
    ),
    (
        Message.user([UnknownPart({"type": "audio", "data": "AAA=", "format": "wav"})]),
        {"role": "user", "content": [{"type": "audio", "data": "AAA=", "format": "wav"}]},
    ),
    (
        Message.tool_result("call_1", "done", tool_name="bash", timestamp=1_700_000_000_000),
        {
            "role": "toolResult",
            "content": [{"type": "text", "text": "done"}],
            "toolCallId": "call_1",
            "toolName": "bash",
            "isError": False,
            "timestamp": 1_700_000_000_000,
        },
    ),
    (
        Message.assistant(
            "ok",
            usage=TokenUsage(input=3, output=4, cache_read=1, cache_write=2, cost=0.5),
            model="m",
            provider="p",
            stop_reason="stop",
        ),
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "ok"}],
            "usage": {
                "input": 3,
                "output": 4,
                "cacheRead": 1,
                "cacheWrite": 2,
                "totalTokens": 10,
                "cost": {"total": 0.5},
            },
            "model": "m",
            "provider": "p",
            "stopReason": "stop",
        },
    ),
]
SHAPE_IDS = [
    "string",
    "text",
    "image",
    "thinking",
    "toolCall",
    "toolResultPart",
    "unknownPart",
    "toolResult",
    "usage",
]


@pytest.mark.parametrize(("message", "expected"), SHAPES, ids=SHAPE_IDS)
def test_to_json_writes_the_transcript_shape(message: Message, expected: dict[str, Any]) -> None:
    assert message.to_json() == expected


@pytest.mark.parametrize(("message", "expected"), SHAPES, ids=SHAPE_IDS)
def test_from_json_reads_the_transcript_shape(message: Message, expected: dict[str, Any]) -> None:
    assert Message.from_json(expected) == message


@pytest.mark.parametrize(("message", "expected"), SHAPES, ids=SHAPE_IDS)
def test_every_part_type_round_trips_through_json_bytes(
    message: Message, expected: dict[str, Any]
) -> None:
    assert Message.from_json(message.to_json()) == message
    assert Message.from_json(loads(dumps(message.to_json()))) == message


@given(messages)
def test_any_message_round_trips(message: Message) -> None:
    """Generated messages of every part type survive to_json/from_json, and bytes too."""
    data = message.to_json()
    assert Message.from_json(data) == message
    assert Message.from_json(loads(dumps(data))) == message
    assert Message.from_json(data).to_json() == data


def test_tool_role_is_written_as_tool_result_and_read_back_as_tool() -> None:
    message = Message.tool_result("c", "x")

    assert message.to_json()["role"] == "toolResult"
    assert (
        Message.from_json({"role": "toolResult", "toolCallId": "c", "content": []}).role == "tool"
    )


def test_from_json_does_not_modify_its_input() -> None:
    data = {"role": "toolResult", "toolCallId": "c", "content": [{"type": "text", "text": "x"}]}
    before = copy.deepcopy(data)

    Message.from_json(data)

    assert data == before


def test_missing_content_reads_as_none_and_is_not_written_back() -> None:
    message = Message.from_json({"role": "user"})

    assert message.content is None
    assert message.text == ""
    assert message.tool_calls == ()
    assert message.to_json() == {"role": "user"}


def test_empty_content_stays_empty() -> None:
    assert Message.from_json({"role": "assistant", "content": []}).content == ()
    assert Message.from_json({"role": "user", "content": ""}).content == ""
    assert Message.assistant().to_json() == {"role": "assistant", "content": []}
    assert Message.user("").to_json() == {"role": "user", "content": ""}


# A pi assistant message with keys aisopod does not model, on the message and
# on its parts (signatures, api, errorMessage, provider-specific extras).
PI_ASSISTANT: dict[str, Any] = {
    "role": "assistant",
    "content": [
        {"type": "thinking", "thinking": "plan", "thinkingSignature": "sig-abc"},
        {"type": "text", "text": "Reading it.", "textSignature": "ts-1"},
        {
            "type": "toolCall",
            "id": "toolu_01",
            "name": "read",
            "arguments": {"path": "README.md", "limit": 20},
            "partialJson": '{"path": "README.md"',
        },
        {"type": "redacted_thinking", "data": "opaque"},
    ],
    "api": "anthropic-messages",
    "provider": "anthropic",
    "model": "claude-x",
    "usage": {
        "input": 100,
        "output": 20,
        "cacheRead": 5,
        "cacheWrite": 0,
        "totalTokens": 125,
        "cost": {"total": 0.0123},
    },
    "stopReason": "toolUse",
    "errorMessage": "none",
    "timestamp": 1_700_000_000_123,
}


def test_unknown_keys_on_messages_and_parts_survive_a_round_trip_exactly() -> None:
    message = Message.from_json(PI_ASSISTANT)

    assert message.extra == {"api": "anthropic-messages", "errorMessage": "none"}
    assert isinstance(message.content, tuple)
    thinking, text, call, unknown = message.content
    assert thinking == ThinkingPart("plan", extra={"thinkingSignature": "sig-abc"})
    assert text == TextPart("Reading it.", extra={"textSignature": "ts-1"})
    assert isinstance(call, ToolCallPart)
    assert call.extra == {"partialJson": '{"path": "README.md"'}
    assert unknown == UnknownPart({"type": "redacted_thinking", "data": "opaque"})
    assert message.to_json() == PI_ASSISTANT


def test_pi_tool_result_message_round_trips_exactly() -> None:
    data = {
        "role": "toolResult",
        "toolCallId": "toolu_01",
        "toolName": "read",
        "content": [
            {"type": "text", "text": "# Title"},
            {"type": "image", "data": "iVBORw0=", "mimeType": "image/png"},
        ],
        "isError": False,
        "details": {"lines": 20, "truncated": True},
        "timestamp": 1_700_000_000_456,
    }

    message = Message.from_json(data)

    assert message.role == "tool"
    assert message.tool_call_id == "toolu_01"
    assert message.extra == {"details": {"lines": 20, "truncated": True}}
    assert message.to_json() == data


BASH_EXECUTION: dict[str, Any] = {
    "role": "bashExecution",
    "command": "ls -la",
    "output": "total 0\n",
    "exitCode": 0,
    "cancelled": False,
    "truncated": False,
    "excludeFromContext": True,
    "timestamp": 1_700_000_000_789,
}


def test_custom_role_keeps_its_role_and_unknown_keys() -> None:
    message = Message.from_json(BASH_EXECUTION)

    assert message.role == "bashExecution"
    assert message.timestamp == 1_700_000_000_789
    assert message.extra == {
        "command": "ls -la",
        "output": "total 0\n",
        "exitCode": 0,
        "cancelled": False,
        "truncated": False,
        "excludeFromContext": True,
    }
    data = message.to_json()
    assert {key: data[key] for key in BASH_EXECUTION} == BASH_EXECUTION


def test_custom_role_message_without_content_round_trips_exactly() -> None:
    """A `bashExecution` message has no `content`; writing it back must not invent one."""
    assert Message.from_json(BASH_EXECUTION).to_json() == BASH_EXECUTION


def test_tool_call_with_empty_arguments_round_trips_exactly() -> None:
    """pi writes `arguments: {}` for a call without parameters; it must be written back."""
    data = {
        "role": "assistant",
        "content": [{"type": "toolCall", "id": "toolu_02", "name": "list_files", "arguments": {}}],
        "stopReason": "toolUse",
        "timestamp": 1_700_000_000_000,
    }

    assert Message.from_json(data).to_json() == data


def test_unknown_part_types_are_kept_verbatim_even_when_nested() -> None:
    audio = {"type": "audio", "data": "AAA=", "meta": {"rate": 44100, "tags": [None, 1.5]}}
    no_type = {"kind": "mystery"}
    data = {
        "role": "user",
        "content": [
            audio,
            no_type,
            {"type": "toolResult", "toolCallId": "c", "content": [audio], "isError": False},
        ],
    }

    message = Message.from_json(data)

    assert isinstance(message.content, tuple)
    assert message.content[0] == UnknownPart(audio)
    assert message.content[1] == UnknownPart(no_type)
    assert message.content[2] == ToolResultPart("c", (UnknownPart(audio),))
    assert message.to_json() == data


def test_extra_never_overrides_a_known_field() -> None:
    part = TextPart("real", extra={"type": "fake", "text": "fake"})
    message = Message("user", (part,), extra={"role": "fake"})

    assert message.to_json() == {"role": "user", "content": [{"type": "text", "text": "real"}]}


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("data", [[{"role": "user"}], "user", None, 42, b"{}"])
def test_from_json_refuses_a_non_object(data: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        Message.from_json(data)
    assert isinstance(info.value, AisopodError)


@pytest.mark.parametrize("part", ["text", 1, None, ["type", "text"]])
def test_from_json_refuses_a_part_that_is_not_an_object(part: Any) -> None:
    with pytest.raises(InvalidInput, match="content part must be a JSON object"):
        Message.from_json({"role": "user", "content": [part]})
    with pytest.raises(InvalidInput, match="content part must be a JSON object"):
        Message.from_json(
            {
                "role": "user",
                "content": [{"type": "toolResult", "toolCallId": "c", "content": [part]}],
            }
        )


@pytest.mark.parametrize("content", [5, True, {"type": "text", "text": "not in a list"}])
def test_from_json_refuses_content_of_the_wrong_type(content: Any) -> None:
    with pytest.raises(InvalidInput):
        Message.from_json({"role": "user", "content": content})


@pytest.mark.parametrize("arguments", [[1, 2], "path=a", 3, [["path", "a"]]])
def test_from_json_refuses_non_mapping_tool_call_arguments(arguments: Any) -> None:
    data = {
        "role": "assistant",
        "content": [{"type": "toolCall", "id": "c", "name": "n", "arguments": arguments}],
    }
    with pytest.raises(InvalidInput):
        Message.from_json(data)


@pytest.mark.parametrize(
    "data",
    [
        {"content": "no role"},
        {"role": "user", "content": [{"type": "text"}]},
        {"role": "user", "content": [{"type": "image", "data": "aGk="}]},
        {"role": "assistant", "content": [{"type": "toolCall", "name": "n"}]},
        {"role": "assistant", "usage": {"input": -1}},
        {"role": "assistant", "usage": "lots"},
    ],
    ids=["no-role", "no-text", "no-mime", "no-call-id", "negative-usage", "usage-string"],
)
def test_from_json_refuses_missing_or_invalid_fields(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        Message.from_json(data)


@pytest.mark.parametrize(
    "data",
    [
        {"role": "user", "content": [{"type": "text", "text": None}]},
        {"role": "user", "content": [{"type": "text", "text": 5}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": ["a"]}]},
        {"role": 5, "content": "x"},
        {"role": "toolResult", "toolCallId": 5, "content": []},
        {"role": "user", "content": "x", "timestamp": "1700000000000"},
        {"role": "user", "content": "x", "timestamp": 1.5},
        {"role": "toolResult", "toolCallId": "c", "content": [], "isError": "false"},
    ],
    ids=[
        "text-null",
        "text-int",
        "thinking-list",
        "role-int",
        "toolCallId-int",
        "timestamp-string",
        "timestamp-float",
        "isError-string",
    ],
)
def test_from_json_refuses_wrongly_typed_scalars_instead_of_coercing_them(
    data: dict[str, Any],
) -> None:
    """JSON `null` or `5` where a string belongs must not become the text "None" or "5"."""
    with pytest.raises(InvalidInput):
        Message.from_json(data)
