"""Entries as people read a chat: what each entry shows, tool calls folded with
their results, reasoning and raw payloads collapsed.

A page of entries becomes a list of `EntryView`s; a tool result whose call is
on the same page is shown inside the call and not again on its own.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

import attrs
import orjson

from aisopod_session._errors import AisopodError
from aisopod_session._model import Entry
from aisopod_shared import (
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    content_text,
)

__all__ = ["Block", "EntryView", "block", "entry_views", "pretty_json"]

TOOL_ROLES = ("tool", "toolResult")
"""Roles of messages that carry one tool call's result."""

# Raster formats only: an image is shown through a data: URL in <img>, and a
# format a browser might treat as a document (SVG) is never handed to it.
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

MAX_SHOWN = 10_000
"""The most characters of one text a page shows: a browser lays out a line of
100,000 characters for seconds, and the transcript and the API have it all."""

BlockKind = Literal["text", "thinking", "image", "tool", "note", "raw"]


def _cut(text: str) -> str:
    return text[:MAX_SHOWN]


def _cut_optional(text: str | None) -> str | None:
    return None if text is None else text[:MAX_SHOWN]


class Block(NamedTuple):
    """One thing an entry shows. `text` is untrusted and escaped by the template;
    it and `result` are cut at `MAX_SHOWN` characters (`left_out` says how many
    were left out). Made by `block`, which does the cutting.

    A named tuple: a page builds one or more per entry, and tuples are the
    cheapest records Python makes."""

    kind: BlockKind
    text: str
    title: str
    result: str | None
    """A tool call's result (its text), when it is on the page."""
    left_out: int
    is_error: bool
    image_url: str | None
    """A data: URL of a raster image; only built from decoded, re-encoded bytes."""


def block(
    kind: BlockKind,
    text: str = "",
    *,
    title: str = "",
    result: str | None = None,
    is_error: bool = False,
    image_url: str | None = None,
) -> Block:
    """A `Block`, its text and result cut to `MAX_SHOWN` characters together."""
    whole = len(text) + (len(result) if result is not None else 0)
    if whole <= MAX_SHOWN:
        return Block(kind, text, title, result, 0, is_error, image_url)
    text, result = _cut(text), _cut_optional(result)
    shown = len(text) + (len(result) if result is not None else 0)
    return Block(kind, text, title, result, whole - shown, is_error, image_url)


class EntryView(NamedTuple):
    """One entry of a page, ready for the template (a named tuple, as `Block`)."""

    seq: int
    id: str
    type: str
    role: str
    created_at: datetime
    parent_seq: int | None
    blocks: tuple[Block, ...]
    tokens: int

    @property
    def branches_from(self) -> int | None:
        """The entry this one hangs from, when that is not the one just before it."""
        if self.parent_seq is not None and self.parent_seq != self.seq - 1:
            return self.parent_seq
        return None


