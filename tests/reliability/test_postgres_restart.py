"""A PostgreSQL server stopped in immediate mode and restarted under load.

The server is the test's own (a throwaway one: never the shared server).
Writers on four threads append batches, each with an idempotency key of its
own, and retry the same append with the same key until it is acknowledged,
as the README tells a gateway to do with `StoreUnavailable`. Meanwhile the
server is stopped with `pg_ctl stop -m immediate` semantics (SIGQUIT: no
checkpoint, recovery from the WAL at the next start) and started again,
three times. Afterwards every acknowledged batch is there exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter

from throwaway_postgres import ThrowawayPostgres

from aisopod_session import StoreUnavailable, open_store
from aisopod_shared import Message
from tests.session.invariants import check_invariants
from tests.session.postgres_schema import with_schema
from tests.session.snapshot import all_entries

WRITERS = 4
PARTS = 3
RESTARTS = 3


class Progress:
    """What the writers have done, and a way to wait until they have done more."""

    def __init__(self) -> None:
        self.acknowledged: list[str] = []
        self.failures = 0
        self._changed = threading.Condition()

    def acked(self, key: str) -> None:
        with self._changed:
            self.acknowledged.append(key)
            self._changed.notify_all()

    def failed(self) -> None:
        with self._changed:
            self.failures += 1
            self._changed.notify_all()

    def wait_for(self, *, acknowledged: int = 0, failures: int = 0) -> None:
        with self._changed:
            done = self._changed.wait_for(
                lambda: len(self.acknowledged) >= acknowledged and self.failures >= failures,
                timeout=120,
            )
        assert done, f"writers stuck at {len(self.acknowledged)} acknowledged"


def test_a_server_stopped_in_immediate_mode_and_restarted_loses_and_doubles_nothing(
    own_postgres: ThrowawayPostgres,
) -> None:
    url = with_schema(own_postgres.dsn, "restart") + "&pool_max=4&pool_timeout=2"
    store = open_store(url)
    sessions = [store.get_or_create(f"agent:main:writer-{w}").id for w in range(WRITERS)]
    progress = Progress()
    stop = threading.Event()

    def writer(w: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            key = f"w{w}-{n}"
            batch = [Message.user(f"{key} part {p}") for p in range(PARTS)]
            while True:  # the same append, the same key, until it is acknowledged
                try:
                    store.append(sessions[w], batch, idempotency_key=key)
                    break
                except StoreUnavailable:
                    progress.failed()
                    if stop.is_set():
                        return  # not acknowledged: may be there or not, whole
            progress.acked(key)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(RESTARTS):
            progress.wait_for(acknowledged=len(progress.acknowledged) + 40)
            failures = progress.failures
            own_postgres.stop("immediate")
            progress.wait_for(failures=failures + WRITERS)  # they noticed, and retry
            own_postgres.start()
            progress.wait_for(acknowledged=len(progress.acknowledged) + 40)  # back to work
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    acknowledged = set(progress.acknowledged)
    found = 0
    for w, session_id in enumerate(sessions):
        entries = all_entries(store, session_id)
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        parts = Counter(e.text for e in entries)
        assert set(parts.values()) == {1}, "an append was applied twice"
        batches = Counter(text.split(" part ")[0] for text in parts)
        assert set(batches.values()) == {PARTS}, "an append is half there"
        mine = {key for key in acknowledged if key.startswith(f"w{w}-")}
        assert mine <= set(batches), "an acknowledged append is gone"
        assert len(set(batches) - mine) <= 1  # the one in flight when the writer stopped
        found += len(mine)
    check_invariants(store)
    store.close()
    assert found == len(acknowledged)
    print(
        f"{RESTARTS} immediate stops and restarts under {WRITERS} writers:"
        f" {progress.failures} failed appends retried by key, {found} acknowledged"
        " appends found exactly once"
    )
