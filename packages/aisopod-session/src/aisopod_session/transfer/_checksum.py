"""Content checksums of sessions: the same for a session and its exact copy.

A checksum is `count:sha256` over a session's identity, binding and every
entry, computed as the entries stream past, so checking a session never
holds more than a page of it. `copy_store` checksums each session as it
writes it and again as the target reads it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from aisopod_session._model import Origin
from aisopod_session.transfer._images import (
    EntryImage,
    SessionImage,
    entry_images,
    image_of,
    is_current,
)
from aisopod_shared import converter, to_micros

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = ["Checksum", "checksummed", "session_checksum"]


class Checksum:
    """A content checksum of a session: the same for a session and its exact copy."""

    def __init__(self, image: SessionImage) -> None:
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
            ]
        )
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
    """`count:sha256` over a session's identity, binding and every entry, streamed."""
    session = store.get(session_id)
    checksum = Checksum(image_of(session, current=is_current(store, session)))
    for entry in entry_images(store, session_id):
        checksum.entry(entry)
    return checksum.hexdigest()
