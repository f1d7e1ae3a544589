"""The end of a key's conversation as a framework sees it, read as payloads.

The framework adapters ask one thing of the store on every turn: "the last
N items of this conversation". That read is one call here, made on a
worker thread: the key's session in the statement that finds its binding,
the latest compaction on its active path (`_view`), then the path read
backwards a page at a time, each row decoded by the adapter straight from
its payload (no typed `Entry` is built); the rows carry their parents, so
the path is followed from the rows read, one statement a page, with no
lookup of where each straight run starts. What it returns is what the model
should see: a compaction's carried system entries and summary, then the
entries it kept and those after it.

Every entry a read looks at lies at or before the leaf the read started
from, and entries never change once written: the statements need not share
a snapshot (on PostgreSQL each runs alone, in autocommit mode).

A reader that reads the same session again and again (a conversation's
window on every turn) can keep what it decoded in a `Memo`: the next read
of the session still reads every row, but does not parse or decode again an
entry whose stored payload is the one decoded then.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, Generic, TypeVar

from aisopod_session._toolpairs import calls_in, results_in
from aisopod_session._view import compaction_view
from aisopod_session.backends._sql import BoundSession, SqlTx

__all__ = ["Decode", "Memo", "read_tail"]

T = TypeVar("T")

Decode = Callable[[str, Any], "list[T] | None"]
"""An adapter's decoder: (entry type, payload) to the framework items the entry is,
oldest first (none for an entry that is not one). A `compaction` entry given to it
is the summary to show."""

_Pair = tuple[list[str], list[str]]
"""The tool calls an entry makes and those it answers (`keep_pairs`)."""


class Memo(Generic[T]):
    """What a tail read decoded of one session's entries, for the next read of it.

    It holds the entries the last read looked at (so it follows the window as
    the conversation grows), by seq: their stored payloads, the items decoded
    from them and their tool pairs. Entries never change, but each payload is
    compared with the one read all the same (a few nanoseconds for SQLite's
    text): a memo of another session, or of one whose entries were deleted
    and written again, only costs the time of decoding them. And the rows
    that read went through with the items they gave: the next read's first
    page is sized from them (one statement for a window, most often).
    """

    __slots__ = ("entries", "share")

    def __init__(self) -> None:
        self.entries: dict[int, tuple[Any, list[T] | None, _Pair | None]] = {}
        self.share = (0, 0)

    def __len__(self) -> int:
        return len(self.entries)


_SLACK: Final = 8
"""The fewest rows read at a time."""
_PAGE: Final = 1000
"""The most rows one statement reads."""


def read_tail(
    tx: SqlTx,
    session: BoundSession,
    limit: int | None,
    decode: Decode[T],
    *,
    keep_pairs: bool = False,
    kinds: Collection[str] | None = None,
    memo: Memo[T] | None = None,
) -> list[T]:
    """The last `limit` items (all, for `None`) of what the model sees of `session`'s
    active path, oldest first (see the module docstring).

    With `keep_pairs`, the window never starts between a tool call and its
    result: it is widened back to the call (and to the calls of any result
    the widening takes in), so it can hold more than `limit` items.
    `kinds`, when given, are the only entry types `decode` takes items from: the
    others are not read (but for those where the path jumps, which are not parsed).
    With a `memo` (of this session, read with this `decode`), an entry decoded by
    the read that filled it is not decoded again, and the memo is left holding what
    this read looked at.
    """
    if limit == 0 or session.leaf_seq <= 0:
        return []
    sid, leaf = session.sid, session.leaf_seq
    view = compaction_view(tx, sid, leaf) if session.compaction_count else None
    first = view.first if view is not None else 1
    # Newest first. This loop runs for every entry read: plain lists, and the tool
    # pairs only when they are asked for.
    values: list[T] = []
    pairs: list[_Pair] = []
    read = tx.decode_json
    earlier = memo.entries if memo is not None else None
    looked: dict[int, tuple[Any, list[T] | None, _Pair | None]] = {}
    done = False  # the window was filled before the start of what the model sees
    high = leaf  # the newest entry on the path not read yet
    rows = 0  # read so far: with the items they gave, the size of the next page
    while high >= first and not done:
        # As many rows as the share of items among the rows read so far says are left
        # (at first, among those the memo's read went through; without one, a row an
        # item: most entries are one), a page at most.
        if limit is None:
            wanted = _PAGE
        elif rows or memo is None:
            wanted = _rows_for(limit - len(values), rows, len(values))
        else:
            wanted = _rows_for(limit, *memo.share)
        low = max(first, high - min(wanted, _PAGE) + 1)
        below = low - 1  # where the path goes on while each entry hangs from the one before
        rows += high - low + 1
        # Decoded one at a time: what the decoder does not keep of a payload is freed
        # at once, not held with a thousand others for the collector to walk.
        for seq, kind, stored, parent in reversed(tx.stored_path_payloads(sid, low, high, kinds)):
            # The latest compaction stands for them all; entries of a kind the decoder
            # takes nothing from are neither parsed nor read, but where the path jumps.
            if kind != "compaction" and (kinds is None or kind in kinds):
                found = earlier.get(seq) if earlier is not None else None
                # (A memo filled without the tool pairs has none to give.)
                if (
                    found is not None
                    and found[0] == stored
                    and (not keep_pairs or found[2] is not None or not found[1])
                ):
                    items, pair = found[1], found[2]
                else:
                    payload = read(stored)
                    items = decode(kind, payload)
                    pair = _pair(kind, payload) if keep_pairs and items else None
                if earlier is not None:
                    looked[seq] = (stored, items, pair)
                if items:
                    _collect(values, pairs, items, pair)
            if parent != seq - 1:  # a jump: the path goes on at its parent (the root: none)
                below = parent or 0
                break  # what is older in these rows lies on other branches
        high = below
        done = _enough(values, pairs, limit, keep_pairs)
    if view is not None and not done:
        # Newest first: the summary, then the system entries it carried.
        head = tx.payloads_between(sid, view.seq, view.seq)
        for seq in reversed(view.system_seqs):
            head += tx.payloads_between(sid, seq, seq)
        for _, kind, payload in head:
            items = decode(kind, payload)
            if items:
                _collect(values, pairs, items, _pair(kind, payload) if keep_pairs else None)
    if memo is not None:
        memo.entries = looked
        memo.share = (rows, len(values))
    values.reverse()
    pairs.reverse()
    return values[_window(pairs, len(values), limit, keep_pairs) :]


def _rows_for(items: int, rows: int, found: int) -> int:
    """The rows to read for `items` more items, `found` having come from `rows` rows:
    as many as that share says (one a row before any is read), at least `_SLACK`."""
    if rows and found:
        items = -(-items * rows // found)  # rounded up
    elif rows:
        items = rows * 2  # none yet: twice what was read
    return max(items, _SLACK)


def _collect(values: list[T], pairs: list[_Pair], items: list[T], pair: _Pair | None) -> None:
    """Add an entry's items to `values` (newest first), and the tool calls it makes and
    answers, when they are asked for (`pair`), to `pairs`."""
    if len(items) == 1:
        values.append(items[0])
    else:
        values.extend(reversed(items))
    if pair is not None:
        pairs.extend([pair] * len(items))


def _pair(kind: str, payload: Any) -> _Pair:
    """The tool calls an entry makes and those it answers."""
    if not isinstance(payload, Mapping):
        return [], []
    return calls_in(kind, payload), results_in(kind, payload)


def _enough(values: list[T], pairs: list[_Pair], limit: int | None, keep_pairs: bool) -> bool:
    """Whether the items read so far (newest first) hold the window."""
    if limit is None or len(values) < limit:
        return False
    if not keep_pairs:
        return True
    # Every result in the window must have its call among what was read.
    oldest_first = pairs[::-1]
    start = _window(oldest_first, len(values), limit, keep_pairs)
    wanted = {cid for _, results in oldest_first[start:] for cid in results}
    made = {cid for calls, _ in pairs for cid in calls}
    return wanted <= made


def _window(pairs: list[_Pair], count: int, limit: int | None, keep_pairs: bool) -> int:
    """Where the window starts among `count` items (oldest first; `pairs` theirs)."""
    if limit is None:
        return 0
    start = max(0, count - limit)
    if not keep_pairs or start == 0:
        return start
    called_at: dict[str, int] = {}
    for index, (calls, _) in enumerate(pairs):
        for cid in calls:
            called_at[cid] = index
    index = count - 1
    while index >= start:
        for cid in pairs[index][1]:
            at = called_at.get(cid)
            if at is not None and at < start:
                start = at
        index -= 1
    return start
