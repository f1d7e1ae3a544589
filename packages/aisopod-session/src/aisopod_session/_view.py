"""Where what the model sees begins on a path: the rule compaction sets.

The latest compaction on the active path stands for everything before the
entries it kept: the model sees the system entries it carried, its summary,
then the path from its first kept entry on (an earlier compaction among
those is in its summary already). Without a compaction the model sees the
whole path. The context builder and the adapters' reads both start here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from aisopod_session._paths import find_on_path
from aisopod_session.backends._sql import SqlTx

__all__ = ["CompactionView", "compaction_view"]

_CANDIDATES: Final = 16
"""Compactions looked at for one on the path (newest first): more than branch points
a path typically crosses between two compactions."""


class CompactionView(NamedTuple):
    """The latest compaction on a path, and where the path it keeps begins."""

    seq: int
    """The compaction entry's seq."""
    first: int
    """The seq of the first entry it kept (its own seq when it names none on record)."""
    system_seqs: tuple[int, ...]
    """Seqs of the system entries it carried forward (they precede its summary)."""


def compaction_view(tx: SqlTx, sid: int, leaf: int) -> CompactionView | None:
    """The latest compaction on the path ending at `leaf`, or `None` when it has none."""
    if leaf <= 0:
        return None
    seq = find_on_path(tx, sid, leaf, tx.compactions_before(sid, leaf, _CANDIDATES))
    if seq is None:
        return None
    payload = tx.payloads_between(sid, seq, seq)[0][2]
    kept_id = payload.get("firstKeptEntryId") if isinstance(payload, Mapping) else None
    first = tx.seq_of_id(sid, kept_id) if isinstance(kept_id, str) else None
    return CompactionView(seq, first if first is not None else seq, _system_seqs(tx, sid, payload))


def _system_seqs(tx: SqlTx, sid: int, payload: Any) -> tuple[int, ...]:
    details = payload.get("details") if isinstance(payload, Mapping) else None
    ids = details.get("systemEntryIds") if isinstance(details, Mapping) else None
    if not isinstance(ids, list):
        return ()
    seqs = (tx.seq_of_id(sid, i) for i in ids if isinstance(i, str))
    return tuple(sorted(seq for seq in seqs if seq))
