"""`rebuild`: a model rebuilt from its own JSON dump equals what Pydantic's validation
of that dump gives, for every shape of ADK event the adapter reads back; `construct`
equals `model_construct`; `copies_of` makes deep copies."""

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

from aisopod_session.adapters._pydantic_rebuild import construct, copies_of, rebuild

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


def mutable_ids(value: Any) -> set[int]:
    """The ids of every mutable object reachable from `value` (through models' fields,
    fields set, private and extra values, and containers)."""
    found: set[int] = set()

    def walk(item: Any) -> None:
        if isinstance(item, BaseModel):
            found.add(id(item))
            found.add(id(item.__pydantic_fields_set__))
            for part in (item.__dict__, item.__pydantic_private__, item.__pydantic_extra__):
                if part is not None:
                    walk(part)
        elif isinstance(item, dict):
            found.add(id(item))
            for inner in item.values():
                walk(inner)
        elif isinstance(item, list | set | bytearray):
            found.add(id(item))
            for inner in item if not isinstance(item, bytearray) else ():
                walk(inner)
        elif isinstance(item, tuple | frozenset):
            for inner in item:
                walk(inner)

    walk(value)
    return found


@pytest.mark.parametrize("event", EVENTS, ids=range(len(EVENTS)))
def test_copies_are_deep_copies(event: Event) -> None:
    """`copies_of` makes what `model_copy(deep=True)` makes: equal models, with the same
    fields set, that share no mutable value with the model or with one another."""
    model = rebuild(Event, dumped(event))
    make = copies_of(model)
    first, second = make(), make()
    deep = model.model_copy(deep=True)
    for made in (first, second):
        assert made == model == deep
        assert made.model_dump_json() == deep.model_dump_json()
        assert made.model_fields_set == model.model_fields_set
    assert not mutable_ids(first) & mutable_ids(model)
    assert not mutable_ids(first) & mutable_ids(second)


def test_a_copy_changed_leaves_the_next_as_the_model() -> None:
    """What a caller changes in a copy (nested values, fields set) is in no other copy."""
    model = rebuild(Event, dumped(EVENTS[2]))
    expected = model.model_copy(deep=True)
    make = copies_of(model)
    changed = make()
    assert changed.content is not None
    assert changed.content.parts is not None
    changed.content.parts[0].text = "changed"
    changed.content.parts.append(types.Part(text="more"))
    changed.actions.state_delta["k"]["nested"].append(2)
    payload = changed.actions.requested_tool_confirmations["call-1"].payload
    assert isinstance(payload, dict)
    payload["n"] = 2
    changed.branch = "other"
    assert make() == model == expected
    assert make().model_fields_set == expected.model_fields_set


class _Odd(BaseModel, extra="allow"):
    """Private values that are mutable, extra fields, a value of no JSON type."""

    data: Any = None
    pair: tuple[int, ...] = ()
    _notes: list[str] = PrivateAttr(default_factory=list)


def test_copies_of_private_extra_and_other_values() -> None:
    model = _Odd(data=bytearray(b"ab"), pair=(1, 2), more={"x": [1]})  # type: ignore[call-arg]
    model._notes.append("n")
    make = copies_of(model)
    first, second = make(), make()
    assert first == model == second
    assert first.__pydantic_private__ == {"_notes": ["n"]}
    assert first.model_extra == {"more": {"x": [1]}}
    assert not mutable_ids(first) & mutable_ids(model)
    assert not mutable_ids(first) & mutable_ids(second)
