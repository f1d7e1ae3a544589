"""Moving sessions whole: images of sessions and entries, streamed between stores.

A `SessionImage` and its `EntryImage`s are everything a session is, in a
form any store can write back exactly (ids, tree, times, payloads, version,
binding). `read_images` streams them out of a store, one session at a time
and its entries page by page; `SessionStore.write_session` writes one back in
a single transaction. Copying between stores, dump and restore, and
transcript imports are all built from these, so memory stays bounded however
large a store or a session is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs
import orjson

from aisopod_session._errors import SessionNotFound, StoreUnavailable
from aisopod_session._model import Entry, ForkRef, Origin, Session, SessionStatus
from aisopod_shared import converter, to_micros

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = [
    "CopyReport",
    "EntryImage",
    "SessionImage",
    "copy_store",
    "image_of",
    "read_images",
    "session_checksum",
]

PAGE = 1000
"""Entries read or written at a time: the bound on memory."""


@attrs.frozen
class SessionImage:
    """A session as it is, to be written into another store."""

    id: str
    agent_id: str
    key: str | None
    status: SessionStatus
    title: str | None
    created_at: datetime
    updated_at: datetime
    active_at: datetime
    metadata: Mapping[str, Any]
    origin: Origin
    fork_parent: ForkRef | None
    leaf_seq: int
    version: int
    current: bool
    """Whether the session is its key's current session."""


@attrs.frozen
class EntryImage:
    """An entry as it is: seq, id, tree, type, payload and time, verbatim."""

    seq: int
    id: str
    parent_seq: int | None
    type: str
    payload: Mapping[str, Any]
    created_at: datetime
    idempotency_key: str | None = None

    @classmethod
    def of(cls, entry: Entry) -> EntryImage:
        """The image of a stored entry."""
        return cls(
            entry.seq,
            entry.id,
            entry.parent_seq,
            entry.type,
            entry.payload,
            entry.created_at,
            entry.idempotency_key,
        )


def image_of(session: Session, *, current: bool) -> SessionImage:
    """The image of a stored session."""
    return SessionImage(
        id=session.id,
        agent_id=session.agent_id,
        key=session.key,
        status=session.status,
        title=session.title,
        created_at=session.created_at,
        updated_at=session.updated_at,
        active_at=session.active_at,
        metadata=session.metadata,
        origin=session.origin,
        fork_parent=session.fork_parent,
        leaf_seq=session.leaf_seq,
        version=session.version,
        current=current,
    )


def entry_images(store: SessionStore, session_id: str) -> Iterator[EntryImage]:
    """Every entry of a session, a page at a time."""
    after = 0
    while True:
        page = store.history(session_id, after=after, limit=PAGE)
        for entry in page.entries:
            yield EntryImage.of(entry)
        if page.cursor is None:
            return
        after = page.cursor


def read_images(
    store: SessionStore, session_ids: Iterable[str] | None = None
) -> Iterator[tuple[SessionImage, Iterator[EntryImage]]]:
    """Every session of a store (of its agent, when scoped; or those of
    `session_ids`) with a stream of its entries.

    Consume each entry stream before asking for the next session.
    """
    from aisopod_session._store import engine_of  # the store imports this module

    if session_ids is None:
        sessions = engine_of(store).stream_sessions()
    else:
        sessions = ((s, _is_current(store, s)) for s in map(store.get, session_ids))
    for session, current in sessions:
        yield image_of(session, current=current), entry_images(store, session.id)


def _is_current(store: SessionStore, session: Session) -> bool:
    bound = store.current(session.key) if session.key is not None else None
    return bound is not None and bound.id == session.id


class _Checksum:
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
        return f"{self.entries}:{self._hash.hexdigest()}"


def checksummed(
    image: SessionImage, entries: Iterable[EntryImage], checksum: _Checksum
) -> Iterator[EntryImage]:
    """Pass entries through, adding each to `checksum`."""
    for entry in entries:
        checksum.entry(entry)
        yield entry


def session_checksum(store: SessionStore, session_id: str) -> str:
    """`count:sha256` over a session's identity, binding and every entry, streamed."""
    session = store.get(session_id)
    checksum = _Checksum(image_of(session, current=_is_current(store, session)))
    for entry in entry_images(store, session_id):
        checksum.entry(entry)
    return checksum.hexdigest()


@attrs.frozen
class CopyReport:
    """What `copy_store` did."""

    sessions: int
    copied: int
    skipped: int
    """Sessions already in the target with the same checksum (a resumed copy)."""
    entries: int
    checksums: Mapping[str, str]
    """Session id -> the checksum both stores agree on."""


def copy_store(
    source: SessionStore,
    target: SessionStore,
    *,
    progress: Callable[[int, SessionImage], None] | None = None,
) -> CopyReport:
    """Copy every session, binding and entry of `source` into `target`.

    Streaming (memory is bounded by a page of entries), one transaction per
    session, and resumable: a session already in the target with the same
    checksum is skipped, one that differs (a copy interrupted before it
    committed cannot; a changed source can) is written again. Each copied
    session is verified by its entry count and content checksum.

    Raises:
        StoreUnavailable: when a copied session does not read back exactly.
    """
    copied = skipped = entries = 0
    from aisopod_session._store import engine_of  # the store imports this module

    checksums: dict[str, str] = {}
    for done, (image, stream) in enumerate(read_images(source), start=1):
        checksum = _Checksum(image)
        try:
            existing = session_checksum(target, image.id)
        except SessionNotFound:
            existing = None
        if existing is not None:
            for entry in stream:
                checksum.entry(entry)
            if checksum.hexdigest() == existing:
                skipped += 1
                checksums[image.id] = existing
                if progress is not None:
                    progress(done, image)
                continue
            stream = entry_images(source, image.id)
            checksum = _Checksum(image)
        engine_of(target).write_session(image, checksummed(image, stream, checksum), replace=True)
        expected = checksum.hexdigest()
        written = session_checksum(target, image.id)
        if written != expected:
            raise StoreUnavailable(
                f"session {image.id} did not copy exactly ({written} != {expected})"
            )
        checksums[image.id] = expected
        copied += 1
        entries += checksum.entries
        if progress is not None:
            progress(done, image)
    return CopyReport(copied + skipped, copied, skipped, entries, checksums)
