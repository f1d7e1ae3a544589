"""A store that runs out of room fails its appends clearly, loses nothing it
acknowledged, and works again once there is room.

Three ways to run out: SQLite's own page cap (`max_pages`), a real full
filesystem (a small tmpfs the test mounts, when it runs as root), and a
writer process capped by `RLIMIT_FSIZE` (`ulimit -f`, any user).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import SessionStore, StoreFull, open_store
from aisopod_shared import Message
from tests.session.invariants import check_invariants
from tests.session.snapshot import all_entries, snapshot

ROOT = Path(__file__).resolve().parents[2]
PARTS = 5


def _batch(key: str) -> list[Message]:
    return [Message.user(f"{key} part {p} " + "x" * 2000) for p in range(PARTS)]


def _fill(store: SessionStore, session_id: str, acknowledged: list[str]) -> StoreFull:
    """Append keyed batches until the store is full; record each acknowledged key."""
    for n in range(100_000):
        key = f"fill-{n}"
        try:
            store.append(session_id, _batch(key), idempotency_key=key)
        except StoreFull as full:
            return full
        acknowledged.append(key)
    raise AssertionError("the store never filled up")


def _assert_exactly_once(store: Any, session_id: str, acknowledged: list[str]) -> None:
    """Every acknowledged batch is in the session exactly once, whole; nothing else is."""
    texts = [e.text.split(" part ")[0] for e in all_entries(store, session_id)]
    assert sorted(texts) == sorted(key for key in acknowledged for _ in range(PARTS))


def _refused_without_change(store: SessionStore, session_id: str, times: int = 5) -> None:
    before = snapshot(store)
    for n in range(times):
        with pytest.raises(StoreFull):
            store.append(session_id, _batch(f"refused-{n}"), idempotency_key=f"refused-{n}")
    assert snapshot(store) == before


def test_appends_on_a_full_database_fail_cleanly_and_work_again_once_space_is_freed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'small.db'}"
    store = open_store(url, max_pages=200)  # 800 KiB
    filler = store.get_or_create("agent:main:filler")
    keeper = store.get_or_create("agent:main:keeper")
    store.append(keeper.id, Message.user("must survive"))
    acknowledged: list[str] = []
    _fill(store, filler.id, acknowledged)
    _refused_without_change(store, keeper.id)
    assert store.check_integrity() == []
    check_invariants(store)
    _assert_exactly_once(store, filler.id, acknowledged)
    # Searching still works: it only reads, and finds what waits for the index too.
    assert [h.session_id for h in store.search("survive").hits] == [keeper.id]
    store.delete(filler.id)  # frees pages inside the file
    store.append(keeper.id, Message.user("room again"))
    assert [e.text for e in store.history(keeper.id).entries] == ["must survive", "room again"]
    store.close()
    bigger = open_store(url)  # without the cap, the file grows again
    bigger.append(keeper.id, [Message.user("z" * 3000) for _ in range(50)])
    assert bigger.check_integrity() == []
    bigger.close()
    print(f"page cap: {len(acknowledged)} appends acknowledged, 5 refused; recovered")


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own, unmounted after (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            check=False,
        )
        if shutil.which("mount") and os.geteuid() == 0
        else None
    )
    if made is None or made.returncode != 0:
        reason = made.stderr.strip() if made is not None else "not root"
        pytest.skip(f"cannot mount a tmpfs here ({reason}); the RLIMIT_FSIZE test covers it")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _hog(folder: Path, name: str) -> int:
    """Fill the rest of the filesystem with one file; return the bytes written."""
    written = 0
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            written += os.write(fd, b"\0" * 65536)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return written


def test_a_full_filesystem_refuses_appends_keeps_every_acknowledged_one_and_recovers(
    small_disk: Path,
) -> None:
    url = f"sqlite:///{small_disk / 'sessions.db'}"
    reserve = small_disk / "reserve"
    reserve.write_bytes(b"\0" * (1 << 20))  # room to free later
    store = open_store(url)
    session = store.get_or_create("agent:main:full")
    acknowledged: list[str] = []
    full = _fill(store, session.id, acknowledged)
    assert "full" in str(full)
    _refused_without_change(store, session.id)
    store.close()  # on a full disk: the WAL cannot be checkpointed, and stays
    filled = sum(f.stat().st_size for f in small_disk.iterdir())

    reopened = open_store(url)  # still full: reads work, appends are refused
    _assert_exactly_once(reopened, session.id, acknowledged)
    _refused_without_change(reopened, session.id, times=2)
    reserve.unlink()  # space freed
    reopened.append(session.id, _batch("after"), idempotency_key="after")
    _assert_exactly_once(reopened, session.id, [*acknowledged, "after"])
    assert reopened.check_integrity() == []
    check_invariants(reopened)
    reopened.close()
    print(
        f"tmpfs: {filled:,} bytes filled, {len(acknowledged)} appends acknowledged and"
        " found once after reopening, 7 refused; appends work once 1 MiB was freed"
    )


def test_opening_a_cleanly_closed_store_on_a_full_disk_says_the_disk_is_full(
    small_disk: Path,
) -> None:
    url = f"sqlite:///{small_disk / 'sessions.db'}"
    store = open_store(url)
    session = store.get_or_create("agent:main:closed")
    store.append(session.id, _batch("kept"), idempotency_key="kept")
    store.close()  # checkpointed: the -wal and -shm files are gone
    assert sorted(p.name for p in small_disk.iterdir()) == ["sessions.db"]
    hogged = _hog(small_disk, "hog")
    with pytest.raises(StoreFull, match=r"disk .* is full"):
        open_store(url)
    (small_disk / "hog").unlink()
    again = open_store(url)
    _assert_exactly_once(again, session.id, ["kept"])
    again.close()
    print(f"a full disk ({hogged:,} bytes of other data) refused the open; reopened after")


_CAPPED_WRITER = """
import resource, signal, sys
from aisopod_session import StoreFull, open_store
from aisopod_shared import Message

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails (EFBIG)
url, session_id, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store(url)
resource.setrlimit(resource.RLIMIT_FSIZE, (cap, resource.RLIM_INFINITY))
refused = 0
for n in range(100_000):
    key = f"fill-{n}"
    batch = [Message.user(f"{key} part {p} " + "x" * 2000) for p in range(5)]
    try:
        store.append(session_id, batch, idempotency_key=key)
    except StoreFull as full:
        refused += 1
        print("refused", full, flush=True)
        if refused == 5:
            break
        continue
    print("acknowledged", key, flush=True)
"""


def test_a_writer_capped_by_the_file_size_limit_gets_store_full_and_loses_nothing(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.db'}"
    store = open_store(url)
    session = store.get_or_create("agent:main:capped")
    store.close()
    cap = 1_000_000
    run = subprocess.run(
        [sys.executable, "-c", _CAPPED_WRITER, url, session.id, str(cap)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = run.stdout.splitlines()
    acknowledged = [line.split()[1] for line in lines if line.startswith("acknowledged ")]
    refusals = [line for line in lines if line.startswith("refused ")]
    assert len(refusals) == 5
    assert all("file size limit" in line for line in refusals), refusals
    assert acknowledged
    reopened = open_store(url)  # no cap here: the room is back
    _assert_exactly_once(reopened, session.id, acknowledged)
    reopened.append(session.id, _batch("after"), idempotency_key="after")
    _assert_exactly_once(reopened, session.id, [*acknowledged, "after"])
    assert reopened.check_integrity() == []
    reopened.close()
    print(
        f"RLIMIT_FSIZE {cap:,} bytes: {len(acknowledged)} appends acknowledged, 5 refused"
        " with StoreFull; all found once after reopening without the cap"
    )
