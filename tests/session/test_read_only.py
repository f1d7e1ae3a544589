"""Reads never write: a store that is not ours, is damaged, or is read-only is
never written by opening or reading it, and a read-only store is still readable."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import (
    KeepLastTurns,
    StoreReadOnly,
    StoreUnavailable,
    open_store,
)
from aisopod_session.transfer import export_transcript
from aisopod_shared import Message
from tests.session.conversation import conversation


def _bytes_of(folder: Path) -> dict[str, bytes]:
    """Every file of a folder, byte for byte."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _filled_store(path: Path) -> str:
    """A store with a conversation in it, closed cleanly (no -wal, no -shm); its id."""
    store = open_store(path)
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 4)
    store.close()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    return session.id


def _reads(store: Any, session_id: str, tmp: Path) -> None:
    """Every kind of read, each answered."""
    assert [s.id for s in store.list().sessions] == [session_id]
    assert store.get(session_id).entry_count > 0
    assert store.current("agent:main:main").id == session_id
    assert store.history(session_id, last=5).entries
    assert store.path(session_id).entries
    assert store.context(session_id).messages
    assert store.branches(session_id)
    assert store.search("question").hits
    assert store.stats()[0].sessions == 1
    assert store.check_integrity() == []
    assert store.schema().version == store.schema().latest
    export_transcript(store, session_id, tmp / "export.jsonl")


def _writes(store: Any, session_id: str) -> dict[str, Callable[[], Any]]:
    return {
        "append": lambda: store.append(session_id, Message.user("x")),
        "patch": lambda: store.patch(session_id, title="x"),
        "reset": lambda: store.reset("agent:main:main"),
        "get_or_create": lambda: store.get_or_create("agent:main:new"),
        "delete": lambda: store.delete(session_id),
        "compact": lambda: store.compact(session_id, KeepLastTurns(1)),
        "rewind": lambda: store.rewind(session_id, 1),
        "fork": lambda: store.fork(session_id),
    }


@pytest.fixture(name="read_only_folder")
def read_only_folder_fixture(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Makes a folder read-only for this process: a tmpfs remounted read-only when
    running as root (root writes through file modes), else file modes."""
    mounted: list[Path] = []

    def make_read_only(folder: Path) -> None:
        if os.geteuid() == 0:
            done = subprocess.run(
                ["mount", "-o", "remount,ro", str(folder)], capture_output=True, check=False
            )
            assert done.returncode == 0, done.stderr
        else:
            for path in folder.iterdir():
                path.chmod(0o444)
            folder.chmod(0o555)

    if os.geteuid() == 0:
        folder = tmp_path / "disk"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs as root here: {done.stderr.decode().strip()}")
        mounted.append(folder)
    else:
        folder = tmp_path / "folder"
        folder.mkdir()
    make_read_only.folder = folder  # type: ignore[attr-defined]
    try:
        yield make_read_only
    finally:
        for mount in mounted:
            subprocess.run(["umount", "-l", str(mount)], check=True)
        if not mounted:
            folder.chmod(0o755)


def test_a_store_in_a_read_only_folder_is_readable_and_never_written(
    read_only_folder: Any, tmp_path: Path
) -> None:
    folder: Path = read_only_folder.folder
    path = folder / "sessions.db"
    session_id = _filled_store(path)
    read_only_folder(folder)
    before = _bytes_of(folder)
    store = open_store(path)
    _reads(store, session_id, tmp_path)
    for name, write in _writes(store, session_id).items():
        with pytest.raises(StoreReadOnly, match="read-only"):
            write()
        assert name  # each refused
    store.close()
    assert _bytes_of(folder) == before


def test_read_only_true_opens_a_writable_store_without_writing(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "sessions.db"
    session_id = _filled_store(path)
    before = _bytes_of(folder)
    store = open_store(f"sqlite://{path}?read_only=1")
    _reads(store, session_id, tmp_path)
    for write in _writes(store, session_id).values():
        with pytest.raises(StoreReadOnly):
            write()
    store.close()
    after = _bytes_of(folder)
    assert after["sessions.db"] == before["sessions.db"]
    # A reader of a WAL file in a writable folder may leave SQLite's empty log and
    # its shared-memory index beside it; no data goes into either.
    assert not after.get("sessions.db-wal")
    with pytest.raises(StoreUnavailable, match="no store"):
        open_store(folder / "missing.db", read_only=True)
    assert not (folder / "missing.db").exists()


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    """Its own `sessions` table or not, a file that is not a store is not switched to
    WAL, not migrated, not written."""
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE sessions (id INTEGER PRIMARY KEY, user TEXT, token TEXT)")
        db.execute("INSERT INTO sessions (user, token) VALUES ('ann', 'x'), ('bob', 'y')")
    db.close()
    before = _bytes_of(tmp_path)
    with pytest.raises(StoreUnavailable, match="not an aisopod-session store"):
        open_store(path)
    with pytest.raises(StoreUnavailable, match="not an aisopod-session store"):
        open_store(path, read_only=True)
    assert _bytes_of(tmp_path) == before
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    db.close()


def test_a_damaged_store_is_never_written_by_reading_it(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "sessions.db"
    store = open_store(path)
    session = store.get_or_create("agent:main:main")
    for n in range(40):
        store.append(session.id, [Message.user(f"question {n} " + "word " * 200)] * 5)
    store.close()
    size = path.stat().st_size
    with path.open("r+b") as file:  # scribble over the last quarter of the file
        file.seek(size * 3 // 4)
        file.write(b"\xa5" * (size // 4))
    before = _bytes_of(folder)
    try:
        damaged = open_store(path)
    except StoreUnavailable:
        pass  # refused at open: fine, if nothing was written
    else:
        refused = []
        for read in (
            lambda: damaged.search("question"),
            lambda: damaged.history(session.id, last=50),
            lambda: damaged.list(),
        ):
            try:
                read()
            except StoreUnavailable as err:
                refused.append(str(err))
        assert all("damaged" in reason for reason in refused), refused
        assert damaged.check_integrity() != []
        damaged.close()
    after = _bytes_of(folder)
    assert after.get("sessions.db") == before["sessions.db"]
    assert not after.get("sessions.db-wal")  # nothing written to the log either
