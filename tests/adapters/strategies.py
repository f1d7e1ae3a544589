"""Hypothesis strategies for the adapter tests: JSON values, including the awkward ones."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

AWKWARD_TEXT = ("\x00", "\ud800", "\udfff", "\\u0000", "a\\\\u0000b", "\u2028", "é", "🦜")
"""Strings the store cannot hold as they are (NUL, lone surrogates, NUL's JSON
escape spelled out), and some it can that are easy to get wrong."""


def texts() -> st.SearchStrategy[str]:
    """Any text, often with an awkward piece in it."""
    awkward = st.builds(
        lambda before, piece, after: before + piece + after,
        st.text(max_size=5),
        st.sampled_from(AWKWARD_TEXT),
        st.text(max_size=5),
    )
    return st.text(max_size=20) | awkward


def json_values() -> st.SearchStrategy[Any]:
    """JSON data: integers of any size, floats but NaN (infinities included), any text."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts()
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts(), inner, max_size=3),
        max_leaves=8,
    )


def extra_fields() -> st.SearchStrategy[dict[str, Any]]:
    """Fields a framework may add to an item that the adapter knows nothing about."""
    return st.dictionaries(st.sampled_from(["x_extra", "metadata", "status", "id"]), json_values())
