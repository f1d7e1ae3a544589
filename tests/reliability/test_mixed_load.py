"""Four processes doing everything at once, for a while; the invariants hold after,
and every append a worker was told succeeded is there."""

from __future__ import annotations

import multiprocessing
from collections import Counter

from aisopod_session import SessionNotFound, open_store
from tests.session.invariants import check_invariants
from tests.session.workers import MixedReport, mixed_load


def test_four_processes_of_mixed_operations_keep_the_invariants_and_every_append(
    shared_database_url: str, soak: bool
) -> None:
    seconds = 60.0 if soak else 8.0
    open_store(shared_database_url).close()
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [
        context.Process(target=mixed_load, args=(shared_database_url, n, seconds, out))
        for n in range(4)
    ]
    for worker in workers:
        worker.start()
    reports: list[MixedReport] = [out.get(timeout=seconds + 240) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0] * 4
    done: Counter[str] = Counter()
    removed: set[str] = set()
    for report in reports:
        done.update(report.done)
        removed |= report.removed
    assert not [k for k in done if k.startswith("crashed")], done
    for action in ("append", "patch", "reset", "compact", "fork", "search", "maintain"):
        assert done[action] > 0, action
    store = open_store(shared_database_url)
    assert store.check_integrity() == []
    present = gone = 0
    for report in reports:
        for session_id, seqs, texts in report.appended:
            try:
                entries = store.history(session_id, after=seqs[0] - 1, limit=len(seqs)).entries
            except SessionNotFound:
                assert session_id in removed, f"{session_id} vanished without a delete"
                gone += 1
                continue
            assert [(e.seq, e.text) for e in entries] == list(zip(seqs, texts, strict=True))
            present += 1
    assert present > 0
    checked = check_invariants(store)
    store.close()
    print(
        f"{sum(done.values())} operations in {seconds:.0f}s: {dict(done)}; of"
        f" {present + gone} acknowledged appends, {present} found at their seqs and"
        f" {gone} in sessions deleted since; verified {checked}"
    )
