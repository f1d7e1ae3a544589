"""Transcript test helpers: writing files, comparing JSON exactly, and hypothesis
strategies for whole transcripts of every version.

`expected_export` is a model of the upgrade rules written independently of
`aisopod_session.transfer`: what exporting an imported file must give.
"""

from __future__ import annotations

import copy
import functools
import string
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

from aisopod_session._entries import iso_timestamp

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1
HEX = "0123456789abcdef"

JsonLine = dict[str, Any] | str


# --- files ---------------------------------------------------------------------------


def write_jsonl(path: Path, lines: Iterable[JsonLine], *, final_newline: bool = True) -> Path:
    """Write `lines` (objects, or raw text for broken lines) one per line."""
    rendered = [line if isinstance(line, str) else orjson.dumps(line).decode() for line in lines]
    text = "\n".join(rendered) + ("\n" if final_newline else "")
    path.write_text(text, encoding="utf-8")
    return path


def read_jsonl(text: str) -> list[dict[str, Any]]:
    """Every line of a JSONL text, parsed (split at newlines only: `str.splitlines`
    would also split inside strings holding U+0085 or U+2028)."""
    return [orjson.loads(line) for line in text.split("\n") if line.strip()]


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, strictly: an integer is not a float, `True` is not 1,
    and floats are equal only when they print the same (so -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return repr(a) == repr(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_same_json(a: Any, b: Any) -> None:
    assert same_json(a, b), f"{a!r}\n!=\n{b!r}"


# --- the model of an import followed by an export ------------------------------------


def version_of(header: dict[str, Any]) -> int:
    version = header.get("version", 1)
    assert isinstance(version, int)
    return version


def expected_export(
    original: Sequence[dict[str, Any]], exported: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What export(import(original)) must be, line for line.

    Version 1 ids are the importer's choice, so they are taken from `exported`
    (after checking they are 8 hex characters, unique); everything else follows
    from the spec: parents chained, `firstKeptEntryIndex` -> `firstKeptEntryId`,
    `hookMessage` -> `custom` below version 3, header written as version 3.
    """
    header, *entries = (copy.deepcopy(line) for line in original)
    version = version_of(header)
    header["version"] = 3
    header.setdefault("cwd", "")
    if version == 1:
        ids = [line["id"] for line in exported[1:]]
        assert all(len(i) == 8 and set(i) <= set(HEX) for i in ids), ids
        assert len(set(ids)) == len(ids)
        for position, entry in enumerate(entries, start=1):
            entry["id"] = ids[position - 1]
            entry["parentId"] = ids[position - 2] if position > 1 else None
            index = entry.get("firstKeptEntryIndex")
            if entry["type"] == "compaction" and type(index) is int:
                del entry["firstKeptEntryIndex"]
                if 1 <= index <= position:
                    entry["firstKeptEntryId"] = ids[index - 1]
    if version < 3:
        for entry in entries:
            message = entry.get("message") if entry["type"] == "message" else None
            if isinstance(message, dict) and message.get("role") == "hookMessage":
                message["role"] = "custom"
    return [header, *entries]


# --- strategies ----------------------------------------------------------------------

# Text every backend stores: no NUL (PostgreSQL refuses it, so every backend
# does) and no lone surrogates (not UTF-8). The store spots NUL by its JSON
# escape, so a literal backslash-u0000 is left out too.
text = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12
).filter(lambda s: "\\u0000" not in s)
# Numbers as pi, a JavaScript program, writes them: a whole number is written
# without a fraction (JSON.stringify(2.0) is "2"), so a float read from a pi file
# is never whole (below 1e21) and never -0. Other spellings are tested on their own.
js_floats = st.floats(allow_nan=False, allow_infinity=False).filter(
    lambda f: not f.is_integer() or abs(f) >= 1e21
)
numbers = st.integers(INT64_MIN, UINT64_MAX) | js_floats
scalars = st.none() | st.booleans() | numbers | text
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
# Fields no reader knows: kept verbatim all the same.
unknown_fields = st.dictionaries(
    st.text(string.ascii_letters, min_size=1, max_size=6).map(lambda s: "x" + s),
    values,
    max_size=2,
)
iso_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(iso_timestamp)
millis = st.integers(946_684_800_000, 4_102_444_800_000)
entry_ids = st.text(HEX, min_size=8, max_size=8)
counts = st.integers(0, 10**9)
costs = st.floats(0, 100, allow_nan=False)


def _with(base: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` plus unknown fields (which never override the known ones)."""
    return st.builds(lambda b, extra: {**extra, **b}, base, unknown_fields)


text_part = st.fixed_dictionaries({"type": st.just("text"), "text": text})
image_part = st.fixed_dictionaries(
    {
        "type": st.just("image"),
        "data": st.text(string.ascii_letters + "+/=", max_size=16),
        "mimeType": st.sampled_from(["image/png", "image/jpeg"]),
    }
)
thinking_part = st.fixed_dictionaries({"type": st.just("thinking"), "thinking": text})
tool_call_part = st.fixed_dictionaries(
    {
        "type": st.just("toolCall"),
        "id": text,
        "name": text,
        "arguments": st.dictionaries(text, values, max_size=3),
    }
)
usages = st.fixed_dictionaries(
    {
        "input": counts,
        "output": counts,
        "cacheRead": counts,
        "cacheWrite": counts,
        "cost": st.fixed_dictionaries(
            {
                "input": costs,
                "output": costs,
                "cacheRead": costs,
                "cacheWrite": costs,
                "total": costs,
            }
        ),
    },
    optional={"totalTokens": counts},
)


@functools.cache
def messages(custom_role: str) -> st.SearchStrategy[dict[str, Any]]:
    """Agent messages of every role (`custom_role`: `custom`, or `hookMessage` before v3)."""
    user = st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": text | st.lists(text_part | image_part, max_size=3),
            "timestamp": millis,
        }
    )
    assistant = st.fixed_dictionaries(
        {
            "role": st.just("assistant"),
            "content": st.lists(text_part | thinking_part | tool_call_part, max_size=3),
            "api": text,
            "provider": text,
            "model": text,
            "usage": usages,
            "stopReason": st.sampled_from(["stop", "length", "toolUse", "error", "aborted"]),
            "timestamp": millis,
        },
        optional={"errorMessage": text},
    )
    tool_result = st.fixed_dictionaries(
        {
            "role": st.just("toolResult"),
            "toolCallId": text,
            "toolName": text,
            "content": st.lists(text_part | image_part, max_size=2),
            "isError": st.booleans(),
            "timestamp": millis,
        },
        optional={"details": values},
    )
    bash = st.fixed_dictionaries(
        {
            "role": st.just("bashExecution"),
            "command": text,
            "output": text,
            "exitCode": st.integers(-1, 255),
            "cancelled": st.booleans(),
            "truncated": st.booleans(),
            "timestamp": millis,
        },
        optional={"fullOutputPath": text, "excludeFromContext": st.booleans()},
    )
    custom = st.fixed_dictionaries(
        {
            "role": st.just(custom_role),
            "customType": text,
            "content": text | st.lists(text_part, max_size=2),
            "display": st.booleans(),
            "timestamp": millis,
        },
        optional={"details": values},
    )
    other = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["branchSummary", "compactionSummary", "x-role"]),
            "summary": text,
            "timestamp": millis,
        }
    )
    return st.one_of(*(_with(s) for s in (user, assistant, tool_result, bash, custom, other)))


