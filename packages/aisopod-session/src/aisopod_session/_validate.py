"""Checks on the values callers hand the store, each answered with a typed error."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aisopod_session._errors import InvalidSessionKey
from aisopod_session.keys import parse_session_key, request_key
from aisopod_shared import InvalidInput, to_micros

__all__ = ["check_int", "check_micros", "check_text", "merge_patch", "session_key"]

MAX_KEY_LENGTH = 1024


def check_text(value: object, field: str, *, max_length: int = 4096, empty: bool = False) -> str:
    """A string every backend can store: valid UTF-8, no NUL, not too long.

    Raises:
        InvalidInput: naming `field`.
    """
    if not isinstance(value, str):
        raise InvalidInput(f"must be a string, got {type(value).__name__}", field=field)
    if not empty and not value.strip():
        raise InvalidInput("must not be empty", field=field)
    if len(value) > max_length:
        raise InvalidInput(f"longer than {max_length} characters", field=field)
    if "\x00" in value:
        raise InvalidInput("must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInput("is not valid UTF-8 (a lone surrogate)", field=field) from err
    return value


def check_int(value: object, field: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer in range (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"must be an integer, got {type(value).__name__}", field=field)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise InvalidInput(f"must be {bound}, got {value}", field=field)
    return value


def check_micros(value: object, field: str) -> int:
    """An aware datetime, as the microseconds stores keep time in.

    Raises:
        InvalidInput: naming `field`, for anything else (naive datetimes too).
    """
    if not isinstance(value, datetime):
        raise InvalidInput(f"must be a datetime, got {type(value).__name__}", field=field)
    if value.tzinfo is None:
        raise InvalidInput("naive datetimes are ambiguous; pass an aware one", field=field)
    return to_micros(value)


def session_key(key: object, agent_id: str | None) -> tuple[str, str]:
    """The stored form of a caller's key, and the agent it belongs to.

    A key without the `agent:` prefix belongs to `agent_id` (or `main`).

    Raises:
        InvalidSessionKey: for an empty, malformed or unstorable key.
    """
    if not isinstance(key, str) or not key.strip():
        raise InvalidSessionKey(key, "a session key must be a non-empty string")
    try:
        check_text(key, "key", max_length=MAX_KEY_LENGTH)
    except InvalidInput as err:
        raise InvalidSessionKey(key, err.reason) from err
    stored = request_key(agent_id, key)
    parsed = parse_session_key(stored)
    if parsed is None:  # pragma: no cover - request_key always makes agent keys
        raise InvalidSessionKey(key, "expected agent:<agentId>:<rest>")
    return stored, parsed.agent_id


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7396 JSON merge patch of two objects: `None` removes a key, objects merge."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            current = result.get(key)
            result[key] = merge_patch(current if isinstance(current, Mapping) else {}, value)
        else:
            result[key] = value
    return result
