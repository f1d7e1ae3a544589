"""What the framework adapters share: the store handle, keys, lossless payloads, reads.

Reading is written once, as a generator that asks for pages of the active
path and returns what it collected (`read_path`), and driven by a
synchronous or an asynchronous loop, so the two APIs cannot drift apart.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import weakref
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, Final, Generic, NamedTuple, TypeAlias, TypeVar

from aisopod_session._async import AsyncSessionStore
from aisopod_session._entries import NewEntry, holds_nul
from aisopod_session._errors import ConflictError, InvalidPayload
from aisopod_session._model import Entry, Page
from aisopod_session._open import default_url, open_async_store
from aisopod_session._store import SessionStore
from aisopod_session._toolpairs import call_ids, result_ids, safe_cuts
from aisopod_session.keys import DEFAULT_AGENT_ID, request_key
from aisopod_shared import InvalidInput, Message, dumps

__all__ = [
    "POP_ATTEMPTS",
    "Found",
    "PathRead",
    "StoreHandle",
    "StoreLike",
    "drive",
    "drive_async",
    "is_missing",
    "keep",
    "read_path",
    "resolve_key",
    "restore",
    "searchable",
    "storable",
    "texts_of",
]

T = TypeVar("T")

StoreLike: TypeAlias = SessionStore | AsyncSessionStore | str | os.PathLike[str] | None
"""What an adapter's `store` argument may be: a store, a store URL or path, or `None`
for the default store (`$AISOPOD_SESSION_DB`, else `~/.aisopod/sessions.db`)."""

POP_ATTEMPTS: Final = 8
"""How often a pop is tried again when another writer moved the session meanwhile."""

_PAGE: Final = 1000
"""Entries per page when reading a whole path."""

_SLACK: Final = 8
"""Extra entries read past a limit: room for a tool call just before the window."""

_ENCODED_SUFFIX: Final = "B64"


class _Shared:
    """The async stores adapters share: one per URL, opened here and counted by its
    users, and one per synchronous store handed in, which borrows it.

    Frameworks make a session or history object per conversation, often per
    request (`RunnableWithMessageHistory` calls its factory on every turn),
    and rarely close it. Opening a store each time would run the migration
    check and open connections (a pool, on PostgreSQL) each time; sharing
    one per URL makes those objects cheap, and the last `close()` closes it.
    Adapters on one synchronous store share one async store over it, so
    their appends share commits; it lives as long as one of them does (its
    threads stop when the last goes) and never closes the store it borrows.
    """

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """In a forked child: the parent's stores (and their connections and threads)
        are not ours."""
        self._lock = threading.Lock()
        self._stores: dict[str, tuple[AsyncSessionStore, int]] = {}
        # Keyed by the identity of the synchronous store: an async store holds
        # its store, so the id cannot be reused while its entry lives.
        self._over: weakref.WeakValueDictionary[int, AsyncSessionStore] = (
            weakref.WeakValueDictionary()
        )

    def acquire(self, url: str) -> AsyncSessionStore:
        with self._lock:
            store, users = self._stores.get(url) or (None, 0)
            if store is None:
                store = open_async_store(url)
                self._over[id(store.sync)] = store
            self._stores[url] = (store, users + 1)
            return store

    def release(self, url: str) -> None:
        with self._lock:
            store, users = self._stores[url]
            if users > 1:
                self._stores[url] = (store, users - 1)
                return
            del self._stores[url]
        store.close()

    def over(self, sync: SessionStore) -> AsyncSessionStore:
        """The async store over `sync`: one the adapters already use, else a new one
        that borrows it."""
        with self._lock:
            store = self._over.get(id(sync))
            if store is None:
                store = AsyncSessionStore.borrowing(sync)
                self._over[id(sync)] = store
            return store


_SHARED: Final = _Shared()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_SHARED.forget)


class StoreHandle:
    """The store an adapter works on, with the few operations adapters need.

    Coroutines go through an `AsyncSessionStore` (`async_store`: its worker
    threads, and its group committer for appends), synchronous methods
    through the synchronous store under it (`sync`). An async store handed
    in is used as it is; a synchronous one through the async store that
    every adapter on it shares, which borrows it. A store handed in belongs
    to the caller. A URL (or `None`, the default store) opens an async store
    shared by every handle on that URL in the process; `close()` lets go of
    it, and the last handle to let go closes it.
    """

    def __init__(self, store: StoreLike) -> None:
        self._given: SessionStore | AsyncSessionStore | None = None
        self._url: str | None = None
        if isinstance(store, AsyncSessionStore):
            self.async_store = store
            self._given = store
        elif isinstance(store, SessionStore):
            self.async_store = _SHARED.over(store)
            self._given = store
        elif store is None or isinstance(store, str | os.PathLike):
            url = default_url() if store is None else os.fspath(store)
            self.async_store = _SHARED.acquire(url)
            self._url = url
        else:
            raise InvalidInput(
                "must be a SessionStore, an AsyncSessionStore, a store URL or None",
                field="store",
            )
        self.sync: SessionStore = self.async_store.sync

    def __repr__(self) -> str:
        return repr(self.store)

    @property
    def store(self) -> SessionStore | AsyncSessionStore:
        """The store itself, as it was handed in (the synchronous one, for a URL)."""
        return self._given if self._given is not None else self.sync

    def close(self) -> None:
        """Let go of a store opened from a URL (closed with its last user); a store
        handed in is left open. Closing twice does nothing more."""
        url, self._url = self._url, None
        if url is not None:
            _SHARED.release(url)

    # --- operations both adapters make --------------------------------------------

    def clear_now(self, key: str) -> None:
        """Start a new session for the key (the old one stays, archived), if it has items."""
        session = self.sync.current(key)
        if session is not None and session.entry_count > 0:
            self.sync.reset(key)

    async def clear(self, key: str) -> None:
        """`clear_now`, without blocking the event loop."""
        session = await self.async_store.current(key)
        if session is not None and session.entry_count > 0:
            await self.async_store.reset(key)

    def add_now(self, key: str, entries: list[Message | NewEntry]) -> None:
        """Append entries to the key's current session (made if it has none), in one write."""
        if entries:
            self.sync.append(self.sync.get_or_create(key).id, entries)

    async def add(self, key: str, entries: list[Message | NewEntry]) -> None:
        """`add_now`, without blocking the event loop (concurrent adds share commits)."""
        if entries:
            session = await self.async_store.get_or_create(key)
            await self.async_store.append(session.id, entries)

    async def pop(self, key: str, decode: Callable[[Entry], T | None]) -> T | None:
        """Move the leaf of the key's session back past its last decodable entry; return it.

        Optimistic: the rewind expects the version the read saw, and a writer
        that got in between makes the pop read again.
        """
        conflict: ConflictError | None = None
        for _ in range(POP_ATTEMPTS):
            session = await self.async_store.current(key)
            if session is None or session.leaf_seq == 0:
                return None
            found = await drive_async(self, session.id, read_path(1, decode))
            if not found:
                return None
            last = found[-1]
            try:
                await self.async_store.rewind(
                    session.id, last.entry.parent_seq or 0, expected_version=session.version
                )
            except ConflictError as err:
                conflict = err
                continue
            return last.value
        assert conflict is not None
        raise conflict

    def read_now(
        self, key: str, limit: int | None, decode: Callable[[Entry], T | None], *, pairs: bool
    ) -> list[T]:
        """The values of the last `limit` decodable entries of the key's active path."""
        session = self.sync.current(key)
        if session is None or session.leaf_seq == 0 or limit == 0:
            return []
        found = drive(self, session.id, read_path(limit, decode, keep_pairs=pairs))
        return [item.value for item in found]

    async def read(
        self, key: str, limit: int | None, decode: Callable[[Entry], T | None], *, pairs: bool
    ) -> list[T]:
        """`read_now`, without blocking the event loop."""
        session = await self.async_store.current(key)
        if session is None or session.leaf_seq == 0 or limit == 0:
            return []
        found = await drive_async(self, session.id, read_path(limit, decode, keep_pairs=pairs))
        return [item.value for item in found]


