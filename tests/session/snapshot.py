"""A whole store as plain data, to show that a rejected call changed nothing."""

from __future__ import annotations

from typing import Any


def snapshot(store: Any) -> list[tuple[Any, ...]]:
    """Every session (all fields) with its whole history and its key's binding."""
    sessions = []
    cursor = None
    while True:
        page = store.list(limit=500, cursor=cursor)
        sessions.extend(page.sessions)
        cursor = page.cursor
        if cursor is None:
            break
    result = []
    for session in sorted(sessions, key=lambda s: s.id):
        entries = []
        after = 0
        while True:
            page = store.history(session.id, after=after, limit=1000)
            entries.extend(page.entries)
            if page.cursor is None:
                break
            after = page.cursor
        current = store.current(session.key) if session.key else None
        result.append((session, tuple(entries), current.id if current else None))
    return result
