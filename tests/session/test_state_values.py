"""State values read back exactly as written, on every backend and both APIs."""

from __future__ import annotations

from typing import Any

import pytest

VALUES = [
    "pt",
    "123",  # a string that is also JSON text: still the string
    "true",
    "",
    0,
    -2.5,
    True,
    None,
    [1, "a", None],
    {"nested": {"text": "x"}},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_value_of_every_scope_reads_back_as_written(store: Any, value: Any) -> None:
    """A JSON string is the string it was, in the shared scopes too (the PostgreSQL
    driver hands their values over decoded)."""
    session = store.get_or_create("agent:main:telegram:direct:123", user_id="123")
    written = {"step": value, "user:lang": value, "agent:tz": value}
    assert store.update_state(session.id, written) == written
    assert store.state(session.id) == written
    assert store.user_state("123") == {"lang": value}
    assert store.agent_state() == {"tz": value}
