"""A store that runs out of room fails its appends clearly and recovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisopod_session import StoreFull, open_store
from aisopod_shared import Message
from tests.session.invariants import check_invariants
from tests.session.snapshot import snapshot


def test_appends_on_a_full_database_fail_cleanly_and_work_again_once_space_is_freed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'small.db'}"
    store = open_store(url, max_pages=200)  # 800 KiB
    filler = store.get_or_create("agent:main:filler")
    keeper = store.get_or_create("agent:main:keeper")
    store.append(keeper.id, Message.user("must survive"))
    appended = 0
    while True:
        try:
            store.append(filler.id, [Message.user("x" * 2000) for _ in range(5)])
        except StoreFull:
            break
        appended += 5
    before = snapshot(store)
    failures = 0
    for _ in range(5):  # still full, every time, and nothing half-written
        with pytest.raises(StoreFull):
            store.append(keeper.id, [Message.user("y" * 3000) for _ in range(20)])
        failures += 1
    assert snapshot(store) == before
    assert store.check_integrity() == []
    check_invariants(store)
    assert [e.text for e in store.history(keeper.id).entries] == ["must survive"]
    # Searching still works: what waits for the index stays out of it for now.
    assert [h.session_id for h in store.search("survive").hits] == [keeper.id]
    assert snapshot(store) == before
    store.delete(filler.id)  # frees pages inside the file
    store.append(keeper.id, Message.user("room again"))
    assert [e.text for e in store.history(keeper.id).entries] == ["must survive", "room again"]
    store.close()
    bigger = open_store(url)  # without the cap, the file grows again
    bigger.append(keeper.id, [Message.user("z" * 3000) for _ in range(50)])
    assert bigger.check_integrity() == []
    bigger.close()
    print(f"filled with {appended} entries; {failures} appends refused on a full store; recovered")
