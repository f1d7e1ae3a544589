"""Retention: what goes, what stays, and that a run can be interrupted safely."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import (
    InvalidInput,
    RetentionPolicy,
    SessionNotFound,
    UnmetBudget,
    open_store,
)
from aisopod_shared import ManualClock, Message

ROOT = Path(__file__).resolve().parents[2]


def _ids(report: Any) -> set[str]:
    return {r.session_id for r in report.removals}


def test_warn_reports_and_changes_nothing(store: Any, clock: ManualClock) -> None:
    old = store.get_or_create("agent:main:old")
    store.append(old.id, Message.user("x" * 100))
    clock.advance(days=40)
    report = store.maintain(RetentionPolicy())
    assert report.mode == "warn"
    assert _ids(report) == {old.id}
    assert report.removals[0].reason == "inactive"
    assert report.removed == 0
    assert report.bytes_to_free > 100
    assert report.bytes_freed == 0
    assert store.get(old.id).entry_count == 1


def test_enforce_removes_inactive_sessions_but_never_a_current_active_one(
    store: Any, clock: ManualClock
) -> None:
    stale = store.get_or_create("agent:main:stale")
    archived = store.get_or_create("agent:main:chat")
    store.append(archived.id, Message.user("old"))
    clock.advance(days=20)
    current = store.reset("agent:main:chat")
    clock.advance(days=15)
    store.append(current.id, Message.user("recent"))
    report = store.maintain(RetentionPolicy(mode="enforce", prune_after=timedelta(days=30)))
    assert _ids(report) == {stale.id, archived.id}
    assert report.removed == 2
    assert store.current("agent:main:stale") is None
    assert store.get(current.id).entry_count == 1
    assert store.get_or_create("agent:main:stale").id != stale.id


def test_sessions_per_agent_least_recently_active_first(store: Any, clock: ManualClock) -> None:
    ids = [store.get_or_create("agent:main:chat").id]
    for _ in range(4):  # four resets: four archived sessions and the current one
        clock.advance(minutes=1)
        ids.append(store.reset("agent:main:chat").id)
    other = store.get_or_create("agent:ops:chat")
    clock.advance(minutes=1)
    store.append(ids[0], Message.user("bump"))  # archived, but now the most recently active
    report = store.maintain(RetentionPolicy(mode="enforce", max_sessions=3))
    assert _ids(report) == {ids[1], ids[2]}
    assert {r.reason for r in report.removals} == {"over_count"}
    assert store.get(other.id).id == other.id
    assert store.current("agent:main:chat").id == ids[4]


def test_progress_is_told_each_planned_session_as_it_is_done(
    store: Any, clock: ManualClock
) -> None:
    for n in range(4):
        store.get_or_create(f"agent:main:s{n}")
        clock.advance(minutes=1)
        store.reset(f"agent:main:s{n}")
    clock.advance(days=40)
    calls: list[tuple[int, int]] = []
    report = store.maintain(
        RetentionPolicy(mode="enforce"), progress=lambda done, total: calls.append((done, total))
    )
    assert report.removed == 8
    assert calls == [(n, 8) for n in range(1, 9)]


def test_current_sessions_active_in_the_window_count_but_are_never_removed(
    store: Any, clock: ManualClock
) -> None:
    for n in range(5):
        clock.advance(minutes=1)
        store.get_or_create(f"agent:main:s{n}")
    report = store.maintain(RetentionPolicy(mode="enforce", max_sessions=3))
    assert report.removals == ()
    assert report.unmet == (UnmetBudget("max_sessions", "main", 3, 5),)


def test_the_size_budget_removes_the_oldest_archived_first(store: Any, clock: ManualClock) -> None:
    big = "y" * 5000
    first = store.get_or_create("agent:main:a")
    store.append(first.id, Message.user(big))
    clock.advance(minutes=1)
    archived = first
    store.reset("agent:main:a")
    clock.advance(minutes=1)
    b = store.get_or_create("agent:main:b")
    store.append(b.id, Message.user(big))
    clock.advance(minutes=1)
    c = store.get_or_create("agent:main:c")
    store.append(c.id, Message.user(big))
    policy = RetentionPolicy(
        mode="enforce", prune_after=timedelta(days=1), max_sessions=None, max_bytes=25_000
    )
    report = store.maintain(policy)
    assert [r.reason for r in report.removals] == ["over_size"]
    assert _ids(report) == {archived.id}
    assert report.unmet == ()
    # Current sessions active inside the window are protected even over budget,
    # and the report says the budget is out of reach.
    tight = RetentionPolicy(mode="enforce", prune_after=timedelta(days=1), max_bytes=10)
    report = store.maintain(tight)
    assert report.removals == ()
    left = sum(s.size_bytes for s in store.list().sessions)
    assert left > 10_000
    assert report.unmet == (UnmetBudget("max_bytes", None, 10, left),)


def test_a_scoped_store_maintains_only_its_agent(store: Any, clock: ManualClock) -> None:
    mine = store.get_or_create("agent:ops:x")
    theirs = store.get_or_create("agent:main:x")
    clock.advance(days=60)
    report = store.for_agent("ops").maintain(RetentionPolicy(mode="enforce"))
    assert _ids(report) == {mine.id}
    assert store.get(theirs.id).id == theirs.id


def test_activity_after_the_scan_saves_a_session(store: Any, clock: ManualClock) -> None:
    old = store.get_or_create("agent:main:old")
    clock.advance(days=40)
    report = store.maintain(RetentionPolicy())
    assert _ids(report) == {old.id}
    store.append(old.id, Message.user("I'm back"))
    again = store.maintain(RetentionPolicy(mode="enforce"))
    assert again.removals == ()


def test_a_policy_must_be_a_policy(store: Any) -> None:
    with pytest.raises(InvalidInput):
        store.maintain({"mode": "enforce"})


def test_an_interrupted_run_leaves_a_consistent_store(shared_database_url: str) -> None:
    """Kill -9 a maintenance run once its progress says 100 of 300 sessions are
    done: some sessions are gone, some are not, and the store is consistent."""
    clock = ManualClock()
    store = open_store(shared_database_url, clock=clock)
    for n in range(300):
        session = store.get_or_create(f"agent:main:s{n}")
        store.append(session.id, [Message.user(f"m{n}-{k}") for k in range(5)])
    store.close()
    code = (
        "import sys; from datetime import timedelta;"
        "from aisopod_session import open_store, RetentionPolicy;"
        "s = open_store(sys.argv[1]);"
        "s.maintain(RetentionPolicy(mode='enforce', prune_after=timedelta(seconds=0)),"
        " progress=lambda done, total: print(done, total, flush=True))"
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", code, shared_database_url], cwd=ROOT, stdout=subprocess.PIPE
    )
    assert runner.stdout is not None
    for line in runner.stdout:
        if line.split() == [b"100", b"300"]:  # 100 removals committed
            break
    else:
        pytest.fail("maintenance ended before it reported 100 of 300")
    os.kill(runner.pid, signal.SIGKILL)
    runner.communicate()
    reopened = open_store(shared_database_url)
    assert reopened.check_integrity() == []
    left = reopened.list(limit=1000).sessions
    assert 0 < len(left) <= 200, f"{300 - len(left)} of 300 removed"
    print(f"maintenance killed after removing {300 - len(left)} of 300 sessions")
    for session in left:
        try:
            entries = reopened.history(session.id, after=0, limit=100).entries
        except SessionNotFound:
            continue  # a removal the server committed after the killed client sent it
        assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
        assert session.entry_count == 5
        assert session.key is not None
        current = reopened.current(session.key)
        assert current is not None
        assert current.id == session.id
    reopened.close()


def test_the_report_gives_state_sizes_and_removing_a_session_keeps_shared_state(
    store: Any, clock: ManualClock
) -> None:
    old = store.get_or_create("agent:main:old", user_id="ann")
    store.update_state(old.id, {"cart": ["x"] * 20, "user:lang": "pt", "agent:model": "m1"})
    clock.advance(days=40)
    report = store.maintain(RetentionPolicy(mode="enforce"))
    (removal,) = report.removals
    assert removal.session_id == old.id
    assert removal.removed
    assert removal.state_bytes >= len('{"cart":[' + '"x",' * 20)
    assert report.shared_state_bytes >= len('"pt"') + len('"m1"')
    assert dict(store.user_state("ann")) == {"lang": "pt"}
    assert dict(store.agent_state()) == {"model": "m1"}