def resolve_key(session_id: object, agent_id: str | None, store: StoreHandle) -> str:
    """The stored key a framework's session id names (`keys.request_key`).

    A session key (`agent:...`) is taken as it is (lowercased); a plain name
    becomes a key of `agent_id`, by default the agent the store handle is
    scoped to, else `main`.

    Raises:
        InvalidSessionKey: for a key that starts with `agent:` but is malformed.
    """
    if not isinstance(session_id, str):
        raise InvalidInput(f"must be a string, got {type(session_id).__name__}", field="session_id")
    if agent_id is not None and not isinstance(agent_id, str):
        raise InvalidInput(f"must be a string, got {type(agent_id).__name__}", field="agent_id")
    agent = agent_id if agent_id is not None else store.sync.agent_id or DEFAULT_AGENT_ID
    return request_key(agent, session_id)


# --- lossless payloads ------------------------------------------------------------------


class KeyedConversation:
    """What both adapters are: a framework's session id resolved to a session key,
    on a store handle (opened from a URL, or the caller's store)."""

    session_id: str

    def __init__(self, session_id: str, store: StoreLike, agent_id: str | None) -> None:
        self._store = StoreHandle(store)
        try:
            self._key = resolve_key(session_id, agent_id, self._store)
        except Exception:
            self._store.close()
            raise
        self.session_id = session_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._key!r}, {self._store!r})"

    @property
    def key(self) -> str:
        """The session key the conversation lives under (e.g. `agent:main:user-42`)."""
        return self._key

    @property
    def store(self) -> SessionStore | AsyncSessionStore:
        """The store the conversation lives in."""
        return self._store.store

    def close(self) -> None:
        """Let go of the store, if it was given as a URL (or the default)."""
        self._store.close()


