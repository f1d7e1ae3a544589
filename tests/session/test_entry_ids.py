"""Entry ids the store makes, and the record types it builds positionally."""

from __future__ import annotations

import random

import attrs

from aisopod_session import Entry
from aisopod_session._ids import entry_id, new_entry_suffix, new_entry_suffixes


def test_an_entry_id_is_the_seq_in_hex_then_the_suffix() -> None:
    assert entry_id(1, "abcd") == "00000001abcd"
    assert entry_id(0xFFFFFFFF, "0000") == "ffffffff0000"
    assert entry_id(2**32, "0a0b") == "1000000000a0b"  # past 8 digits: longer, never cut


def test_suffixes_leave_the_callers_random_sequence_alone() -> None:
    random.seed(7)
    expected = [random.random() for _ in range(3)]
    random.seed(7)
    suffixes = {new_entry_suffix() for _ in range(50)}
    batch = new_entry_suffixes(1000)
    assert [random.random() for _ in range(3)] == expected
    for drawn in (suffixes, set(batch)):
        assert len(drawn) > 1
        assert all(len(s) == 4 and int(s, 16) >= 0 for s in drawn)
    assert len(batch) == 1000
    assert len(new_entry_suffixes(1)) == 1


def test_entry_fields_keep_the_order_the_store_builds_them_in() -> None:
    assert [f.name for f in attrs.fields(Entry)] == [
        "session_id",
        "seq",
        "id",
        "parent_seq",
        "type",
        "role",
        "payload",
        "text",
        "usage",
        "created_at",
        "idempotency_key",
        "tokens",
    ]
