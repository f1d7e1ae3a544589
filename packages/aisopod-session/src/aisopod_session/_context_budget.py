"""Fitting a context into `max_tokens`: where the messages may start, what is left out.

The rules (`SessionStore.context` documents them):

- The budget counts the entries that become messages. The system prompt at
  the root of the path, and the latest compaction's summary, always stay;
  the budget left after them goes to the newest entries.
- The kept entries start where a model can start reading: not with an
  assistant message, not with a tool result whose call is left out, and
  never between a tool call and its result. Only the whole history (or all a
  compaction kept) may start otherwise, since nothing is left out of it.
- When even the shortest such start does not fit (the last user message and
  what follows it are over the budget), `ContextBudgetTooSmall` says how many
  tokens it needs; the context is never silently empty.
- `truncated` is true exactly when a message was left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aisopod_session._errors import ContextBudgetTooSmall
from aisopod_session._model import Entry
from aisopod_session._toolpairs import call_ids, result_ids, safe_cuts

__all__ = ["Fit", "fit", "message_tokens"]

Fit = tuple[list[Entry], bool]
"""The entries kept, and whether a message was left out."""


def fit(
    body: Sequence[Entry],
    budget: int,
    *,
    whole: bool,
    is_message: Callable[[Entry], str | None],
    max_tokens: int,
    head_tokens: int,
) -> Fit | None:
    """The newest entries of `body` that fit `budget` and start well.

    `whole`: `body` is all the context may hold (the path from its root, or
    from a compaction's first kept entry), so it may start anywhere at index 0.
    `is_message(entry)` gives the role of the message an entry becomes (`None`
    when it becomes none). Returns `None` when `body` holds no place to start
    and is not whole: the caller reads further back.

    Raises:
        ContextBudgetTooSmall: when the shortest window that starts well is over
            the budget.
    """
    roles = [is_message(entry) for entry in body]
    starts = _good_starts(body, roles, whole=whole)
    if not starts:
        if whole or not body:
            return [], any(role is not None for role in roles)
        return None
    # Message tokens from each index to the end, newest last.
    suffix = [0] * (len(body) + 1)
    for index in range(len(body) - 1, -1, -1):
        suffix[index] = suffix[index + 1] + (body[index].tokens if roles[index] else 0)
    fitting = [index for index in starts if suffix[index] <= budget]
    if not fitting:
        raise ContextBudgetTooSmall(max_tokens, head_tokens + suffix[starts[-1]])
    cut = fitting[0]
    return list(body[cut:]), any(role is not None for role in roles[:cut])


def message_tokens(entries: Sequence[Entry], is_message: Callable[[Entry], str | None]) -> int:
    """The tokens of the entries that become messages."""
    return sum(entry.tokens for entry in entries if is_message(entry) is not None)


def _good_starts(body: Sequence[Entry], roles: Sequence[str | None], *, whole: bool) -> list[int]:
    """The indexes the kept entries may start at, in order."""
    safe = safe_cuts(body)
    # A result whose call is not in `body` at all: no window may hold it first,
    # nor hold it unless the window starts after it.
    orphaned_until = 0
    called: set[str] = set()
    for index, entry in enumerate(body):
        if any(call_id not in called for call_id in result_ids(entry)):
            orphaned_until = index + 1
        called.update(call_ids(entry))
    starts = []
    next_role: str | None = None
    next_answers = False
    firsts: list[tuple[str | None, bool]] = [(None, False)] * len(body)
    for index in range(len(body) - 1, -1, -1):
        if roles[index] is not None:
            next_role, next_answers = roles[index], bool(result_ids(body[index]))
        firsts[index] = (next_role, next_answers)
    for index in range(len(body)):
        if whole and index == 0 and orphaned_until == 0:
            starts.append(index)
            continue
        role, answers = firsts[index]
        if (
            index >= orphaned_until
            and safe[index]
            and role is not None
            and role not in ("assistant", "tool", "toolResult")
            and not answers
        ):
            starts.append(index)
    return starts
