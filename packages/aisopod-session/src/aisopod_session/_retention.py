"""Retention: stores that do not grow for ever.

`plan_removals` decides, from one scan of the sessions, what a policy removes
and why: sessions inactive past `prune_after`, then the least recently
active beyond `max_sessions` per agent, then the oldest until the store is
under its size target. A key's current session that was active within the
window is never chosen, so a budget may be out of reach: the plan says
which (`UnmetBudget`), it never pretends. The store applies the plan one
session per transaction, so an interrupted run leaves a consistent store.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Literal, TypeAlias

import attrs

from aisopod_session._config import RetentionPolicy
from aisopod_session.backends._sql import MaintenanceRow
from aisopod_shared import from_micros, to_micros

__all__ = [
    "MaintenanceReport",
    "RemovalPlan",
    "Removal",
    "RemovalReason",
    "UnmetBudget",
    "plan_removals",
]

RemovalReason: TypeAlias = Literal["inactive", "over_count", "over_size"]


@attrs.frozen
class Removal:
    """One session a maintenance run removes (or, in warn mode, would remove)."""

    session_id: str
    agent_id: str
    key: str | None
    status: str
    reason: RemovalReason
    size_bytes: int
    state_bytes: int
    """The bytes of its session state (part of `size_bytes`' session, kept apart: the
    state is removed with it, `user:` and `agent:` state is not)."""
    active_at: datetime
    removed: bool
    """Whether it was removed (always False in warn mode, and for a session that
    saw activity between the scan and its removal)."""


@attrs.frozen
class UnmetBudget:
    """A limit of the policy that removing every session it may remove does not reach:
    what is left over it is current sessions active within `prune_after`, which
    retention never removes."""

    limit: Literal["max_sessions", "max_bytes"]
    agent_id: str | None
    """The agent over `max_sessions` (a per-agent limit); `None` for `max_bytes`."""
    allowed: int
    """The limit: sessions per agent, or bytes."""
    remaining: int
    """Sessions (of the agent) or bytes there are once the plan is carried out."""


@attrs.frozen
class MaintenanceReport:
    """What a maintenance run found and did."""

    mode: Literal["warn", "enforce"]
    scanned: int
    removals: tuple[Removal, ...]
    shared_state_bytes: int = 0
    """The bytes of `user:` and `agent:` state in scope: kept, whatever is removed."""
    unmet: tuple[UnmetBudget, ...] = ()
    """The policy's limits the run cannot bring the store under (empty: every one met)."""

    @property
    def removed(self) -> int:
        """How many sessions were removed."""
        return sum(1 for r in self.removals if r.removed)

    @property
    def bytes_freed(self) -> int:
        """The session data removed, in bytes (SQLite reuses the space; VACUUM returns it)."""
        return sum(r.size_bytes for r in self.removals if r.removed)

    @property
    def bytes_to_free(self) -> int:
        """The session data the plan chose, in bytes."""
        return sum(r.size_bytes for r in self.removals)


@attrs.frozen
class RemovalPlan:
    """The sessions a policy removes, in removal order, with why; and the limits it
    cannot meet."""

    removals: list[tuple[MaintenanceRow, RemovalReason]]
    unmet: tuple[UnmetBudget, ...]


def plan_removals(
    rows: list[MaintenanceRow], policy: RetentionPolicy, now: datetime
) -> RemovalPlan:
    """The sessions `policy` removes, in removal order, with why."""
    cutoff = to_micros(now - policy.prune_after)
    protected = {row.sid for row in rows if row.current and row.active_at >= cutoff}
    chosen: dict[int, RemovalReason] = {}
    unmet: list[UnmetBudget] = []
    for row in rows:
        if row.active_at < cutoff:
            chosen[row.sid] = "inactive"
    if policy.max_sessions is not None:
        per_agent: dict[str, list[MaintenanceRow]] = defaultdict(list)
        for row in rows:
            if row.sid not in chosen:
                per_agent[row.agent_id].append(row)
        for agent, agent_rows in sorted(per_agent.items()):
            agent_rows.sort(key=lambda r: (r.sid in protected, r.active_at), reverse=True)
            for row in agent_rows[policy.max_sessions :]:
                if row.sid not in protected:
                    chosen[row.sid] = "over_count"
            left = sum(1 for row in agent_rows if row.sid not in chosen)
            if left > policy.max_sessions:
                unmet.append(UnmetBudget("max_sessions", agent, policy.max_sessions, left))
    target = policy.size_target
    if target is not None and policy.max_bytes is not None:
        remaining = [row for row in rows if row.sid not in chosen]
        total = sum(row.size_bytes for row in remaining)
        if total > policy.max_bytes:
            # Archived sessions go first, then the least recently active.
            remaining.sort(key=lambda r: (r.status != "archived", r.active_at))
            for row in remaining:
                if total <= target:
                    break
                if row.sid in protected:
                    continue
                chosen[row.sid] = "over_size"
                total -= row.size_bytes
            if total > policy.max_bytes:
                unmet.append(UnmetBudget("max_bytes", None, policy.max_bytes, total))
    by_sid = {row.sid: row for row in rows}
    order = sorted(chosen, key=lambda sid: by_sid[sid].active_at)
    return RemovalPlan([(by_sid[sid], chosen[sid]) for sid in order], tuple(unmet))


def removal(row: MaintenanceRow, reason: RemovalReason, *, removed: bool) -> Removal:
    """The report line of one planned removal."""
    return Removal(
        session_id=row.id,
        agent_id=row.agent_id,
        key=row.key,
        status=row.status,
        reason=reason,
        size_bytes=row.size_bytes,
        state_bytes=row.state_bytes,
        active_at=from_micros(row.active_at),
        removed=removed,
    )
