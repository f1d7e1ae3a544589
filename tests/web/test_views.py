"""How entries read as a chat, for the shapes stored messages take: tool results
inside a message's content (folded into their call), payloads that are not
messages, unknown parts, images that cannot be shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aisopod_session import Message, NewEntry, SessionStore, open_store
from aisopod_session.web._views import entry_views
from aisopod_shared import ImagePart, TextPart, ToolCallPart, ToolResultPart


@pytest.fixture(name="memory_store")
def memory_store_fixture() -> Iterator[SessionStore]:
    # The views are made from entries as any backend returns them.
    with open_store("sqlite:///:memory:") as store:
        yield store


def test_results_in_content_fold_into_their_calls(memory_store: SessionStore) -> None:
    session = memory_store.get_or_create("agent:main:main")
    memory_store.append(
        session.id,
        [
            Message.assistant(tool_calls=[ToolCallPart("c1", "lookup", {"q": "x"})]),
            Message.user([ToolResultPart("c1", "found x", is_error=True)]),
            Message.user([ToolResultPart("c2", "an orphan result"), TextPart("and a note")]),
        ],
    )
    views = entry_views(memory_store.history(session.id).entries)
    assert [v.seq for v in views] == [1, 3]  # the folded result's message is not shown again
    call = views[0].blocks[0]
    assert (call.kind, call.title, call.result, call.is_error) == (
        "tool",
        "lookup",
        "found x",
        True,
    )
    orphan, note = views[1].blocks
    assert (orphan.kind, orphan.title, orphan.result) == (
        "tool",
        "result of c2",
        "an orphan result",
    )
    assert (note.kind, note.text) == ("text", "and a note")


def test_odd_payloads_are_shown_raw_and_bad_images_named(memory_store: SessionStore) -> None:
    session = memory_store.get_or_create("agent:main:main")
    memory_store.append(
        session.id,
        [
            NewEntry("message", {"message": {"role": "user", "content": 5}}),
            NewEntry("message", {"message": {"role": "user", "content": [{"type": "widget"}]}}),
            NewEntry("custom", {"customType": "note", "data": {"a": 1}}),
            Message.user([ImagePart("not base64!", "image/png")]),
        ],
    )
    not_message, unknown_part, custom, image = entry_views(memory_store.history(session.id).entries)
    assert not_message.blocks[0].kind == "raw"
    assert '"content": 5' in not_message.blocks[0].text
    assert unknown_part.blocks[0].kind == "raw"
    assert "widget" in unknown_part.blocks[0].text
    assert (custom.role, custom.blocks[0].title) == ("custom", "custom")
    assert image.blocks[0].text == "[image with undecodable data, not shown]"
