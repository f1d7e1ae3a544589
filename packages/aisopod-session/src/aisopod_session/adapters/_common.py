"""What the framework adapters share: the store handle, keys, lossless payloads.

A conversation's reads and appends are one call each on the store's engine
(`Engine.read_key_tail`, an append to a key): the key's session is found in
the same call, so a turn costs one hand-off to a worker thread (none, for
a small read of an SQLite file: `read_small`), and the sync and async
methods run the same engine code.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias, TypeVar
from urllib.parse import unquote

import attrs

from aisopod_session._async import AsyncSessionStore, in_worker, read_small, submit_append
from aisopod_session._compaction import (
    CompactionResult,
    KeepLastTurns,
    Strategy,
    Summarizer,
    TokenBudget,
    headings_summarizer,
)
from aisopod_session._context import BRANCH_PREFIX, COMPACTION_PREFIX
from aisopod_session._engine import AppendRequest
from aisopod_session._entries import NativeMessage, NewEntry, holds_nul
from aisopod_session._errors import (
    ConflictError,
    InvalidPayload,
    InvalidSessionKey,
    StoreUnavailable,
)
from aisopod_session._model import Entry
from aisopod_session._open import default_url, open_async_store
from aisopod_session._store import SessionStore, engine_of
from aisopod_session._tail import Decode
from aisopod_session.keys import DEFAULT_AGENT_ID, normalize_agent_id, request_key
from aisopod_shared import InvalidInput, Message, dumps

__all__ = [
    "POP_ATTEMPTS",
    "Build",
    "CompactionPolicy",
    "Decode",
    "KeyedConversation",
    "StoreHandle",
    "StoreLike",
    "Target",
    "conversation_id",
    "conversation_key",
    "is_missing",
    "keep",
    "native_calls",
    "native_texts",
    "restore",
    "searchable",
    "shown_text",
    "storable",
    "texts_of",
]

T = TypeVar("T")

StoreLike: TypeAlias = SessionStore | AsyncSessionStore | str | os.PathLike[str] | None
"""What an adapter's `store` argument may be: a store, a store URL or path, or `None`
for the default store (`$AISOPOD_SESSION_DB`, else `~/.aisopod/sessions.db`)."""

POP_ATTEMPTS: Final = 8
"""How often a pop is tried again when another writer moved the session meanwhile."""

_POP_PAGE: Final = 16
"""Entries per read when a pop looks back for the last item."""

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

    # --- operations every adapter makes ---------------------------------------------

    def clear_now(self, key: str) -> None:
        """Start a new session for the key (the old one stays, archived), if it has items."""
        session = self.sync.current(key)
        if session is not None and session.entry_count > 0:
            self.sync.reset(key)

    async def clear(self, key: str) -> None:
        """`clear_now`, without blocking the event loop."""
        await in_worker(self.async_store, lambda _: self.clear_now(key))

    def prepare(self, target: Target, build: Build) -> AppendRequest | None:
        """The append of the entries `build` makes, checked and serialized (`None` for
        none): first with every framework value kept as given, unchecked (one
        serialization per item, in the append's own); when that append is refused as
        a payload the store cannot keep, again with each value checked (`keep`), which
        encodes what the store cannot hold, or raises as a checked build does. Running
        it returns the last entry appended (`AppendRequest.only_last`)."""
        engine = engine_of(self.sync)
        entries = iter(build(False))
        first = next(entries, None)
        if first is None:
            return None
        try:
            return engine.prepare_append(
                "", itertools.chain((first,), entries), key=target, only_last=True
            )
        except InvalidPayload:
            return engine.prepare_append("", build(True), key=target, only_last=True)

    def add_now(self, target: Target, build: Build) -> tuple[Entry, ...]:
        """Append the entries `build` makes (see `prepare`) to the key's current session
        (made if it has none), in one write; return the last of them as stored (all
        an adapter needs: where it went, for `compact_after`)."""
        request = self.prepare(target, build)
        if request is None:
            return ()
        return engine_of(self.sync).run_append(request)

    async def add(self, target: Target, build: Build) -> tuple[Entry, ...]:
        """`add_now`, without blocking the event loop (concurrent adds share commits)."""
        request = self.prepare(target, build)
        if request is None:
            return ()
        return await submit_append(self.async_store, request)

    def read_now(
        self, target: Target, limit: int | None, decode: Decode[T], *, pairs: bool
    ) -> list[T]:
        """The last `limit` items (all for `None`) of the key's conversation, as the model
        sees it: a compaction's summary, then what it kept (`Engine.read_key_tail`)."""
        stored, agent = target
        return engine_of(self.sync).read_key_tail(agent, stored, limit, decode, keep_pairs=pairs)

    async def read(
        self, target: Target, limit: int | None, decode: Decode[T], *, pairs: bool
    ) -> list[T]:
        """`read_now`, without blocking the event loop: one call, on a worker thread or,
        for a small read of an SQLite file, on the loop's thread (`read_small`)."""
        stored, agent = target
        return await read_small(
            self.async_store,
            limit,
            lambda engine: engine.read_key_tail(agent, stored, limit, decode, keep_pairs=pairs),
        )

    def pop_now(self, key: str, decode: Decode[T]) -> T | None:
        """Move the leaf of the key's session back past its last item; return that item.

        Optimistic: the rewind expects the version the read saw, and a writer
        that got in between makes the pop read again.
        """
        conflict: ConflictError | None = None
        for _ in range(POP_ATTEMPTS):
            session = self.sync.current(key)
            if session is None:
                return None
            found = self._last_item(session.id, session.leaf_seq, decode)
            if found is None:
                return None
            entry, value = found
            try:
                self.sync.rewind(
                    session.id, entry.parent_seq or 0, expected_version=session.version
                )
            except ConflictError as err:
                conflict = err
                continue
            return value
        assert conflict is not None
        raise conflict

    async def pop(self, key: str, decode: Decode[T]) -> T | None:
        """`pop_now`, without blocking the event loop."""
        return await in_worker(self.async_store, lambda _: self.pop_now(key, decode))

    def _last_item(self, session_id: str, leaf: int, decode: Decode[T]) -> tuple[Entry, T] | None:
        """The last entry of the active path that is an item (not a compaction), and
        the item (the last of those it holds)."""
        if leaf <= 0:
            return None
        before: int | None = None
        while True:
            page = self.sync.path(session_id, last=_POP_PAGE, before=before)
            for entry in reversed(page.entries):
                values = decode(entry.type, entry.payload) if entry.type != "compaction" else None
                if values:
                    return entry, values[-1]
            if page.cursor is None:
                return None
            before = page.cursor


Target: TypeAlias = tuple[str, str]
"""A conversation's stored key and its agent (`Engine.key`)."""

Build: TypeAlias = Callable[[bool], "Iterable[Message | NewEntry | NativeMessage]"]
"""Makes the entries of an add; its argument is `checked`, passed on to `keep` and
`storable` (see `StoreHandle.prepare`). A generator does best: each entry is
prepared as it is made, and none is kept alive for the garbage collector to walk."""


def _positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput("must be a positive integer", field=attribute.name)


def _strategy(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, KeepLastTurns | TokenBudget):
        raise InvalidInput("must be KeepLastTurns or TokenBudget", field=attribute.name)


# --- conversation keys ------------------------------------------------------------------

# What storing a plain id in a key would change, besides letters that lowercasing
# alters: surrounding whitespace, and the escape character itself.
_ESCAPED = re.compile(r"%|^\s+|\s+$")


def conversation_key(session_id: object, agent_id: str) -> str:
    """The session key a framework's session id names.

    A session key (an id starting with `agent:`) is taken as it is (keys
    are case-insensitive, so it is lowercased). Any other id is a
    conversation of `agent_id`, and keeps its case and its whitespace as the
    frameworks' own sessions do (`User-42` and `user-42` are two
    conversations): the key is `agent:<agent_id>:` then the id, with each
    character that lowercasing would change, each one that does not print
    (newlines, tabs, ...), each surrounding space and each `%` written as
    `%` and the lowercase hex of its UTF-8 bytes
    (`User-42` -> `agent:main:%55ser-42`). `conversation_id` reverses it.

    Raises:
        InvalidSessionKey: for an id that is not a string, empty or blank, or a
            malformed `agent:` key.
    """
    if not isinstance(session_id, str) or not session_id.strip():
        raise InvalidSessionKey(session_id, "a session id must be a non-empty string")
    if session_id.strip()[:6].lower() == "agent:":
        return request_key(agent_id, session_id)
    escaped = _ESCAPED.sub(lambda m: _escape(m.group()), session_id)
    escaped = "".join(c if c.lower() == c and c.isprintable() else _escape(c) for c in escaped)
    return f"agent:{normalize_agent_id(agent_id)}:{escaped}"


def conversation_id(key: str) -> str:
    """The framework session id `conversation_key` made `key` from (for a key it did
    not make: the key itself)."""
    prefix, agent, rest = [*key.split(":", 2), "", ""][:3]
    if prefix != "agent" or not agent or not rest or not _ESCAPES.fullmatch(rest):
        return key
    return unquote(rest, errors="surrogatepass")


_ESCAPES = re.compile(r"(?:[^%]|%[0-9a-f]{2})*")


def _escape(text: str) -> str:
    return "".join(f"%{byte:02x}" for byte in text.encode("utf-8", "surrogatepass"))


@attrs.frozen
class CompactionPolicy:
    """When an adapter compacts its conversation, and what the compaction keeps.

    After an add, once `after_entries` entries or more lie on the active path
    since its latest compaction (or its start), the adapter compacts: the
    start of the context is summarised and `keep` (`KeepLastTurns`,
    `TokenBudget`) stays verbatim. Nothing is deleted; the framework then
    reads the summary and what was kept.
    """

    after_entries: int = attrs.field(validator=_positive)
    keep: Strategy = attrs.field(factory=lambda: KeepLastTurns(4), validator=_strategy)


class KeyedConversation:
    """What every adapter is: a framework's session id mapped to a session key
    (`conversation_key`), on a store handle (opened from a URL, or the caller's store).

    After `close()`, every method raises `StoreUnavailable`.
    """

    session_id: str

    def __init__(
        self,
        session_id: str,
        store: StoreLike,
        agent_id: str | None,
        *,
        compaction: CompactionPolicy | None = None,
        summarizer: Summarizer | None = None,
    ) -> None:
        if compaction is not None and not isinstance(compaction, CompactionPolicy):
            raise InvalidInput("must be a CompactionPolicy", field="compaction")
        if summarizer is not None and not callable(summarizer):
            raise InvalidInput("must be a callable", field="summarizer")
        self.compaction = compaction
        self.summarizer: Summarizer = summarizer or headings_summarizer
        if agent_id is not None and not isinstance(agent_id, str):
            raise InvalidInput(f"must be a string, got {type(agent_id).__name__}", field="agent_id")
        self._store = StoreHandle(store)
        try:
            agent = agent_id if agent_id is not None else self._store.sync.agent_id
            key = conversation_key(session_id, agent or DEFAULT_AGENT_ID)
            self._target: Target = engine_of(self._store.sync).key(key)
        except Exception:
            self._store.close()
            raise
        self._key = self._target[0]
        self._closed = False
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

    def open_store(self) -> StoreHandle:
        """The store handle, for a method about to use it.

        Raises:
            StoreUnavailable: once the conversation is closed.
        """
        if self._closed:
            raise StoreUnavailable(f"{type(self).__name__}({self.session_id!r}) is closed")
        return self._store

    def compact_after_now(self, appended: tuple[Entry, ...]) -> CompactionResult | None:
        """Compact the session `appended` went to, if the policy says so now."""
        policy = self.compaction
        if policy is None or not appended:
            return None
        last = appended[-1]
        engine = engine_of(self._store.sync)
        if engine.entries_since_compaction(last.session_id, last.seq) < policy.after_entries:
            return None
        return self._store.sync.compact(last.session_id, policy.keep, self.summarizer)

    async def compact_after(self, appended: tuple[Entry, ...]) -> CompactionResult | None:
        """`compact_after_now`, without blocking the event loop (the summariser may be a
        coroutine function)."""
        policy = self.compaction
        if policy is None or not appended:
            return None
        last = appended[-1]
        since = await in_worker(
            self._store.async_store,
            lambda engine: engine.entries_since_compaction(last.session_id, last.seq),
        )
        if since < policy.after_entries:
            return None
        return await self._store.async_store.compact(last.session_id, policy.keep, self.summarizer)

    def close(self) -> None:
        """Let go of the store, if it was given as a URL (or the default); every method
        raises `StoreUnavailable` afterwards. Closing twice does nothing more."""
        self._closed = True
        self._store.close()


# --- lossless payloads ------------------------------------------------------------------


def keep(value: Any, key: str, *, checked: bool = True) -> dict[str, Any]:
    """`{key: value}`, stored verbatim; `{key + "B64": ...}` for what the store cannot hold.

    The store refuses NUL characters, lone surrogates, NaN and infinities and
    integers beyond 64 bits. A value holding any of these is kept as the
    base64 of its JSON text (`json.dumps`, ASCII), which round-trips them all.
    Unless `checked` is false: then the value is kept as given, for an append
    that is made again checked if the store refuses it (`StoreHandle.prepare`).

    Raises:
        InvalidPayload: when the value is not JSON data at all.
    """
    if not checked or storable(value):
        return {key: value}
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise InvalidPayload(f"not JSON data: {err}", field=key) from err
    return {key + _ENCODED_SUFFIX: base64.b64encode(text.encode("ascii")).decode("ascii")}


def storable(value: Any, *, checked: bool = True) -> bool:
    """Whether the store keeps `value` verbatim (see `keep`); taken for granted when
    not `checked`."""
    if not checked:
        return True
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


# --- native messages, for the frameworks that did not write them -------------------------


def shown_text(kind: str, payload: Any) -> str:
    """The text the model is shown for an entry that is not a message but speaks to it
    (as `Context.for_model` shows it): a compaction's summary, an abandoned branch's,
    an extension's message. Empty for any other entry."""
    if kind == "compaction":
        summary = payload.get("summary")
        return COMPACTION_PREFIX + summary if isinstance(summary, str) and summary else ""
    if kind == "branch_summary":
        summary = payload.get("summary")
        return BRANCH_PREFIX + summary if isinstance(summary, str) and summary else ""
    if kind == "custom_message":
        return "\n".join(native_texts(payload.get("content")))
    return ""


def native_texts(content: object) -> list[str]:
    """The texts of a native message's content (a string, or `text` parts), in order."""
    return [text for text in texts_of(_text_parts(content)) if text]


def _text_parts(content: object) -> object:
    if not isinstance(content, list):
        return content
    return [part for part in content if isinstance(part, Mapping) and part.get("type") == "text"]


def native_calls(content: object) -> list[dict[str, Any]]:
    """The tool calls of a native message's content: `toolCall` parts with a string id
    and name, their arguments an object (empty when they are not one)."""
    if not isinstance(content, list):
        return []
    calls = []
    for part in content:
        if not isinstance(part, Mapping) or part.get("type") != "toolCall":
            continue
        call_id, name, arguments = part.get("id"), part.get("name"), part.get("arguments")
        if isinstance(call_id, str) and isinstance(name, str):
            args = arguments if isinstance(arguments, Mapping) else {}
            calls.append({"id": call_id, "name": name, "arguments": dict(args)})
    return calls
