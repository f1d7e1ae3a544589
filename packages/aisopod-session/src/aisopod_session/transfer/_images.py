"""Images of sessions and entries: everything a session is, streamed between stores.

A `SessionImage` and its `EntryImage`s are everything a session is, in a
form any store can write back exactly (ids, tree, times, payloads, version,
binding). `read_images` streams them out of a store, one session at a time
and its entries page by page; `write_image` writes one back in a single
transaction. Copying between stores, dump and restore, and transcript
imports are all built from these, so memory stays bounded however large a
store or a session is.

A `SharedValue` is one `user:` or `agent:` state value, the state shared
by sessions rather than held in their trees; `stream_shared_state` and
`write_shared_state` move them.

The store imports the image types, so this module imports the store only
for type checking. Every session this package writes goes through
`write_image`, and every listing of a store's sessions through
`stream_sessions`; every shared value goes out through `stream_shared_state`
and in through `write_shared_state`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import attrs

from aisopod_session._errors import SessionExists, SessionNotFound
from aisopod_session._model import Entry, ForkRef, Origin, Session, SessionStatus

if TYPE_CHECKING:
    from aisopod_session._store import SessionStore

__all__ = [
    "PAGE",
    "EntryCount",
    "EntryImage",
    "Progress",
    "SessionImage",
    "SharedValue",
    "counted",
    "entry_images",
    "entry_pages",
    "image_of",
    "is_current",
    "leaf_state",
    "read_images",
    "stream_sessions",
    "stream_shared_state",
    "write_image",
    "write_unless_there",
    "write_shared_state",
]

PAGE: Final = 1000
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
    user_id: str | None = None


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


@attrs.frozen
class SharedValue:
    """One `user:` or `agent:` state value (its key without the prefix), as dumps,
    restores and copies move it."""

    scope: str
    """`user` or `agent`."""
    agent_id: str
    user_id: str | None
    """The user of a `user:` value; `None` for an `agent:` one."""
    key: str
    value: Any


Progress: TypeAlias = Callable[[int, SessionImage], None]
"""Told, after each session, how many are done and which one was last."""

EntryCount: TypeAlias = Callable[[int], None]
"""Told, as a session's entries stream by, how many more went through: progress
counted in entries, so one long session moves a bar too."""

_T = TypeVar("_T")
_COUNT_EVERY: Final = 256
"""Entries between two calls of an `EntryCount` (and one for the rest of a session)."""


def counted(items: Iterable[_T], on_entries: EntryCount | None) -> Iterator[_T]:
    """`items`, passed through, reported to `on_entries` a few hundred at a time."""
    if on_entries is None:
        yield from items
        return
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending == _COUNT_EVERY:
            on_entries(pending)
            pending = 0
    if pending:
        on_entries(pending)


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
        user_id=session.user_id,
    )


def is_current(store: SessionStore, session: Session) -> bool:
    """Whether `session` is its key's current session in `store`."""
    bound = store.current(session.key) if session.key is not None else None
    return bound is not None and bound.id == session.id


def entry_pages(store: SessionStore, session_id: str) -> Iterator[Sequence[Entry]]:
    """Every entry of a session in seq order, one page of `PAGE` entries at a time."""
    after = 0
    while True:
        page = store.history(session_id, after=after, limit=PAGE)
        yield page.entries
        if page.cursor is None:
            return
        after = page.cursor


def entry_images(store: SessionStore, session_id: str) -> Iterator[EntryImage]:
    """Every entry of a session, a page at a time."""
    for page in entry_pages(store, session_id):
        for entry in page:
            yield EntryImage.of(entry)


def read_images(
    store: SessionStore, session_ids: Iterable[str] | None = None
) -> Iterator[tuple[SessionImage, Iterator[EntryImage]]]:
    """Every session of a store (of its agent, when scoped; or those of
    `session_ids`) with a stream of its entries.

    Consume each entry stream before asking for the next session.
    """
    if session_ids is None:
        sessions = stream_sessions(store)
    else:
        sessions = ((s, is_current(store, s)) for s in map(store.get, session_ids))
    for session, current in sessions:
        yield image_of(session, current=current), entry_images(store, session.id)


def stream_sessions(store: SessionStore) -> Iterator[tuple[Session, bool]]:
    """Every session of `store` (of its agent, when scoped), with whether it is its
    key's current session: the one place this package lists a store's sessions."""
    from aisopod_session._store import engine_of  # the store imports this module

    return engine_of(store).stream_sessions()


def write_image(
    store: SessionStore,
    image: SessionImage,
    entries: Iterable[EntryImage],
    *,
    replace: bool = False,
) -> Session:
    """Write a session and its entries into `store` in one transaction: the one
    place this package writes a session (see `Engine.write_session`)."""
    from aisopod_session._store import engine_of  # the store imports this module

    return engine_of(store).write_session(image, entries, replace=replace)


def write_unless_there(
    store: SessionStore, image: SessionImage, entries: Iterable[EntryImage]
) -> Session | None:
    """Write a session unless the store holds one with its id; None when it did
    (then nothing is written), even when another writer put it there a moment
    ago: two imports of the same data end as one after the other would."""
    from aisopod_session._store import engine_of  # the store imports this module

    if _stored(store, image.id) is not None:
        return None
    try:
        return engine_of(store).write_session(image, entries)
    except SessionExists:
        # The other writer committed first: the store refused the id.
        return None


def _stored(store: SessionStore, session_id: str) -> Session | None:
    try:
        return store.get(session_id)
    except SessionNotFound:
        return None


def leaf_state(store: SessionStore, session_id: str) -> Mapping[str, Any]:
    """A session's own state at its leaf (no `user:` or `agent:` keys)."""
    from aisopod_session._store import engine_of  # the store imports this module

    return engine_of(store).leaf_state(session_id)


def stream_shared_state(store: SessionStore) -> Iterator[SharedValue]:
    """Every `user:` and `agent:` value of `store` (of its agent, when scoped), each
    owner's keys together (`user:` values first): the one place this package reads
    shared state."""
    from aisopod_session._store import engine_of  # the store imports this module

    return engine_of(store).stream_shared_state()


def write_shared_state(store: SessionStore, values: Iterable[SharedValue]) -> int:
    """Set `user:` and `agent:` values in `store`, a page per transaction; how many
    were written: the one place this package writes shared state (see
    `Engine.write_shared_state`)."""
    from aisopod_session._store import engine_of  # the store imports this module

    return engine_of(store).write_shared_state(values)
