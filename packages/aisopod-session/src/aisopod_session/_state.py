"""State tracking: JSON key/values beside the conversation, in three scopes.

- **Session** keys (no prefix) change through `state` entries in the session's
  tree, appended in the transaction of the messages they go with: the state at
  any entry is the fold of the changes on the path from the root to it, so a
  rewind brings back the state of that point, a branch has its own, and a
  fork starts from the state at the fork point. The state at the leaf is kept
  ready on the session's row (`state()` reads one row); every `SNAPSHOT_EVERY`
  changes the state is also written beside the change that made it, so the
  state at any past entry folds at most that many changes onto a snapshot.
- **`user:`** keys are shared by every session of one agent and one user (the
  session's `user_id`); **`agent:`** keys by every session of an agent (ADK's
  `app:`). Both are rows of their own, changed in place: not branch-local.
- **`temp:`** keys are accepted and dropped, as ADK drops them.

A value replaces the old one whole (a dict is not merged); `None` is stored
as null; `REMOVE` deletes the key.

A `state` entry's payload has the shape of a transcript's `custom` entry
(`customType` `aisopod.state`, `data` with `set` and `remove`): exported
transcripts carry state changes as custom entries, and importing one back
turns them into state changes again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

import orjson

from aisopod_session._entries import PreparedEntry, Stamp, holds_nul
from aisopod_session._errors import InvalidPayload, PayloadTooLarge
from aisopod_shared import InvalidInput, dumps

__all__ = [
    "merged",
    "REMOVE",
    "SNAPSHOT_EVERY",
    "Change",
    "STATE_CUSTOM_TYPE",
    "StateDelta",
    "apply_change",
    "change_of",
    "is_state_payload",
    "prepare_delta",
    "stored_entry_type",
    "transcript_entry_type",
]

STATE_CUSTOM_TYPE: Final = "aisopod.state"
"""The `customType` of a session state change in a transcript."""

SNAPSHOT_EVERY: Final = 64
"""Session state changes between two snapshots on a path: the most a read of the
state at a past entry folds."""

_PREFIXED = re.compile(r"^([A-Za-z_]+):")
_SCOPES: Final = ("user", "agent", "temp")
_ALIASES: Final = {"app": "agent"}


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"

    def __reduce__(self) -> str:
        return "REMOVE"  # one sentinel, also across pickling


REMOVE: Final = _Remove()
"""A state delta's value that deletes its key."""


class Change(NamedTuple):
    """A key's new value, with its JSON (checked once, kept for writing it)."""

    value: Any
    json: bytes


class StateDelta(NamedTuple):
    """A state delta, checked and split by scope (keys without their prefix); never
    empty (`prepare_delta` gives `None` for a delta that changes nothing).

    Each scope maps a key to its `Change`, or to `None` for a removal.
    """

    session: Mapping[str, Change | None]
    user: Mapping[str, Change | None]
    agent: Mapping[str, Change | None]

    def session_entry(self, stamp: Stamp, *, max_payload_bytes: int) -> PreparedEntry:
        """The `state` entry recording the session part (never read by a model: no
        text, no tokens). Its values and keys were checked by `prepare_delta`."""
        payload = self.session_payload()
        data = orjson.dumps(payload)
        if len(data) > max_payload_bytes:
            raise PayloadTooLarge(len(data), max_payload_bytes)
        return PreparedEntry(None, "state", None, data, payload, "", None, 0, stamp.micros)

    def session_payload(self) -> dict[str, Any]:
        """The payload of the `state` entry recording the session part."""
        return {
            "customType": STATE_CUSTOM_TYPE,
            "data": {
                "set": {
                    key: change.value for key, change in self.session.items() if change is not None
                },
                "remove": [key for key, change in self.session.items() if change is None],
            },
        }


