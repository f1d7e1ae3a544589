"""kill -9 a writer at the start or end of an append, 50 times, on every backend."""

from __future__ import annotations

import random

from aisopod_session import open_store
from tests.reliability.killed_writer import Killed, Writers, check_killed_writer
from tests.session.invariants import check_invariants


def test_fifty_kills_lose_no_acknowledged_append_and_leave_none_half_written(
    shared_database_url: str, soak: bool
) -> None:
    """Each round kills a fresh writer on a fresh session (new work, new idempotency
    keys); afterwards every acknowledged batch is there exactly once."""
    kills = 200 if soak else 50
    rng = random.Random(0xA150)
    store = open_store(shared_database_url)
    rounds: list[tuple[str, Killed]] = []
    with Writers(shared_database_url) as writers:
        for n in range(kills):
            session = store.get_or_create(f"agent:main:kill-{n}")
            rounds.append((session.id, writers.kill_one(session.id, rng)))
    store.close()
    reopened = open_store(shared_database_url)
    assert reopened.check_integrity() == []
    committed_in_flight = 0
    for session_id, killed in rounds:
        committed_in_flight += check_killed_writer(reopened, session_id, killed)
    mid_append = sum(1 for _, killed in rounds if killed.in_flight is not None)
    acknowledged = sum(killed.acknowledged for _, killed in rounds)
    checked = check_invariants(reopened)
    reopened.close()
    assert mid_append > 0, "no kill landed mid-append"
    print(
        f"{kills} writers killed, {mid_append} mid-append ({committed_in_flight} of those"
        f" appends committed whole, {mid_append - committed_in_flight} rolled back whole);"
        f" {acknowledged} acknowledged appends found exactly once; invariants over {checked}"
    )
