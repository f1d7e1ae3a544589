"""Hypothesis strategies for aisopod_shared values: JSON data, parts, usages, messages."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from aisopod_shared import (
    ImagePart,
    Message,
    Part,
    TextPart,
    ThinkingPart,
    TokenUsage,
    ToolCallPart,
    ToolResultPart,
    UnknownPart,
)

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1

# Integers orjson writes (signed and unsigned 64-bit), finite floats, and
# strings without lone surrogates (hypothesis never generates those by default).
json_scalars: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(min_value=INT64_MIN, max_value=UINT64_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.text(max_size=8), json_values, max_size=4
)

# Keys no message or part knows (they all start with "x"), for `extra`.
unknown_keys = st.text(string.ascii_letters + string.digits, min_size=1, max_size=8).map(
    lambda s: "x" + s
)
extras: st.SearchStrategy[dict[str, Any]] = st.dictionaries(unknown_keys, json_values, max_size=2)

short_text = st.text(max_size=20)

text_parts = st.builds(TextPart, short_text, extra=extras)
image_parts = st.builds(
    ImagePart,
    st.text(string.ascii_letters + string.digits + "+/=", max_size=20),
    st.sampled_from(["image/png", "image/jpeg", "image/webp"]),
    extra=extras,
)
thinking_parts = st.builds(ThinkingPart, short_text, extra=extras)
tool_call_parts = st.builds(ToolCallPart, short_text, short_text, json_objects, extra=extras)
unknown_parts = st.builds(
    UnknownPart,
    st.builds(
        lambda kind, rest: {**rest, "type": kind},
        st.sampled_from(["x-custom", "redacted_thinking", "audio"]),
        json_objects,
    ),
)
leaf_parts: st.SearchStrategy[Part] = st.one_of(
    text_parts, image_parts, thinking_parts, tool_call_parts, unknown_parts
)
tool_result_parts = st.builds(
    ToolResultPart,
    short_text,
    short_text | st.lists(leaf_parts, max_size=3).map(tuple),
    st.booleans(),
    extra=extras,
)
parts: st.SearchStrategy[Part] = leaf_parts | tool_result_parts

counts = st.integers(min_value=0, max_value=2**40)
costs = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
usages: st.SearchStrategy[TokenUsage] = st.builds(
    TokenUsage, counts, counts, counts, counts, cost=costs
) | st.builds(TokenUsage, counts, counts, counts, counts, counts, costs)

# "toolResult" is left out: it is how JSON spells the API role "tool".
roles = st.sampled_from(["system", "user", "assistant", "tool", "bashExecution", "custom"])
optional_text = st.none() | short_text

messages: st.SearchStrategy[Message] = st.builds(
    Message,
    roles,
    st.none() | short_text | st.lists(parts, max_size=4).map(tuple),
    tool_call_id=optional_text,
    tool_name=optional_text,
    is_error=st.none() | st.booleans(),
    usage=st.none() | usages,
    model=optional_text,
    provider=optional_text,
    stop_reason=optional_text,
    timestamp=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    extra=extras,
)

# Fixed offsets strictly inside (-24h, 24h), plus UTC itself.
fixed_offsets = st.just(UTC) | st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
# Years 2..9998 so that converting to UTC never leaves datetime's range.
aware_datetimes = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=fixed_offsets
)