def prepare_delta(delta: object, *, max_value_bytes: int) -> StateDelta | None:
    """Check a delta as given (a mapping of keys, with their scope prefix, to JSON
    values or `REMOVE`) and serialize its values.

    Raises:
        InvalidInput: for a delta that is not a mapping, a key that is not a
            non-empty string or has an unknown prefix, a value JSON cannot
            carry, or one over `max_value_bytes`.
    """
    if not isinstance(delta, Mapping):
        raise InvalidInput("must be a mapping of keys to JSON values", field="state")
    scopes: dict[str, dict[str, Change | None]] = {"": {}, "user": {}, "agent": {}, "temp": {}}
    for key, value in delta.items():
        scope, name = _split(key)
        if value is REMOVE:
            scopes[scope][name] = None
            continue
        data = dumps(value, field=f"state.{key}")
        if holds_nul(data):
            # No backend stores NUL everywhere (PostgreSQL nowhere in text).
            raise InvalidPayload("NUL characters cannot be stored", field=f"state.{key}")
        if len(data) > max_value_bytes:
            raise InvalidInput(
                f"the value is {len(data)} bytes, over the limit of {max_value_bytes}",
                field=f"state.{key}",
            )
        scopes[scope][name] = Change(value, data)
    if not (scopes[""] or scopes["user"] or scopes["agent"]):
        return None  # nothing (or only temp: keys) to keep
    return StateDelta(scopes[""], scopes["user"], scopes["agent"])


def _split(key: object) -> tuple[str, str]:
    """A delta key's scope (`""` for the session's) and its name within the scope."""
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"state keys are non-empty strings, not {key!r}", field="state")
    if "\x00" in key or not _encodable(key):
        raise InvalidPayload(
            f"{key!r}: a state key is text a store can keep (no NUL, no lone surrogate)",
            field="state",
        )
    if ":" not in key:
        return "", key  # the common case, without the pattern
    match = _PREFIXED.match(key)
    if match is None:
        return "", key
    prefix = match.group(1)
    name = key[match.end() :]
    if prefix in _SCOPES and name:
        return prefix, name
    if prefix in _ALIASES:
        raise InvalidInput(
            f"{key!r}: aisopod calls the {prefix}: scope {_ALIASES[prefix]}: (state shared by"
            " every session of the agent)",
            field="state",
        )
    raise InvalidInput(
        f"{key!r}: state keys are the session's (no prefix), or user:, agent: or temp:"
        f" ones; {prefix}: is none of these",
        field="state",
    )


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def change_of(payload: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
    """The keys a `state` entry sets (with their values) and removes."""
    data = payload.get("data")
    if not isinstance(data, Mapping):
        return {}, []
    sets = data.get("set")
    removes = data.get("remove")
    return (
        sets if isinstance(sets, Mapping) else {},
        [key for key in removes if isinstance(key, str)] if isinstance(removes, list) else [],
    )


def apply_change(state: dict[str, Any], payload: Mapping[str, Any]) -> None:
    """Apply one `state` entry's change to `state`, in place."""
    sets, removes = change_of(payload)
    state.update(sets)
    for key in removes:
        state.pop(key, None)


def is_state_payload(payload: Mapping[str, Any]) -> bool:
    """Whether a transcript's custom entry is a session state change."""
    if payload.get("customType") != STATE_CUSTOM_TYPE:
        return False
    data = payload.get("data")
    return (
        isinstance(data, Mapping)
        and isinstance(data.get("set", {}), Mapping)
        and isinstance(data.get("remove", []), list)
        and all(isinstance(key, str) for key in data.get("remove", []))
    )


def transcript_entry_type(entry_type: str) -> str:
    """The type an entry is written with in a transcript."""
    return "custom" if entry_type == "state" else entry_type


def stored_entry_type(transcript_type: str, payload: Mapping[str, Any]) -> str:
    """The type a transcript's entry is stored with (a custom entry holding a state
    change becomes a `state` entry again)."""
    if transcript_type == "custom" and is_state_payload(payload):
        return "state"
    return transcript_type


def merged(states: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """One mapping of several scopes' states, each key with its scope's prefix."""
    out: dict[str, Any] = {}
    for prefix, state in states:
        for key, value in state.items():
            out[f"{prefix}{key}"] = value
    return out
