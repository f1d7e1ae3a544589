"""Files are private, and an agent's handle reaches nothing of another agent's."""

from __future__ import annotations

import io
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import AccessDenied, open_store
from aisopod_session.transfer import dump_store, export_transcript
from aisopod_shared import Message
from tests.session.snapshot import snapshot


def test_new_store_files_are_private(tmp_path: Path) -> None:
    store = open_store(tmp_path / "private" / "sessions.db")
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("a secret"))
    for name in ("sessions.db", "sessions.db-wal", "sessions.db-shm"):
        assert stat.S_IMODE((tmp_path / "private" / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700
    exported = tmp_path / "out.jsonl"
    export_transcript(store, session.id, exported)
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    store.close()


def test_a_scoped_handle_cannot_read_list_search_export_or_delete_another_agents_sessions(
    store: Any,
) -> None:
    theirs = store.get_or_create("agent:main:private")
    store.append(theirs.id, Message.user("the launch code is 0000"))
    ops = store.for_agent("ops")
    mine = ops.get_or_create("chat")
    ops.append(mine.id, Message.user("ops things"))
    before = snapshot(store)
    attempts: dict[str, Callable[[], Any]] = {
        "read": lambda: ops.get(theirs.id),
        "history": lambda: ops.history(theirs.id),
        "context": lambda: ops.context(theirs.id),
        "search": lambda: ops.search("launch", agent_id="main"),
        "delete": lambda: ops.delete(theirs.id),
        "fork": lambda: ops.fork(theirs.id),
        "rewind": lambda: ops.rewind(theirs.id, 0),
        "compact": lambda: ops.compact(theirs.id, None),
        "list": lambda: ops.list(agent_id="main"),
    }
    refused = 0
    for name, attempt in attempts.items():
        with pytest.raises(AccessDenied):
            attempt()
        refused += 1
        assert snapshot(store) == before, name
    assert [h.session_id for h in ops.search("launch OR ops").hits] == [mine.id]
    assert {s.id for s in ops.list().sessions} == {mine.id}
    scoped_sync = ops.sync if hasattr(ops, "sync") else ops
    with pytest.raises(AccessDenied):
        export_transcript(scoped_sync, theirs.id, io.StringIO())
    dumped = io.BytesIO()
    dump_store(scoped_sync, dumped)
    assert b"launch code" not in dumped.getvalue()
    print(f"{refused + 1} kinds of reach refused; dumps and searches see only the agent's own")
