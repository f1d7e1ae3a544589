"""Bad input gets a typed error and changes nothing; SQL in strings is just text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aisopod_session import (
    AisopodError,
    ConflictError,
    DuplicateEntryId,
    InvalidInput,
    InvalidPayload,
    InvalidSessionKey,
    NewEntry,
    Origin,
    PayloadTooLarge,
    SessionNotFound,
)
from aisopod_shared import Message, TextPart, ToolCallPart
from tests.session.snapshot import snapshot

SQL = [
    "'; DROP TABLE sessions; --",
    'Robert"); DELETE FROM entries; --',
    "1 OR 1=1",
    "%s %(x)s ? :name $1",
    "\\'; SELECT pg_sleep(10); --",
]


@pytest.fixture(name="seeded")
def seeded_fixture(store: Any) -> Any:
    """A store with a little in it, so that 'nothing changed' means something."""
    session = store.get_or_create("agent:main:main", metadata={"a": 1})
    store.append(session.id, [Message.user("hi"), Message.assistant("hello")])
    store.get_or_create("agent:ops:telegram:group:g1")
    return store


def _rejected(store: Any, action: Callable[[], Any], error: type[Exception]) -> None:
    before = snapshot(store)
    with pytest.raises(error):
        action()
    assert snapshot(store) == before


def _main(store: Any) -> str:
    return str(store.current("agent:main:main").id)


@pytest.mark.parametrize(
    "key",
    ["", "   ", "agent:", "agent:main", "agent::x", "Agent:x", "key\x00nul", "\ud800", "k" * 5000],
)
def test_empty_or_malformed_keys_are_rejected(seeded: Any, key: str) -> None:
    for call in (seeded.get_or_create, seeded.current, seeded.reset):
        _rejected(seeded, lambda call=call: call(key), InvalidSessionKey)  # type: ignore[misc]


@pytest.mark.parametrize("key", [None, 42, b"agent:main:main", ["agent:main:main"]])
def test_keys_that_are_not_strings_are_rejected(seeded: Any, key: Any) -> None:
    _rejected(seeded, lambda: seeded.get_or_create(key), InvalidSessionKey)


def test_unknown_session_ids_are_rejected(seeded: Any) -> None:
    for action in (
        lambda: seeded.get("missing"),
        lambda: seeded.history("missing"),
        lambda: seeded.append("missing", Message.user("x")),
        lambda: seeded.patch("missing", title="x"),
    ):
        _rejected(seeded, action, SessionNotFound)


def test_a_payload_over_the_limit_is_rejected(open_test_store: Any) -> None:
    store = open_test_store(max_payload_bytes=1024)
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("small"))
    before = snapshot(store)
    with pytest.raises(PayloadTooLarge) as caught:
        store.append(session.id, [Message.user("fits"), Message.user("x" * 2000)])
    assert caught.value.limit == 1024
    assert caught.value.size > 1024
    assert snapshot(store) == before


def test_the_default_payload_limit_is_16_mib(seeded: Any) -> None:
    session_id = _main(seeded)
    seeded.append(session_id, Message.user("y" * (1024 * 1024)))
    _rejected(
        seeded,
        lambda: seeded.append(session_id, Message.user("x" * (16 * 1024 * 1024))),
        PayloadTooLarge,
    )


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Message.user("lone \ud800 surrogate"),
        lambda: Message.user("nul \x00 char"),
        lambda: Message.assistant("", tool_calls=[ToolCallPart("c", "f", {"x": float("nan")})]),
        lambda: Message.assistant("", tool_calls=[ToolCallPart("c", "f", {"x": float("inf")})]),
        lambda: Message.assistant("", tool_calls=[ToolCallPart("c", "f", {"x": 2**70})]),
        lambda: NewEntry.custom("ext", {"value": float("-inf")}),
        lambda: NewEntry.custom("ext", {"value": object()}),
        lambda: NewEntry("message", {"message": "not an object"}),
    ],
)
def test_content_json_cannot_carry_is_rejected(seeded: Any, bad: Callable[[], Any]) -> None:
    session_id = _main(seeded)
    _rejected(
        seeded, lambda: seeded.append(session_id, [Message.user("ok"), bad()]), InvalidPayload
    )


def test_things_that_are_not_entries_are_rejected(seeded: Any) -> None:
    session_id = _main(seeded)
    for bad in ("text", {"role": "user"}, [Message.user("ok"), "text"], 42):
        _rejected(seeded, lambda bad=bad: seeded.append(session_id, bad), InvalidPayload)  # type: ignore[misc]


def test_bad_metadata_is_rejected(seeded: Any) -> None:
    session_id = _main(seeded)
    _rejected(seeded, lambda: seeded.patch(session_id, metadata={"x": float("nan")}), InvalidInput)
    _rejected(seeded, lambda: seeded.patch(session_id, metadata=["not", "object"]), InvalidInput)
    _rejected(seeded, lambda: seeded.patch(session_id, title="t\x00"), InvalidInput)
    _rejected(
        seeded, lambda: seeded.get_or_create("agent:main:new", metadata={"x": {1, 2}}), InvalidInput
    )


def test_a_duplicate_entry_id_is_rejected_and_the_batch_is_not_half_written(seeded: Any) -> None:
    session_id = _main(seeded)
    seeded.append(session_id, NewEntry.custom("ext", 1).__class__("custom", {}, id="fixed"))
    _rejected(
        seeded,
        lambda: seeded.append(
            session_id, [Message.user("first"), NewEntry("custom", {"x": 1}, id="fixed")]
        ),
        DuplicateEntryId,
    )
    _rejected(
        seeded,
        lambda: seeded.append(
            session_id, [NewEntry("custom", {}, id="same"), NewEntry("custom", {}, id="same")]
        ),
        DuplicateEntryId,
    )


def test_bad_paging_arguments_are_rejected(seeded: Any) -> None:
    session_id = _main(seeded)
    for kwargs in (
        {"last": 0},
        {"last": -1},
        {"limit": 10**9},
        {"last": 5, "limit": 5},
        {"before": 3, "after": 1},
        {"after": -1},
        {"last": True},
        {"last": "5"},
    ):
        with pytest.raises(InvalidInput):
            seeded.history(session_id, **kwargs)


def test_bad_expected_versions_and_idempotency_keys_are_rejected(seeded: Any) -> None:
    session_id = _main(seeded)
    for kwargs in (
        {"expected_version": -1},
        {"expected_version": "1"},
        {"idempotency_key": ""},
        {"idempotency_key": 7},
    ):
        _rejected(
            seeded,
            lambda kwargs=kwargs: seeded.append(session_id, Message.user("x"), **kwargs),  # type: ignore[misc]
            InvalidInput,
        )
    _rejected(
        seeded,
        lambda: seeded.append(session_id, Message.user("x"), expected_version=999),
        ConflictError,
    )


def test_every_error_is_an_aisopod_error(seeded: Any) -> None:
    actions: list[Callable[[], Any]] = [
        lambda: seeded.get_or_create(""),
        lambda: seeded.get("missing"),
        lambda: seeded.history(_main(seeded), last=0),
    ]
    for action in actions:
        with pytest.raises(AisopodError):
            action()


@pytest.mark.parametrize("text", SQL)
def test_sql_in_every_string_field_is_stored_as_text(store: Any, text: str) -> None:
    key = f"agent:main:{text}"
    session = store.get_or_create(
        key,
        origin=Origin(channel=text, account=text, peer=text, thread=text, label=text),
        title=text,
        metadata={text: text},
    )
    store.append(
        session.id,
        [
            Message.user(text),
            Message.assistant(
                [TextPart(text)], tool_calls=[ToolCallPart(text, text, {text: text})]
            ),
            Message.tool_result(text, text, tool_name=text),
            NewEntry("custom", {"customType": text, "data": text}, id=text),
        ],
        idempotency_key=text,
    )
    store.patch(session.id, title=text, metadata={text: [text]})
    got = store.get(session.id)
    assert got.key == key.lower()
    assert got.title == text
    assert got.metadata == {text: [text]}
    assert got.origin.channel == text
    assert [e.text for e in store.history(session.id).entries][:3] == [text, text, text]
    assert store.history(session.id).entries[3].id == text
    assert {s.id for s in store.list(key_prefix=key.lower()).sessions} == {session.id}
    assert store.list(channel=text).sessions[0].id == session.id
    assert store.current(key).id == session.id
    assert len(store.append(session.id, Message.user("x"), idempotency_key=text)) == 4
