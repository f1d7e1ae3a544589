"""Compaction: a shorter context without destroying history.

A compaction appends one `compaction` entry holding a summary of what it
leaves out and the id of the first entry it keeps; the context then starts
with the summary. The original entries stay where they were, so "undo" is
moving the leaf back to before the compaction entry. The summary comes from
a summariser the caller passes (entries in, text out; sync or async), so no
model vendor is built in; `headings_summarizer` serves tests and offline use.

Compaction runs in three steps so that no transaction is open while a
summariser (a model call, maybe) works: plan in a read transaction,
summarise, then append in a write transaction that checks the kept entries
are still on the active path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from aisopod_session._errors import ConflictError
from aisopod_session._model import Entry, Session
from aisopod_session._paths import entries_on_path, find_on_path
from aisopod_session._toolpairs import safe_cuts
from aisopod_shared import InvalidInput

__all__ = [
    "CompactionPlan",
    "CompactionResult",
    "KeepLastTurns",
    "Strategy",
    "Summarizer",
    "TokenBudget",
    "headings_summarizer",
]


def _positive(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput("must be a positive integer", field=attribute.name)


@attrs.frozen
class KeepLastTurns:
    """Keep the last `turns` turns (a user message and everything after it until
    the next user message); summarise the rest."""

    turns: int = attrs.field(validator=_positive)


@attrs.frozen
class TokenBudget:
    """Keep the most recent entries that fit `max_tokens` (stored usage where known,
    else an estimate); summarise the rest."""

    max_tokens: int = attrs.field(validator=_positive)


Strategy: TypeAlias = KeepLastTurns | TokenBudget

Summarizer: TypeAlias = Callable[[Sequence[Entry]], "str | Awaitable[str]"]
"""Entries in, summary text out; may be a coroutine function."""


@attrs.frozen
class CompactionPlan:
    """What a compaction would do: decided in a read transaction, applied in a write."""

    session_id: str
    version: int
    leaf_seq: int
    first_kept: Entry
    dropped: tuple[Entry, ...]
    """What the summary replaces, oldest first (a previous summary first, if any)."""
    system_entry_ids: tuple[str, ...]
    tokens_before: int
    strategy: Strategy


@attrs.frozen
class CompactionResult:
    """The outcome of `compact`: `entry` is `None` when nothing would have been dropped."""

    session: Session
    entry: Entry | None
    first_kept_seq: int | None
    dropped: int
    tokens_before: int

    @property
    def compacted(self) -> bool:
        """Whether a compaction entry was appended."""
        return self.entry is not None


MAX_HEADINGS = 40
"""The most turn headings the built-in summariser writes; older turns are counted."""
MAX_EARLIER = 2000
"""The most characters of an earlier summary the built-in summariser carries on."""


def headings_summarizer(entries: Sequence[Entry]) -> str:
    """A summary without a model: the earlier summary (cut to `MAX_EARLIER`
    characters), then one heading per dropped turn (the last `MAX_HEADINGS`).

    Bounded, like a model's summary: the context built from it stays the same
    size however long the history grows.
    """
    earlier: list[str] = []
    headings: list[str] = []
    for entry in entries:
        if entry.type == "compaction" and entry.text.strip():
            text = entry.text.strip()
            earlier.append(text if len(text) <= MAX_EARLIER else text[: MAX_EARLIER - 3] + "...")
        elif entry.type == "message" and entry.role == "user" and entry.text.strip():
            heading = entry.text.strip().splitlines()[0]
            headings.append(f"- {heading[:117] + '...' if len(heading) > 120 else heading}")
    if len(headings) > MAX_HEADINGS:
        skipped = len(headings) - MAX_HEADINGS
        headings = [f"- ({skipped} earlier turns)", *headings[-MAX_HEADINGS:]]
    return "\n".join([*earlier, *headings]) or "(nothing to summarise)"


def plan(tx: Any, sid: int, session: Session, strategy: Strategy) -> CompactionPlan | None:
    """Decide the cut for `strategy` on the session's active path; `None` if nothing
    would be dropped. Runs in a read transaction."""
    if not isinstance(strategy, KeepLastTurns | TokenBudget):
        raise InvalidInput("must be KeepLastTurns or TokenBudget", field="strategy")
    leaf = session.leaf_seq
    if leaf <= 0:
        return None
    previous_seq = find_on_path(tx, sid, leaf, tx.compactions_before(sid, leaf, 16))
    previous: Entry | None = None
    first = 1
    carried: list[str] = []
    if previous_seq is not None:
        previous = tx.entries_by_seq(sid, session.id, [previous_seq])[0]
        kept_id = previous.payload.get("firstKeptEntryId")
        kept = tx.seq_of_id(sid, kept_id) if isinstance(kept_id, str) else None
        first = kept if kept is not None else previous_seq
        details = previous.payload.get("details")
        if isinstance(details, Mapping) and isinstance(details.get("systemEntryIds"), list):
            carried = [i for i in details["systemEntryIds"] if isinstance(i, str)]
    # The previous summary stands for everything before its kept entries, earlier
    # summaries included: it is carried on once, and older ones not at all.
    path = [
        e for e in entries_on_path(tx, sid, session.id, leaf, first=first) if e.type != "compaction"
    ]
    cut = _cut(path, strategy)
    if cut is None or cut == 0:
        return None
    dropped = path[:cut]
    system_ids = [*carried, *(e.id for e in dropped if e.role == "system" and e.id not in carried)]
    if all(e.role == "system" for e in dropped):
        return None
    return CompactionPlan(
        session_id=session.id,
        version=session.version,
        leaf_seq=leaf,
        first_kept=path[cut],
        dropped=tuple([previous, *dropped] if previous is not None else dropped),
        system_entry_ids=tuple(system_ids),
        tokens_before=sum(e.tokens for e in path) + (previous.tokens if previous else 0),
        strategy=strategy,
    )


def _cut(path: list[Entry], strategy: Strategy) -> int | None:
    """The index of the first kept entry, moved so no kept tool result loses its call."""
    safe = safe_cuts(path)
    if isinstance(strategy, KeepLastTurns):
        starts = [i for i, e in enumerate(path) if e.type == "message" and e.role == "user"]
        if len(starts) <= strategy.turns:
            return None
        cut = starts[-strategy.turns]
        while cut > 0 and not safe[cut]:
            cut -= 1  # keep more rather than orphan a result
        return cut
    total = 0
    cut = len(path)
    while cut > 0 and total + path[cut - 1].tokens <= strategy.max_tokens:
        cut -= 1
        total += path[cut].tokens
    if cut == 0:
        return None
    later = next((i for i in range(cut, len(path)) if safe[i]), None)
    if later is not None and later < len(path):
        return later
    # Nothing after the cut is safe (or even the last entry is over budget):
    # keep more, from the latest safe cut before it.
    return next((i for i in range(min(cut, len(path) - 1), 0, -1) if safe[i]), None)


def compaction_payload(plan: CompactionPlan, summary: str) -> dict[str, Any]:
    """The `compaction` entry's payload, in the transcript format's shape."""
    if not isinstance(summary, str):
        raise InvalidInput("a summariser must return text", field="summary")
    strategy = plan.strategy
    return {
        "summary": summary,
        "firstKeptEntryId": plan.first_kept.id,
        "tokensBefore": plan.tokens_before,
        "details": {
            "systemEntryIds": list(plan.system_entry_ids),
            "droppedEntries": len(plan.dropped),
            "strategy": (
                {"keepLastTurns": strategy.turns}
                if isinstance(strategy, KeepLastTurns)
                else {"tokenBudget": strategy.max_tokens}
            ),
        },
    }


def check_still_valid(tx: Any, sid: int, session: Session, plan: CompactionPlan) -> None:
    """Refuse to apply a plan whose kept entries left the active path meanwhile."""
    if find_on_path(tx, sid, session.leaf_seq, [plan.first_kept.seq]) is None:
        raise ConflictError(session.id, plan.version, session.version)
