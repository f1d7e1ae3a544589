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

from aisopod_session._context_budget import fit, message_tokens
from aisopod_session._model import Entry, Items
from aisopod_session._paths import entries_on_path, find_on_path, path_ranges, segments
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
class Context(Items[Message]):
    """The messages for the model, and what the active path says about it; iterate
    it, index it and `len()` it for its messages.

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
    """Whether `max_tokens` left a message out (exactly then)."""

    def _items(self) -> tuple[Message, ...]:
        return self.messages

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
    """The context of the path ending at `leaf` (see the module docstring; with
    `max_tokens`, `_context_budget`'s rules)."""
    if leaf <= 0:
        return Context(session_id, (), (), None, None, None, 0, False)
    view = compaction_view(tx, sid, leaf)
    compaction: Entry | None = None
    if view is not None:
        compaction = tx.entries_by_seq(sid, session_id, [view.seq])[0]
        prefix = tx.entries_by_seq(sid, session_id, list(view.system_seqs))
        window = _Window(tx, sid, session_id, leaf, view.first, prefix)
    else:
        root_range = path_ranges(tx, sid, leaf)[0]
        prefix = _root_system_prompt(tx, sid, session_id, root_range)
        window = _Window(tx, sid, session_id, leaf, root_range[0], prefix)
    head = [*prefix, *([compaction] if compaction is not None else [])]
    if max_tokens is None:
        path = window.read(window.start)
        body, truncated = window.body(path), False
    else:
        path, body, truncated = _within_budget(window, head, max_tokens, whole=view is not None)
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


@attrs.define
class _Window:
    """The entries of the path the context draws on: from `start` (the root, or a
    compaction's first kept entry) to `leaf`, less the head's system prompt."""

    tx: SqlTx
    sid: int
    session_id: str
    leaf: int
    start: int
    prefix: list[Entry]

    def read(self, first: int) -> list[Entry]:
        return entries_on_path(self.tx, self.sid, self.session_id, self.leaf, first=first)

    def body(self, path: list[Entry]) -> list[Entry]:
        # The latest compaction alone stands for what came before its kept
        # entries: an earlier one among them is in its summary already.
        held = {entry.seq for entry in self.prefix}
        return [e for e in path if e.type != "compaction" and e.seq not in held]


def _within_budget(
    window: _Window, head: list[Entry], max_tokens: int, *, whole: bool
) -> tuple[list[Entry], list[Entry], bool]:
    """The path read, the entries kept and whether a message was left out.

    After a compaction the window is what it kept (`whole`); else it is read
    from the leaf back, as far as `reach` tokens of entries, and further back
    while it holds too little to decide.
    """
    roles: dict[int, str | None] = {}

    def role(entry: Entry) -> str | None:
        if entry.seq not in roles:
            roles[entry.seq] = _role(entry)
        return roles[entry.seq]

    head_tokens = message_tokens(head, role)
    budget = max_tokens - head_tokens
    reach = max_tokens
    while True:
        if whole:
            path = window.read(window.start)
        else:
            first = _first_within_budget(window.tx, window.sid, window.leaf, reach)
            path = window.read(first)
            whole = first <= window.start
        body = window.body(path)
        if whole or message_tokens(body, role) > budget:
            fitted = fit(
                body,
                budget,
                whole=whole,
                is_message=role,
                max_tokens=max_tokens,
                head_tokens=head_tokens,
            )
            if fitted is not None:
                return path, *fitted
        reach = 2 * reach + 1


def _tokens(entries: Sequence[Entry]) -> int:
    return sum(entry.tokens for entry in entries)


def _role(entry: Entry) -> str | None:
    """The role of the message an entry becomes (`None`: it becomes none)."""
    message = _message(entry)
    return message.role if message is not None else None


def _root_system_prompt(
    tx: SqlTx, sid: int, session_id: str, root_range: tuple[int, int]
) -> list[Entry]:
    """The system messages that open the path: they stay, whatever the budget."""
    start, end = root_range
    prompt = []
    for entry in tx.entries_between(sid, session_id, start, min(end, start + _SYSTEM_PROMPT_PROBE)):
        role = _role(entry)
        if role == "system":
            prompt.append(entry)
        elif role is not None:
            break
    return prompt


def _first_within_budget(tx: SqlTx, sid: int, leaf: int, budget: int) -> int:
    """The earliest seq of the path whose entries up to `leaf` fit `budget` tokens
    (read range by range from the leaf, so only what fits is ever read).

    Every entry counts here, messages or not: the window is at most what the
    budget may hold, and is read further back when it holds too little.
    """
    total = 0
    first = leaf
    for start, end in segments(tx, sid, leaf):
        for seq, tokens in tx.tokens_between(sid, start, end):
            total += tokens
            if total > budget:
                return first
            first = seq
    return first


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
            return Message(entry.shown_role, _content(payload.get("content")), extra=extra)
        if entry.type in ("branch_summary", "compaction"):
            return Message(entry.shown_role, _text(payload.get("summary")))
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
