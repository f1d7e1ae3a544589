"""Walking a session's active path: leaf to root, one straight run at a time.

Entries mostly hang from the entry just before them. A path is therefore a
few ranges of consecutive seqs, and the backends index the entries where a
range starts ("jumps"). Every walk here costs one index lookup per range it
crosses, so reading the end of a path costs the same in a session of a
thousand entries and of a million.
"""

from __future__ import annotations

from collections.abc import Iterator

from aisopod_session._model import Entry
from aisopod_session.backends._sql import SqlTx

__all__ = ["entries_on_path", "find_on_path", "path_ranges", "path_tail", "segments"]


def segments(tx: SqlTx, sid: int, leaf: int) -> Iterator[tuple[int, int]]:
    """The path from `leaf` to the root as (first seq, last seq) ranges, newest first."""
    seq = leaf
    while seq > 0:
        start, parent = tx.segment_start(sid, seq)
        yield start, seq
        seq = parent or 0


def find_on_path(tx: SqlTx, sid: int, leaf: int, candidates: list[int]) -> int | None:
    """The first of `candidates` (seqs, newest first) that lies on the path from `leaf`."""
    walk = segments(tx, sid, leaf)
    current = next(walk, None)
    for candidate in candidates:
        while current is not None and current[0] > candidate:
            current = next(walk, None)
        if current is None:
            return None
        if current[0] <= candidate <= current[1]:
            return candidate
    return None


def path_ranges(tx: SqlTx, sid: int, leaf: int, *, first: int = 1) -> list[tuple[int, int]]:
    """The ranges of the path from `leaf` back to entry `first` (an ancestor), oldest first."""
    ranges: list[tuple[int, int]] = []
    for start, end in segments(tx, sid, leaf):
        if start <= first:
            ranges.append((max(start, first), end))
            break
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def entries_on_path(
    tx: SqlTx, sid: int, session_id: str, leaf: int, *, first: int = 1
) -> list[Entry]:
    """Every entry on the path from `first` (an ancestor of `leaf`) to `leaf`, in order."""
    entries: list[Entry] = []
    for start, end in path_ranges(tx, sid, leaf, first=first):
        entries.extend(tx.entries_between(sid, session_id, start, end))
    return entries


def path_tail(tx: SqlTx, sid: int, leaf: int, count: int) -> list[tuple[int, int]]:
    """Ranges holding the last `count` entries of the path ending at `leaf`, oldest first."""
    ranges: list[tuple[int, int]] = []
    need = count
    for start, end in segments(tx, sid, leaf):
        take = min(need, end - start + 1)
        ranges.append((end - take + 1, end))
        need -= take
        if need == 0:
            break
    ranges.reverse()
    return ranges