def keep(value: Any, key: str) -> dict[str, Any]:
    """`{key: value}`, stored verbatim; `{key + "B64": ...}` for what the store cannot hold.

    The store refuses NUL characters, lone surrogates, NaN and infinities and
    integers beyond 64 bits. A value holding any of these is kept as the
    base64 of its JSON text (`json.dumps`, ASCII), which round-trips them all.

    Raises:
        InvalidPayload: when the value is not JSON data at all.
    """
    if storable(value):
        return {key: value}
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise InvalidPayload(f"not JSON data: {err}", field=key) from err
    return {key + _ENCODED_SUFFIX: base64.b64encode(text.encode("ascii")).decode("ascii")}


def storable(value: Any) -> bool:
    """Whether the store keeps `value` verbatim (see `keep`)."""
    try:
        return not holds_nul(dumps(value))
    except InvalidInput:
        return False


_MISSING: Final = object()


def restore(container: object, key: str) -> Any:
    """The value `keep(value, key)` put in `container` (`is_missing` when there is none)."""
    if not isinstance(container, Mapping):
        return _MISSING
    if key in container:
        return container[key]
    encoded = container.get(key + _ENCODED_SUFFIX)
    if not isinstance(encoded, str):
        return _MISSING
    try:
        return json.loads(base64.b64decode(encoded, validate=True))
    except ValueError:  # not what `keep` wrote: nothing to give back
        return _MISSING


def is_missing(value: object) -> bool:
    """Whether `restore` found nothing."""
    return value is _MISSING


# NUL and lone surrogates cannot be stored (see `keep`). Search text is for
# people: a replacement character will do.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def searchable(text: str) -> str:
    """`text` with what the store cannot hold replaced, for the indexed native message."""
    return _UNSTORABLE.sub("\ufffd", text)


def texts_of(content: object, fields: Iterable[str] = ("text",)) -> list[str]:
    """The strings of content that is a string or a list of strings and parts
    (the value of any of `fields` in a part), in order."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    found: list[str] = []
    for part in content:
        if isinstance(part, str):
            found.append(part)
        elif isinstance(part, Mapping):
            found.extend(part[f] for f in fields if isinstance(part.get(f), str))
    return found


# --- reading the active path ------------------------------------------------------------


class PathRead(NamedTuple):
    """A request for a page of the active path: `store.path(id, last=, before=)`."""

    last: int
    before: int | None


class Found(NamedTuple, Generic[T]):
    """An entry of the path and what it decoded to."""

    entry: Entry
    value: T


def read_path(
    limit: int | None, decode: Callable[[Entry], T | None], *, keep_pairs: bool = False
) -> Generator[PathRead, Page, list[Found[T]]]:
    """Collect the last `limit` (all, when `None` or negative) entries of the active path
    that `decode` accepts, in order; send it the pages it asks for.

    With `keep_pairs`, the window never starts between a tool call and its
    result: when the last `limit` would keep a result whose call comes
    earlier, the window is widened back to that call (and to the calls of
    any result that widening takes in), so it can hold more than `limit`.
    A result whose call is nowhere on the path is returned as it is.
    """
    if limit is not None and limit < 0:
        limit = None
    pages: list[list[Found[T]]] = []  # newest first
    found: list[Found[T]] = []  # oldest first: the pages, joined
    before: int | None = None
    at_root = False

    def window() -> int:
        if limit is None:
            return 0
        start = max(0, len(found) - limit)
        if not keep_pairs or start == 0:
            return start
        safe = safe_cuts([f.entry for f in found])
        while not safe[start]:
            start -= 1
        return start

    while not at_root:
        if limit is not None and len(found) >= limit:
            start = window()
            if not (keep_pairs and _calls_before(found, start)):
                break
        # Past the limit (looking for a tool call), each page doubles what was read.
        more = _PAGE if limit is None else max(limit - len(found), len(found), 1) + _SLACK
        page = yield PathRead(min(more, _PAGE), before)
        decoded = [(entry, decode(entry)) for entry in page.entries]
        pages.append([Found(entry, value) for entry, value in decoded if value is not None])
        if limit is not None:
            found = [f for chunk in reversed(pages) for f in chunk]
        before = page.cursor
        at_root = page.cursor is None
    if limit is None:
        found = [f for chunk in reversed(pages) for f in chunk]
    return found[window() :]


def _calls_before(found: list[Found[T]], start: int) -> bool:
    """Whether the window from `start` keeps a tool result whose call was not read yet."""
    wanted = {cid for f in found[start:] for cid in result_ids(f.entry)}
    if not wanted:
        return False
    made = {cid for f in found for cid in call_ids(f.entry)}
    return not wanted <= made


def drive(store: StoreHandle, session_id: str, reader: Generator[PathRead, Page, T]) -> T:
    """Run a path reader against the synchronous store."""
    try:
        request = next(reader)
        while True:
            page = store.sync.path(session_id, last=request.last, before=request.before)
            request = reader.send(page)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def drive_async(
    store: StoreHandle, session_id: str, reader: Generator[PathRead, Page, T]
) -> T:
    """Run a path reader against the async store."""
    try:
        request = next(reader)
        while True:
            page = await store.async_store.path(
                session_id, last=request.last, before=request.before
            )
            request = reader.send(page)
    except StopIteration as stop:
        result: T = stop.value
        return result
