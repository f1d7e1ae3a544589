"""kill -9 a writer at random points, over and over, on every backend."""

from __future__ import annotations

import random
import re
from collections import Counter

from aisopod_session import open_store
from tests.session.invariants import check_invariants
from tests.session.snapshot import all_entries
from tests.session.test_crash import BATCH, _run_and_kill


def test_fifty_kills_lose_no_acknowledged_append(shared_database_url: str, soak: bool) -> None:
    kills = 200 if soak else 50
    rng = random.Random(0xA150)
    store = open_store(shared_database_url)
    rounds: list[tuple[str, int]] = []
    for n in range(kills):
        session = store.get_or_create(f"agent:main:kill-{n % 5}")
        rounds.append((session.id, _run_and_kill(shared_database_url, session.id, rng)))
    store.close()
    reopened = open_store(shared_database_url)
    assert reopened.check_integrity() == []
    verified = 0
    acknowledged: dict[str, set[int]] = {}
    for session_id, last in rounds:
        acknowledged.setdefault(session_id, set())
        acknowledged[session_id] |= set(range(1, last + 1))
    for session_id, batches in acknowledged.items():
        entries = all_entries(reopened, session_id)
        counts = Counter(re.match(r"batch (\d+)", e.text).group(1) for e in entries)  # type: ignore[union-attr]
        assert all(count % BATCH == 0 for count in counts.values()), "an append is half there"
        assert {int(b) for b in counts} >= batches, "an acknowledged append is gone"
        verified += len(entries)
    checked = check_invariants(reopened)
    reopened.close()
    print(f"{kills} writers killed; {verified} entries verified; invariants over {checked}")