@functools.cache
def entry_bodies(version: int) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """(type, fields but `type`/`id`/`parentId`/`timestamp`) for every entry type."""
    first_kept = (
        st.fixed_dictionaries({"firstKeptEntryIndex": st.integers(-1, 30)})
        if version == 1
        else st.fixed_dictionaries({"firstKeptEntryId": entry_ids})
    )
    kinds: list[tuple[str, st.SearchStrategy[dict[str, Any]]]] = [
        (
            "message",
            st.fixed_dictionaries(
                {"message": messages("hookMessage" if version < 3 else "custom")}
            ),
        ),
        ("model_change", st.fixed_dictionaries({"provider": text, "modelId": text})),
        (
            "thinking_level_change",
            st.fixed_dictionaries(
                {"thinkingLevel": st.sampled_from(["off", "minimal", "low", "medium", "high"])}
            ),
        ),
        (
            "compaction",
            st.builds(
                lambda kept, rest: {**rest, **kept},
                first_kept,
                st.fixed_dictionaries(
                    {"summary": text, "tokensBefore": counts},
                    optional={"details": values, "fromHook": st.booleans()},
                ),
            ),
        ),
        (
            "branch_summary",
            st.fixed_dictionaries(
                {"fromId": entry_ids, "summary": text},
                optional={"details": values, "fromHook": st.booleans()},
            ),
        ),
        ("custom", st.fixed_dictionaries({"customType": text, "data": values})),
        (
            "custom_message",
            st.fixed_dictionaries(
                {
                    "customType": text,
                    "content": text | st.lists(text_part, max_size=2),
                    "display": st.booleans(),
                },
                optional={"details": values},
            ),
        ),
        ("label", st.fixed_dictionaries({"targetId": entry_ids}, optional={"label": text})),
        ("session_info", st.fixed_dictionaries({}, optional={"name": text})),
        ("x_future_type", st.fixed_dictionaries({"payload": values})),
    ]
    return st.one_of(*(st.tuples(st.just(kind), _with(body)) for kind, body in kinds))


@st.composite
def transcripts(draw: st.DrawFn, version: int) -> list[dict[str, Any]]:
    """A transcript of `version` as parsed lines (header id `SESSION`: replace it)."""
    size = draw(st.integers(1, 12))
    ids = draw(st.lists(entry_ids, min_size=size, max_size=size, unique=True))
    header: dict[str, Any] = {"type": "session"}
    if version > 1:
        header["version"] = version
    header.update(
        {"id": "SESSION", "timestamp": draw(iso_times), "cwd": draw(text), **draw(unknown_fields)}
    )
    lines = [header]
    for n in range(size):
        kind, body = draw(entry_bodies(version))
        entry: dict[str, Any] = {"type": kind}
        if version > 1:
            # Mostly the entry before; sometimes an earlier one (a branch) or none.
            parent = n - 1 if n == 0 else draw(st.just(n - 1) | st.integers(-1, n - 1))
            entry["id"] = ids[n]
            entry["parentId"] = ids[parent] if parent >= 0 else None
        entry["timestamp"] = draw(iso_times | text)
        lines.append({**entry, **body})
    return lines