def pretty_json(value: Any) -> str:
    """A JSON value indented for reading (never evaluated, only shown as text)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def _message_of(entry: Entry) -> Message | None:
    try:
        return entry.message
    except AisopodError:
        return None  # an imported payload that is not message-shaped: shown raw


def _result_text(content: str | Sequence[Any]) -> str:
    return content_text(content)


def _results_on_page(messages: Mapping[int, Message]) -> dict[str, tuple[str, bool]]:
    """Tool call id -> (result text, is error), for the results in a page."""
    results: dict[str, tuple[str, bool]] = {}
    for message in messages.values():
        if message.role in TOOL_ROLES and message.tool_call_id:
            results[message.tool_call_id] = (message.text, bool(message.is_error))
        if isinstance(message.content, tuple):
            for part in message.content:
                if isinstance(part, ToolResultPart):
                    results[part.tool_call_id] = (_result_text(part.content), part.is_error)
    return results


def _image(part: ImagePart) -> Block:
    if part.mime_type not in _IMAGE_TYPES:
        return block("note", f"[image of type {part.mime_type}, not shown]")
    try:
        data = base64.b64decode(part.data, validate=True)
    except (binascii.Error, ValueError):
        return block("note", "[image with undecodable data, not shown]")
    encoded = base64.b64encode(data).decode("ascii")
    return block("image", image_url=f"data:{part.mime_type};base64,{encoded}")


def _message_blocks(
    message: Message, results: Mapping[str, tuple[str, bool]], folded: set[str]
) -> list[Block]:
    content = message.content
    if content is None or isinstance(content, str):
        return [block("text", content)] if content else []
    blocks: list[Block] = []
    for part in content:
        if isinstance(part, TextPart):
            if part.text:
                blocks.append(block("text", part.text))
        elif isinstance(part, ThinkingPart):
            blocks.append(block("thinking", part.thinking))
        elif isinstance(part, ImagePart):
            blocks.append(_image(part))
        elif isinstance(part, ToolCallPart):
            found = results.get(part.id)
            if found is not None:
                folded.add(part.id)
            blocks.append(
                block(
                    "tool",
                    pretty_json(dict(part.arguments)),
                    title=part.name,
                    result=found[0] if found else None,
                    is_error=found[1] if found else False,
                )
            )
        elif isinstance(part, ToolResultPart):
            if part.tool_call_id not in folded:
                blocks.append(
                    block(
                        "tool",
                        title=f"result of {part.tool_call_id}",
                        result=_result_text(part.content),
                        is_error=part.is_error,
                    )
                )
        else:
            blocks.append(block("raw", pretty_json(attrs.asdict(part)), title="part"))
    return blocks


def _other_blocks(entry: Entry) -> list[Block]:
    payload = dict(entry.payload)
    if entry.type == "compaction":
        return [
            block("note", str(payload.get("summary", "")), title="compaction summary"),
            block("note", f"kept from entry {payload.get('firstKeptEntryId', '?')}"),
        ]
    if entry.type == "branch_summary":
        return [block("note", str(payload.get("summary", "")), title="abandoned branch")]
    return [block("raw", pretty_json(payload), title=entry.type)]


def entry_views(entries: Iterable[Entry]) -> list[EntryView]:
    """A page of entries as views, tool results folded into calls on the page."""
    page = list(entries)
    messages = {e.seq: m for e in page if (m := _message_of(e)) is not None}
    results = _results_on_page(messages)
    folded: set[str] = set()
    built: list[tuple[Entry, Message | None, list[Block]]] = []
    for entry in page:
        message = messages.get(entry.seq)
        if message is None and entry.type == "message":
            blocks = [block("raw", pretty_json(dict(entry.payload)), title="message")]
        elif message is None:
            blocks = _other_blocks(entry)
        else:
            blocks = _message_blocks(message, results, folded)
        built.append((entry, message, blocks))
    views: list[EntryView] = []
    for entry, message, blocks in built:
        if message is not None and message.role in TOOL_ROLES and message.tool_call_id in folded:
            continue  # shown inside its call
        if message is not None and not blocks and _only_folded_results(message, folded):
            continue
        if message is not None and message.role in TOOL_ROLES and message.tool_call_id:
            blocks = [
                block(
                    "tool",
                    title=message.tool_name or f"result of {message.tool_call_id}",
                    result=message.text,
                    is_error=bool(message.is_error),
                )
            ]
        views.append(
            EntryView(
                seq=entry.seq,
                id=entry.id,
                type=entry.type,
                role=entry.role or entry.type,
                created_at=entry.created_at,
                parent_seq=entry.parent_seq,
                blocks=tuple(blocks),
                tokens=entry.tokens,
            )
        )
    return views


def _only_folded_results(message: Message, folded: set[str]) -> bool:
    content = message.content
    return (
        isinstance(content, tuple)
        and bool(content)
        and all(isinstance(p, ToolResultPart) and p.tool_call_id in folded for p in content)
    )
