"""Building the model's context from a session's active path.

The context is what goes to the model: walk the active branch from its leaf;
the latest compaction on it contributes its summary, then the entries it
kept, then the ones after it. `message`, `custom_message` and
`branch_summary` entries become messages; model and thinking-level changes
set what the context reports. The cost grows with the size of the context
returned, never with the length of the history behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from aisopod_session._model import Entry
from aisopod_session._paths import entries_on_path, find_on_path, path_ranges, segments
from aisopod_session._toolpairs import call_ids, result_ids, safe_cuts
from aisopod_session._view import compaction_view
from aisopod_session.backends._sql import SqlTx
from aisopod_shared import InvalidInput, Message, logger, structure

__all__ = ["Context", "ModelRef", "build_context"]

_SYSTEM_PROMPT_PROBE = 4
"""How many entries at the root of a path are looked at for a system prompt."""

COMPACTION_PREFIX = "The conversation before this point was compacted into this summary:\n\n"
BRANCH_PREFIX = "An earlier branch of this conversation was abandoned; what it did:\n\n"


@attrs.frozen
class ModelRef:
    """The model a context was last talking to."""

    provider: str | None
    model_id: str


@attrs.frozen
class Context:
    """The messages for the model, and what the active path says about it.

    `messages` keep the transcript format's roles: besides `system`, `user`,
    `assistant` and `tool`, a compaction's summary is a `compactionSummary`
    message, an abandoned branch's a `branchSummary` and an extension's
    message a `custom` one. `for_model()` turns those into plain user
    messages. `entries` are the entries the messages came from, in order.
    """

    session_id: str
    messages: tuple[Message, ...]
    entries: tuple[Entry, ...]
    compaction: Entry | None
    model: ModelRef | None
    thinking_level: str | None
    tokens: int
    """The estimated tokens of the entries in the context."""
    truncated: bool
    """Whether `max_tokens` left older entries out."""

    def for_model(self) -> list[Message]:
        """The messages with only `system`, `user`, `assistant` and `tool` roles."""
        plain: list[Message] = []
        for message in self.messages:
            if message.role in ("system", "user", "assistant", "tool"):
                plain.append(message)
            elif message.role == "compactionSummary":
                plain.append(Message.user(COMPACTION_PREFIX + message.text))
            elif message.role == "branchSummary":
                plain.append(Message.user(BRANCH_PREFIX + message.text))
            elif message.text:
                plain.append(Message.user(message.text))
        return plain


def build_context(
    tx: SqlTx, sid: int, session_id: str, leaf: int, *, max_tokens: int | None
) -> Context:
    """The context of the path ending at `leaf` (see the module docstring)."""
    if leaf <= 0:
        return Context(session_id, (), (), None, None, None, 0, False)
    view = compaction_view(tx, sid, leaf)
    compaction: Entry | None = None
    prefix: list[Entry] = []
    first = 1
    if view is not None:
        compaction = tx.entries_by_seq(sid, session_id, [view.seq])[0]
        first = view.first
        prefix = tx.entries_by_seq(sid, session_id, list(view.system_seqs))
    elif max_tokens is not None:
        first = _first_within_budget(tx, sid, leaf, max_tokens)
    path = entries_on_path(tx, sid, session_id, leaf, first=first)
    if compaction is None:
        prefix = _root_system_prompt(tx, sid, session_id, leaf, first)
    # The latest compaction alone stands for what came before its kept entries:
    # an earlier compaction among them is in its summary already.
    body = [entry for entry in path if entry.type != "compaction"]
    truncated = first > 1 and compaction is None
    head = [*prefix, *([compaction] if compaction is not None else [])]
    if max_tokens is not None:
        body, cut = _fit(body, max_tokens - _tokens(head))
        truncated = truncated or cut
    model, thinking = _settings(tx, sid, session_id, leaf, path)
    pairs = [(entry, _message(entry)) for entry in [*head, *body]]
    kept = [(entry, message) for entry, message in pairs if message is not None]
    return Context(
        session_id=session_id,
        messages=tuple(message for _, message in kept),
        entries=tuple(entry for entry, _ in kept),
        compaction=compaction,
        model=model,
        thinking_level=thinking,
        tokens=_tokens([entry for entry, _ in kept]),
        truncated=truncated,
    )


def _tokens(entries: Sequence[Entry]) -> int:
    return sum(entry.tokens for entry in entries)


def _root_system_prompt(tx: SqlTx, sid: int, session_id: str, leaf: int, first: int) -> list[Entry]:
    """System messages at the root of the path that a token budget left out."""
    if first <= 1:
        return []
    root = path_ranges(tx, sid, leaf)[0]
    head = tx.entries_between(
        sid, session_id, root[0], min(root[1], root[0] + _SYSTEM_PROMPT_PROBE)
    )
    return [e for e in head if e.role == "system" and e.seq < first]


def _first_within_budget(tx: SqlTx, sid: int, leaf: int, budget: int) -> int:
    """The earliest seq of the path whose entries up to `leaf` fit `budget` tokens
    (read range by range from the leaf, so only what fits is ever read)."""
    total = 0
    first = leaf
    for start, end in segments(tx, sid, leaf):
        for seq, tokens in tx.tokens_between(sid, start, end):
            total += tokens
            if total > budget:
                return first
            first = seq
    return first


def _fit(body: list[Entry], budget: int) -> tuple[list[Entry], bool]:
    """Drop the oldest entries until `body` fits `budget`, cutting only where no tool
    result loses its call; the last safe cut is kept even when it is over budget.

    A window read from the middle of a path may start with results whose calls
    lie before it: those are dropped whatever the budget.
    """
    safe = safe_cuts(body)
    called: set[str] = set()
    cut = 0
    for index, entry in enumerate(body):
        if any(call_id not in called for call_id in result_ids(entry)):
            cut = index + 1
        called.update(call_ids(entry))
    total = _tokens(body[cut:])
    if cut == 0 and total <= budget:
        return body, False
    while cut < len(body) and total > budget:
        total -= body[cut].tokens
        cut += 1
    while cut < len(body) and not safe[cut]:
        cut += 1
    if cut >= len(body):  # nothing fits: keep the last safe cut there is
        cut = max(i for i in range(len(body)) if safe[i])
    return body[cut:], cut > 0


def _settings(
    tx: SqlTx, sid: int, session_id: str, leaf: int, path: Sequence[Entry]
) -> tuple[ModelRef | None, str | None]:
    model: ModelRef | None = None
    thinking: str | None = None
    for entry in path:
        found_model, found_level = _setting(entry)
        model = found_model or model
        thinking = found_level or thinking
    if (model is None or thinking is None) and path:
        # Look further back along the path, through the index of setting changes.
        before = path[0].seq - 1
        candidates = [seq for seq, _ in tx.settings_before(sid, before, 64)] if before > 0 else []
        while candidates and (model is None or thinking is None):
            seq = find_on_path(tx, sid, leaf, candidates)
            if seq is None:
                break
            entry = tx.entries_by_seq(sid, session_id, [seq])[0]
            found_model, found_level = _setting(entry)
            model = model or found_model
            thinking = thinking or found_level
            candidates = [c for c in candidates if c < seq]
    return model, thinking


def _setting(entry: Entry) -> tuple[ModelRef | None, str | None]:
    payload = entry.payload
    if entry.type == "model_change" and isinstance(payload.get("modelId"), str):
        provider = payload.get("provider")
        return ModelRef(provider if isinstance(provider, str) else None, payload["modelId"]), None
    if entry.type == "thinking_level_change" and isinstance(payload.get("thinkingLevel"), str):
        return None, payload["thinkingLevel"]
    if entry.type == "message":
        message = payload.get("message")
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            model_id = message.get("model")
            if isinstance(model_id, str):
                provider = message.get("provider")
                return ModelRef(provider if isinstance(provider, str) else None, model_id), None
    return None, None


def _message(entry: Entry) -> Message | None:
    payload = entry.payload
    try:
        if entry.type == "message":
            return structure(payload.get("message"), Message)
        if entry.type == "custom_message":
            extra = {k: payload[k] for k in ("customType", "display") if k in payload}
            return Message("custom", _content(payload.get("content")), extra=extra)
        if entry.type == "branch_summary":
            return Message("branchSummary", _text(payload.get("summary")))
        if entry.type == "compaction":
            return Message("compactionSummary", _text(payload.get("summary")))
    except InvalidInput as err:
        logger.warning(
            "entry {} of session {} is not a message: {}", entry.seq, entry.session_id, err
        )
    return None


def _content(value: Any) -> Any:
    if isinstance(value, str):
        return value
    return structure({"role": "custom", "content": value}, Message).content


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
