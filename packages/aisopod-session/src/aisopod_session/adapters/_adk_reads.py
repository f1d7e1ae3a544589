"""The rows the ADK session service reads, each in one statement.

ADK asks for a session with its state (`get_session`) and for the sessions of
an app or of one of its users with theirs (`list_sessions`), on every turn and
every page load. Each read here is one statement that returns only the
columns ADK needs, found through an index: a key's binding for one session,
`sessions_by_user` (or `sessions_by_agent`) for a listing, the primary keys of
the shared state tables for `app:` and `user:` state. No typed session is
built on the way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from aisopod_session.backends._sql import BoundSession, SqlTx

__all__ = ["ListedRow", "SessionRow", "listed_rows", "session_row", "shared_rows"]


class SessionRow(NamedTuple):
    """A key's current session as ADK sees it."""

    bound: BoundSession
    """What the tail read (`_tail.read_tail`) needs."""
    version: int
    updated_at: int
    """Microseconds since the epoch: ADK's `last_update_time`."""
    user_id: str | None
    state: dict[str, Any]
    """The session's own state at its leaf."""


class ListedRow(NamedTuple):
    """A session of a listing."""

    key: str
    id: str
    user_id: str
    version: int
    updated_at: int
    state: dict[str, Any]


def session_row(tx: SqlTx, agent_id: str, key: str) -> SessionRow | None:
    """The session bound to `(agent_id, key)`, with its version, time, user and state."""
    row = tx.execute(
        "SELECT s.sid, s.id, s.agent_id, s.leaf_seq, s.compaction_count, s.version,"
        " s.updated_at, s.user_id, s.state"
        " FROM bindings b JOIN sessions s ON s.sid = b.sid"
        " WHERE b.agent_id = ? AND b.key = ?",
        (agent_id, key),
    ).fetchone()
    if row is None:
        return None
    return SessionRow(
        BoundSession(int(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4])),
        int(row[5]),
        int(row[6]),
        row[7],
        dict(tx.decode_json(row[8])),
    )


def listed_rows(
    tx: SqlTx, agent_id: str, key_prefix: str, user_id: str | None
) -> Iterator[ListedRow]:
    """The sessions of `agent_id` (of one user, given `user_id`) whose key starts with
    `key_prefix` and is bound to them, archived ones left out; in no order."""
    sql = (
        "SELECT s.key, s.id, s.user_id, s.version, s.updated_at, s.state FROM sessions s"
        " WHERE s.agent_id = ?"
    )
    params: list[Any] = [agent_id]
    if user_id is not None:
        sql += " AND s.user_id = ?"
        params.append(user_id)
    sql += (
        " AND s.user_id IS NOT NULL AND s.status <> 'archived' AND substr(s.key, 1, ?) = ?"
        " AND EXISTS (SELECT 1 FROM bindings b"
        " WHERE b.agent_id = s.agent_id AND b.key = s.key AND b.sid = s.sid)"
    )
    params.extend((len(key_prefix), key_prefix))
    for row in tx.execute(sql, params).fetchall():
        yield ListedRow(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            int(row[3]),
            int(row[4]),
            dict(tx.decode_json(row[5])),
        )


def shared_rows(
    tx: SqlTx, agent_id: str, user_id: str | None, *, agent: bool = True
) -> Iterator[tuple[str, str | None, str, Any]]:
    """The agent's shared state (unless not `agent`) and its users' (one user's, given
    `user_id`), as (`agent` or `user`, user id, key, value)."""
    parts: list[str] = []
    params: list[Any] = []
    if agent:
        parts.append("SELECT 'agent', NULL, key, value FROM agent_state WHERE agent_id = ?")
        params.append(agent_id)
    user_sql = "SELECT 'user', user_id, key, value FROM user_state WHERE agent_id = ?"
    params.append(agent_id)
    if user_id is not None:
        user_sql += " AND user_id = ?"
        params.append(user_id)
    parts.append(user_sql)
    for scope, user, key, value in tx.execute(" UNION ALL ".join(parts), params).fetchall():
        yield str(scope), user, str(key), tx.decode_json(value)
