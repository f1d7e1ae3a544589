"""Moving `user:` and `agent:` state between stores, one owner at a time.

Shared values belong to an owner: an agent's user (`user:` state) or an
agent (`agent:` state). They stream out of a store with each owner's keys
together (`stream_shared_state`), and go into another an owner at a time,
looked at beside what that store already holds for the owner: memory holds
one owner's values, however many users a store has.

A restore keeps the values a store already has (unless told to replace
them); a copy makes the target's values the source's, writes only those that
differ (so a copy run again writes nothing), and reads each owner's values
back to check them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from aisopod_session._errors import StoreUnavailable
from aisopod_session.transfer._images import (
    SharedValue,
    stream_shared_state,
    write_shared_state,
)

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["copy_shared_state", "restore_shared_state"]

_Owner = tuple[str, str, str | None]
"""Scope, agent and user (`None` for `agent:` state)."""


def _by_owner(values: Iterable[SharedValue]) -> Iterator[tuple[_Owner, list[SharedValue]]]:
    """Runs of values with one owner (a stream gives each owner's keys together)."""
    for owner, run in itertools.groupby(values, key=lambda v: (v.scope, v.agent_id, v.user_id)):
        yield owner, list(run)


def _held(store: SessionStore, owner: _Owner) -> Mapping[str, Any]:
    """What `store` holds for an owner now (a scoped store refuses another agent's)."""
    scope, agent, user = owner
    if scope == "user" and user is not None:
        return store.user_state(user, agent)
    return store.agent_state(agent)


def _json(value: Any) -> bytes:
    # As checksums compare: sorted keys (PostgreSQL need not keep key order), and
    # exact values (True is not 1, 1.0 is not 1).
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _same(held: Mapping[str, Any], value: SharedValue) -> bool:
    return value.key in held and _json(held[value.key]) == _json(value.value)


def restore_shared_state(
    store: SessionStore, values: Iterable[SharedValue], *, replace: bool = False
) -> tuple[int, int]:
    """Write shared values into `store`, a page per transaction.

    A key the store already has keeps its value, unless `replace`.

    Returns:
        (written, kept): values written, and values left out because the store
        had the key already.

    Raises:
        AccessDenied: for a value of another agent, into a scoped store.
        InvalidInput: for a value a state delta could not have set.
    """
    kept = 0

    def missing() -> Iterator[SharedValue]:
        nonlocal kept
        for owner, run in _by_owner(values):
            held = {} if replace else _held(store, owner)
            for value in run:
                if value.key in held:
                    kept += 1
                else:
                    yield value

    written = write_shared_state(store, missing())
    return written, kept


def copy_shared_state(source: SessionStore, target: SessionStore) -> tuple[int, int]:
    """Make every shared value of `source` (of its agent, when scoped) the target's.

    An owner at a time: the values that differ from the target's (or that it
    lacks) are written (a transaction per page of them), then the owner's
    values are read back and compared with the source's. Keys only the target has are left
    as they are.

    Returns:
        (values, written): the source's values, all verified, and how many of
        them had to be written.

    Raises:
        StoreUnavailable: when a value does not read back exactly.
    """
    values = written = 0
    for owner, run in _by_owner(stream_shared_state(source)):
        held = _held(target, owner)
        changed = [value for value in run if not _same(held, value)]
        if changed:
            written += write_shared_state(target, changed)
            held = _held(target, owner)
        for value in run:
            if not _same(held, value):
                scope, agent, user = owner
                whose = f"user {user} of agent {agent}" if user is not None else f"agent {agent}"
                raise StoreUnavailable(f"{scope}:{value.key} of {whose} did not copy exactly")
        values += len(run)
    return values, written
