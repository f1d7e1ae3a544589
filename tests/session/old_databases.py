"""SQLite files written by an earlier schema version, for the upgrade tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from aisopod_session import open_store
from aisopod_session.backends import sqlite
from aisopod_shared import Message


def write_at_version(
    path: Path,
    monkeypatch: pytest.MonkeyPatch,
    version: int,
    entries_inserted: Callable[..., Any],
    messages: Sequence[Message],
) -> str:
    """Append `messages` to a new session in a new file at schema `version`, with that
    version's code: its migrations, and its way of indexing new entries
    (`entries_inserted`). Return the session's id. `monkeypatch` is undone after,
    so the test goes on with today's code."""
    monkeypatch.setattr(sqlite, "MIGRATIONS", sqlite.MIGRATIONS[:version])
    monkeypatch.setattr(sqlite.SqliteTx, "entries_inserted", entries_inserted)
    old = open_store(path)
    session = old.get_or_create("agent:main:main")
    old.append(session.id, list(messages))
    assert old.schema().version == version
    old.close()
    monkeypatch.undo()
    return session.id
