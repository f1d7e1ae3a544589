"""`rebuild`: a model rebuilt from its own JSON dump equals what Pydantic's validation
of that dump gives, for every shape of ADK event the adapter reads back; `construct`
equals `model_construct`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.session import Session as AdkSession
from google.adk.tools.tool_confirmation import ToolConfirmation
from google.genai import types
from pydantic import BaseModel, PrivateAttr, ValidationError

from aisopod_session.adapters._pydantic_rebuild import construct, rebuild

EVENTS = [
    Event(author="user", content=types.Content(role="user", parts=[types.Part(text="hi")])),
    Event(
        author="helper",
        invocation_id="inv",
        content=types.Content(
            role="model",
            parts=[
                types.Part(text="thinking", thought=True, thought_signature=b"\x00sig"),
                types.Part.from_function_call(name="lookup", args={"q": [1, 2.5, None]}),
            ],
        ),
        finish_reason=types.FinishReason.STOP,
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=3, candidates_token_count=2, total_token_count=5
        ),
        long_running_tool_ids={"b", "a"},
    ),
    Event(
        author="helper",
        content=types.Content(
            role="user",
            parts=[types.Part.from_function_response(name="lookup", response={"result": 7})],
        ),
        actions=EventActions(
            state_delta={"k": {"nested": [1, "x"]}, "f": 1.5},
            artifact_delta={"file": 2},
            requested_tool_confirmations={
                "call-1": ToolConfirmation(hint="sure?", payload={"n": 1}, confirmed=False)
            },
        ),
    ),
    Event(
        author="helper",
        actions=EventActions(
            # A field with a validator of its own (dicts become `AuthConfig`s).
            requested_auth_configs={
                "call-2": {  # type: ignore[dict-item]
                    "auth_scheme": {"type": "apiKey", "name": "key", "in": "header"},
                    "credential_key": "key-1",
                }
            },
            escalate=True,
            transfer_to_agent="other",
        ),
        grounding_metadata=types.GroundingMetadata(
            search_entry_point=types.SearchEntryPoint(sdk_blob=b"\xffblob")
        ),
        custom_metadata={"n": None, "big": 2**70},
        timestamp=100,
    ),
]


def dumped(event: Event) -> dict[str, Any]:
    # The standard decoder: orjson reads integers beyond 64 bits as floats.
    data: dict[str, Any] = json.loads(event.model_dump_json(exclude_none=True))
    return data


@pytest.mark.parametrize("event", EVENTS, ids=range(len(EVENTS)))
def test_rebuilt_equals_validated(event: Event) -> None:
    data = dumped(event)
    rebuilt = rebuild(Event, data)
    assert rebuilt == Event.model_validate_json(event.model_dump_json(exclude_none=True))
    assert rebuilt.model_dump_json(exclude_none=True) == event.model_dump_json(exclude_none=True)
    assert rebuilt.model_fields_set == set(data)


def test_what_it_is_not_sure_of_is_validated() -> None:
    """A key the model does not know, or a value of another type than its field's,
    goes through validation: an unknown key is dropped as ADK's `Event` drops it,
    a wrong value is refused as validation refuses it."""
    data = dumped(EVENTS[0])
    assert rebuild(Event, {**data, "unknown": 1}) == EVENTS[0]
    with pytest.raises(ValidationError, match="parts"):
        rebuild(Event, {**data, "content": {"parts": "not a list"}})
    with pytest.raises(ValidationError, match="author"):
        rebuild(Event, {**data, "author": 5})


class _WithPrivate(BaseModel):
    n: int = 0
    _marker: str | None = PrivateAttr(default=None)
    _seen: list[int] = PrivateAttr(default_factory=list)


class _Marked(BaseModel):
    n: int = 0
    _marker: str | None = PrivateAttr(default=None)


@pytest.mark.parametrize("cls", [_WithPrivate, _Marked, AdkSession])
def test_construct_is_model_construct(cls: type[BaseModel]) -> None:
    """`construct` gives what `model_construct` gives, private attributes too (each model
    its own, whether Pydantic's defaults are set directly or through model_post_init),
    then sets the private values given; a private name the class lacks is refused."""
    values: dict[str, Any] = (
        {"id": "s", "app_name": "a", "user_id": "u"} if cls is AdkSession else {"n": 1}
    )
    built, again = construct(cls, dict(values)), construct(cls, dict(values))
    expected = cls.model_construct(**values)
    assert built == expected
    assert built.__pydantic_private__ == expected.__pydantic_private__
    assert built.model_fields_set == expected.model_fields_set
    assert built.__pydantic_private__ is not again.__pydantic_private__
    marker = "_storage_update_marker" if cls is AdkSession else "_marker"
    marked = construct(cls, dict(values), **{marker: "7@x"})
    assert getattr(marked, marker) == "7@x"
    assert getattr(built, marker) is None
    with pytest.raises(AttributeError, match="_nope"):
        construct(cls, dict(values), _nope=1)
