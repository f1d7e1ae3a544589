"""What only the SQLite backend has: file permissions, pragmas, locking, schema versions."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import (
    InvalidInput,
    SchemaVersionError,
    StoreBusy,
    StoreUnavailable,
    default_url,
    open_store,
)
from aisopod_session._store import engine_of
from aisopod_session.backends.sqlite import MIGRATIONS
from aisopod_shared import Message
from tests.session.old_databases import write_sqlite_at_version


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_file_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "nested"
    store = open_store(f"sqlite:///{folder / 'sessions.db'}")
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("secret"))
    assert _mode(folder / "sessions.db") == 0o600
    assert _mode(folder) == 0o700
    assert _mode(folder.parent) == 0o700
    assert _mode(folder / "sessions.db-wal") == 0o600
    store.close()


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    open_store(tmp_path / "s.db").close()
    assert _mode(tmp_path) == 0o755
    assert _mode(tmp_path / "s.db") == 0o600


def test_connections_use_wal_foreign_keys_and_the_chosen_durability(tmp_path: Path) -> None:
    options: list[tuple[dict[str, Any], int]] = [({}, 2), ({"synchronous": "NORMAL"}, 1)]
    for option, expected in options:
        store = open_store(tmp_path / f"s{expected}.db", **option)
        with engine_of(store).backend.read() as tx:
            assert tx.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert tx.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert tx.execute("PRAGMA synchronous").fetchone()[0] == expected
        store.close()
    query = open_store(f"sqlite:///{tmp_path / 'q.db'}?synchronous=normal&busy_timeout=2")
    with engine_of(query).backend.read() as tx:
        assert tx.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert tx.execute("PRAGMA busy_timeout").fetchone()[0] == 2000
    query.close()


def test_migrations_are_recorded_and_run_once(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_store(path).close()
    open_store(path).close()
    with sqlite3.connect(path) as raw:
        rows = raw.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()
    assert rows == [(n + 1, m.name) for n, m in enumerate(MIGRATIONS)]


def test_a_database_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = open_store(path)
    store.append(store.get_or_create("agent:main:main").id, Message.user("x"))
    store.close()
    newer = len(MIGRATIONS) + 1
    with sqlite3.connect(path) as raw:
        raw.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
            (newer,),
        )
    before = path.read_bytes()
    with pytest.raises(SchemaVersionError) as caught:
        open_store(path)
    assert caught.value.found == newer
    assert caught.value.supported == len(MIGRATIONS)
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database\n" * 100)
    with pytest.raises(StoreUnavailable, match="not a SQLite database"):
        open_store(path)


def test_a_lock_held_past_the_busy_timeout_is_store_busy_and_writes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = open_store(path, busy_timeout=0.2)
    session = store.get_or_create("agent:main:main")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy):
            store.append(session.id, Message.user("blocked"))
        assert store.history(session.id).entries == ()  # reads go on beside the writer
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.append(session.id, Message.user("later"))
    assert store.get(session.id).entry_count == 1
    store.close()


def test_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("sqlite://relative.db", "mysql://x/y", "sqlite:///:memory:?journal=off"):
        with pytest.raises(InvalidInput):
            open_store(bad)
    with pytest.raises(InvalidInput):
        open_store(tmp_path / "s.db", synchronous="OFF")
    with pytest.raises(InvalidInput):
        open_store(tmp_path / "s.db", busy_timeout="soon")
    monkeypatch.setenv("AISOPOD_SESSION_DB", f"sqlite:///{tmp_path / 'env.db'}")
    assert default_url() == f"sqlite:///{tmp_path / 'env.db'}"
    open_store().close()
    assert (tmp_path / "env.db").exists()
    monkeypatch.delenv("AISOPOD_SESSION_DB")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite://{tmp_path / 'home' / '.aisopod' / 'sessions.db'}"


def test_the_repr_names_the_database(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    assert repr(store) == f"SessionStore('sqlite://{tmp_path / 's.db'}')"
    assert repr(store.for_agent("ops")).endswith(", agent='ops')")
    store.close()


def test_a_forked_child_opens_its_own_connections(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("parent"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        try:
            store.append(session.id, Message.user("child"))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [e.text for e in store.history(session.id).entries] == ["parent", "child"]
    store.close()


def test_an_older_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file written before full-text search existed gets its index, data intact."""
    path = tmp_path / "old.db"
    # Schema version 1 had no search index to fill.
    session_id = write_sqlite_at_version(
        path, 1, [Message.user("written before search"), Message.assistant("indeed")]
    )
    new = open_store(path)
    assert new.schema().version == len(MIGRATIONS)
    assert [e.text for e in new.history(session_id).entries] == ["written before search", "indeed"]
    assert [h.seq for h in new.search("before").hits] == [1]
    new.close()


def test_only_sessions_with_a_user_are_indexed_by_user(tmp_path: Path) -> None:
    """An append moves its session in every index holding it: a session without a user
    is not in the by-user index, which still answers reads of a user's sessions."""
    store = open_store(tmp_path / "s.db")
    with_user = store.get_or_create("agent:main:a", user_id="ada")
    without = store.get_or_create("agent:main:b")
    store.append(without.id, Message.user("no user here"))
    with engine_of(store).backend.read() as tx:
        indexed = tx.execute(
            "SELECT id FROM sessions INDEXED BY sessions_by_user"
            " WHERE agent_id = 'main' AND user_id = 'ada'"
        ).fetchall()
        plan = tx.execute(
            "EXPLAIN QUERY PLAN SELECT sid FROM sessions WHERE agent_id = ? AND user_id = ?"
            " ORDER BY updated_at DESC, sid DESC",
            ("main", "ada"),
        ).fetchall()
        partial = tx.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'sessions_by_user'"
            " AND sql LIKE '%WHERE user_id IS NOT NULL'"
        ).fetchone()[0]
    assert indexed == [(with_user.id,)]
    assert "sessions_by_user" in str(plan)
    assert partial == 1
    store.close()
