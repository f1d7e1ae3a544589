"""What must hold of a store after any mix of operations, whatever happened during it."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from aisopod_shared import TokenUsage
from tests.session.snapshot import all_entries, all_sessions


def check_invariants(store: Any) -> dict[str, int]:
    """Assert the store's invariants; return how much was checked.

    Gapless seqs from 1; counters equal to the entries; usage totals equal to
    the sum of the entries' usage; the leaf an existing entry; one current
    session per key, and at most one active session per key.
    """
    sessions = all_sessions(store)
    active_per_key: dict[str, int] = defaultdict(int)
    entries_checked = 0
    for session in sessions:
        entries = all_entries(store, session.id)
        entries_checked += len(entries)
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1)), session.id
        assert session.entry_count == len(entries), session.id
        assert session.message_count == sum(1 for e in entries if e.type == "message")
        assert session.compaction_count == sum(1 for e in entries if e.type == "compaction")
        total = sum((e.usage for e in entries if e.usage is not None), TokenUsage())
        assert (session.usage.input, session.usage.output, session.usage.total) == (
            total.input,
            total.output,
            total.total,
        ), session.id
        assert math.isclose(session.usage.cost, total.cost, rel_tol=1e-9, abs_tol=1e-12)
        assert 0 <= session.leaf_seq <= len(entries)
        for entry in entries:
            assert entry.parent_seq is None or 1 <= entry.parent_seq < entry.seq
        if session.status == "active" and session.key is not None:
            active_per_key[session.key] += 1
    keys = {s.key for s in sessions if s.key is not None}
    for key in keys:
        current = store.current(key)
        assert active_per_key[key] <= 1, f"two active sessions for {key}"
        if current is not None:
            assert current.key == key
    return {"sessions": len(sessions), "entries": entries_checked, "keys": len(keys)}
