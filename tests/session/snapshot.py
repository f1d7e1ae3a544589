"""Reading a whole store back, page by page: to check it, or to show that a
rejected call changed nothing."""

from __future__ import annotations

from typing import Any


def all_sessions(store: Any) -> list[Any]:
    """Every session the store (or scoped handle) lists, following the cursor."""
    sessions: list[Any] = []
    cursor = None
    while True:
        page = store.list(limit=500, cursor=cursor)
        sessions.extend(page.sessions)
        cursor = page.cursor
        if cursor is None:
            return sessions


def all_entries(store: Any, session_id: str) -> list[Any]:
    """Every entry of a session's log, in seq order, following the cursor."""
    entries: list[Any] = []
    after = 0
    while True:
        page = store.history(session_id, after=after, limit=1000)
        entries.extend(page.entries)
        if page.cursor is None:
            return entries
        after = page.cursor


def snapshot(store: Any) -> list[tuple[Any, ...]]:
    """Every session (all fields) with its whole history and its key's binding."""
    result = []
    for session in sorted(all_sessions(store), key=lambda s: s.id):
        current = store.current(session.key) if session.key else None
        entries = tuple(all_entries(store, session.id))
        result.append((session, entries, current.id if current else None))
    return result
