"""Tool calls and their results: where a history may be cut without orphaning one.

A cut keeps the entries from some index on. It is safe when every tool result
it keeps still has its tool call: a model shown a result without the call
that asked for it rejects the request or is confused by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aisopod_session._model import Entry

__all__ = ["call_ids", "calls_in", "result_ids", "results_in", "safe_cuts"]


def call_ids(entry: Entry) -> list[str]:
    """The ids of the tool calls an entry makes (assistant `toolCall` parts)."""
    return calls_in(entry.type, entry.payload)


def result_ids(entry: Entry) -> list[str]:
    """The tool call ids an entry answers (a tool result message, or result parts)."""
    return results_in(entry.type, entry.payload)


def calls_in(kind: str, payload: Any) -> list[str]:
    """`call_ids` of an entry given as its type and payload."""
    message = payload.get("message") if kind == "message" and isinstance(payload, Mapping) else None
    if not isinstance(message, Mapping):
        return []
    return [
        part["id"]
        for part in _parts(message.get("content"))
        if part.get("type") == "toolCall" and isinstance(part.get("id"), str)
    ]


def results_in(kind: str, payload: Any) -> list[str]:
    """`result_ids` of an entry given as its type and payload."""
    message = payload.get("message") if kind == "message" and isinstance(payload, Mapping) else None
    if not isinstance(message, Mapping):
        return []
    found = [
        part["toolCallId"]
        for part in _parts(message.get("content"))
        if part.get("type") == "toolResult" and isinstance(part.get("toolCallId"), str)
    ]
    call_id = message.get("toolCallId")
    if isinstance(call_id, str):
        found.append(call_id)
    return found


def _parts(content: Any) -> list[Mapping[str, Any]]:
    if not isinstance(content, list):
        return []
    return [part for part in content if isinstance(part, Mapping)]


def safe_cuts(entries: Sequence[Entry]) -> list[bool]:
    """For each index i (and len(entries)), whether keeping `entries[i:]` orphans no result.

    A cut between a call (at index k) and its result (at index j > k) is
    unsafe for every i in k+1..j.
    """
    safe = [True] * (len(entries) + 1)
    called_at: dict[str, int] = {}
    for index, entry in enumerate(entries):
        for call_id in result_ids(entry):
            start = called_at.get(call_id)
            if start is not None:
                for cut in range(start + 1, index + 1):
                    safe[cut] = False
        for call_id in call_ids(entry):
            called_at[call_id] = index
    return safe
