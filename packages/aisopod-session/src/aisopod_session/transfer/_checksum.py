"""Content checksums of sessions: the same for a session and its exact copy.

A checksum is `count:sha256` over a session's identity (with its `user_id`),
binding, its own state at the leaf and every entry, computed as the entries
stream past, so checking a session never holds more than a page of it.
`copy_store` checksums each session as it writes it and again as the target
reads it back.

The session's state is covered twice over: its changes are `state` entries,
and the state kept at its leaf (which a store rebuilds from them when it
writes a session whole) is added as it is, so a copy whose rebuilt state
differs from its source's does not check out. The `user:` and `agent:` state
a session sees is not covered: it belongs to no one session (every session
of the user, or of the agent, shares it, and it changes without them), so a
checksum that held it would change for all of a user's sessions whenever one
of them wrote a `user:` key. `copy_store` verifies the shared scopes it copies
value by value instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from aisopod_session._model import Origin
from aisopod_session.transfer._images import (
    EntryImage,
    SessionImage,
    entry_images,
    image_of,
    is_current,
    leaf_state,
)
from aisopod_shared import converter, to_micros

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["Checksum", "checksummed", "session_checksum"]


class Checksum:
    """A content checksum of a session: the same for a session and its exact copy.

    Made from the session's image and its own state at the leaf (as the store
    keeps it), then fed its entries in seq order.
    """

    def __init__(self, image: SessionImage, state: Mapping[str, Any]) -> None:
        self._hash = hashlib.sha256()
        self._add(
            [
                image.id,
                image.agent_id,
                image.key,
                image.status,
                image.title,
                to_micros(image.created_at),
                dict(image.metadata),
                converter.unstructure(image.origin, Origin),
                [image.fork_parent.session_id, image.fork_parent.seq]
                if image.fork_parent
                else None,
                image.leaf_seq,
                image.current,
                image.user_id,
            ]
        )
        self._add(dict(state))
        self.entries = 0

    def _add(self, value: Any) -> None:
        # Sorted keys: PostgreSQL's jsonb does not keep key order; values compare
        # exactly (integers stay integers, floats round-trip).
        self._hash.update(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        self._hash.update(b"\n")

    def entry(self, entry: EntryImage) -> None:
        """Add the next entry."""
        self.entries += 1
        self._add(
            [
                entry.seq,
                entry.id,
                entry.parent_seq,
                entry.type,
                dict(entry.payload),
                to_micros(entry.created_at),
                entry.idempotency_key,
            ]
        )

    def hexdigest(self) -> str:
        """`count:sha256` of the session and the entries added so far."""
        return f"{self.entries}:{self._hash.hexdigest()}"


def checksummed(entries: Iterable[EntryImage], checksum: Checksum) -> Iterator[EntryImage]:
    """Pass entries through, adding each to `checksum`."""
    for entry in entries:
        checksum.entry(entry)
        yield entry


def session_checksum(store: SessionStore, session_id: str) -> str:
    """`count:sha256` over a session's identity (with its `user_id`), binding, own
    state at the leaf and every entry, streamed.

    Equal for a session and its exact copy in any store; different when the
    sessions differ in any of these. The `user:` and `agent:` state the session
    sees is not covered (it is no one session's: see the module's docstring).
    """
    session = store.get(session_id)
    image = image_of(session, current=is_current(store, session))
    checksum = Checksum(image, leaf_state(store, session_id))
    for entry in entry_images(store, session_id):
        checksum.entry(entry)
    return checksum.hexdigest()
