"""Branches of a session's tree: listing them, and the arithmetic of the tree.

Rewinding moves a session's leaf back (the next append starts a branch);
forking copies the active path into a new session. Both are store methods;
this module works out the tree's leaves and their lengths from the "jumps"
(entries that do not hang from the entry just before them), without reading
the entries in between.
"""

from __future__ import annotations

import bisect
from datetime import datetime

import attrs

__all__ = ["Branch", "tree_leaves", "path_length"]


@attrs.frozen
class Branch:
    """One branch of a session: the path from the root to `leaf_seq`."""

    leaf_seq: int
    leaf_id: str
    length: int
    """How many entries the path holds."""
    last_activity: datetime
    """When its leaf was written."""
    active: bool
    """Whether it is the session's active branch."""


def tree_leaves(jumps: list[tuple[int, int | None]], last_seq: int) -> list[int]:
    """The seqs no entry hangs from, given the jumps (seq, parent) and the last seq.

    An entry k can only have k + 1 or a jump as a child. So the leaves are the
    last entry and every entry just before a jump, except those some jump
    hangs from.
    """
    if last_seq <= 0:
        return []
    parents = {parent for _, parent in jumps if parent}
    candidates = {seq - 1 for seq, _ in jumps if seq > 1} | {last_seq}
    return sorted(seq for seq in candidates if seq not in parents)


def path_length(jumps: list[tuple[int, int | None]], leaf: int) -> int:
    """How many entries the path from the root to `leaf` holds."""
    starts = [seq for seq, _ in jumps]
    parent_of = dict(jumps)
    length = 0
    seq = leaf
    while seq > 0:
        start = starts[bisect.bisect_right(starts, seq) - 1]
        length += seq - start + 1
        seq = parent_of[start] or 0
    return length
