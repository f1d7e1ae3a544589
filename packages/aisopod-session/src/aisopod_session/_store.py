"""The session store: the synchronous API, written once over any backend."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar

import attrs

from aisopod_session._branching import Branch, path_length, tree_leaves
from aisopod_session._compaction import (
    CompactionPlan,
    CompactionResult,
    Strategy,
    Summarizer,
    check_still_valid,
    compaction_payload,
    headings_summarizer,
)
from aisopod_session._compaction import plan as plan_compaction
from aisopod_session._config import RetentionPolicy, SessionConfig
from aisopod_session._context import Context, build_context
from aisopod_session._entries import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    NewEntry,
    PreparedEntry,
    Stamp,
    prepare,
)
from aisopod_session._errors import (
    AccessDenied,
    ConflictError,
    DuplicateEntryId,
    InvalidPayload,
    SessionExists,
    SessionNotFound,
    StoreBusy,
)
from aisopod_session._ids import new_entry_suffix, new_session_id
from aisopod_session._model import (
    SESSION_STATUSES,
    Entry,
    ForkRef,
    Origin,
    Page,
    Session,
    SessionPage,
    SessionStatus,
)
from aisopod_session._paths import find_on_path, path_ranges, path_tail
from aisopod_session._resolver import Inbound, Resolution, decide, origin_of, route
from aisopod_session._retention import MaintenanceReport, plan_removals, removal
from aisopod_session._search import SearchHit, SearchPage, parse_query
from aisopod_session._validate import check_int, check_text, merge_patch, session_key
from aisopod_session.backends._sql import (
    AppendTarget,
    Backend,
    ListFilter,
    SearchFilter,
    SessionRecord,
    SqlTx,
)
from aisopod_session.keys import normalize_agent_id
from aisopod_session.transfer._images import PAGE, EntryImage, SessionImage
from aisopod_shared import (
    Clock,
    InvalidInput,
    Message,
    SystemClock,
    TokenUsage,
    dumps,
    from_micros,
    logger,
    now_micros,
    to_micros,
)

__all__ = ["UNSET", "AgentStats", "AppendRequest", "SessionStore"]

T = TypeVar("T")

MAX_PAGE: Final = 10_000
"""The most entries or sessions one page may hold: every read is bounded."""

MAX_SEARCH_PAGE: Final = 100
MAX_SEARCH_DEPTH: Final = 10_000
"""How far search results can be paged: ranking is by relevance, and nobody reads
the ten-thousandth best match."""

_ID_ATTEMPTS: Final = 3
_BIND_ATTEMPTS: Final = 8


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()
"""Marks a `patch` argument that was not given (as opposed to `None`, which clears)."""


class AppendRequest(NamedTuple):
    """One call to `append`, prepared and ready to run in a transaction."""

    session_id: str
    entries: tuple[PreparedEntry, ...]
    idempotency_key: str | None
    expected_version: int | None
    now: int


@attrs.frozen
class AgentStats:
    """One agent's share of a store."""

    agent_id: str
    sessions: int
    active: int
    entries: int
    messages: int
    tokens: int
    cost: float
    size_bytes: int


class _GeneratedIdClash(Exception):
    """Two generated entry ids met; the append is retried with fresh ids."""


class SessionStore:
    """Sessions, their bindings to keys, and their entries, in one database.

    Open one with `open_store(url)`. Every method is one transaction; reads
    are bounded (keyset pages, never OFFSET, never a whole history). A store
    handle is safe to share between threads. `for_agent(agent_id)` returns a
    handle that sees and touches only that agent's sessions.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Clock | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        agent_id: str | None = None,
    ) -> None:
        self._backend = backend
        self._clock: Clock = clock or SystemClock()
        self._max_payload_bytes = check_int(max_payload_bytes, "max_payload_bytes", minimum=1)
        self._agent_id = agent_id

    def __repr__(self) -> str:
        scope = f", agent={self._agent_id!r}" if self._agent_id else ""
        return f"SessionStore({self._backend.url!r}{scope})"

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The store's URL, without any password."""
        return self._backend.url

    @property
    def backend(self) -> Backend:
        """The database behind the store."""
        return self._backend

    @property
    def clock(self) -> Clock:
        """The clock the store stamps writes with."""
        return self._clock

    @property
    def agent_id(self) -> str | None:
        """The agent this handle is scoped to, or `None` for an unscoped handle."""
        return self._agent_id

    def for_agent(self, agent_id: str) -> SessionStore:
        """A handle on the same database that sees and touches only `agent_id`'s sessions."""
        agent = normalize_agent_id(check_text(agent_id, "agent_id", max_length=64))
        if self._agent_id is not None and agent != self._agent_id:
            raise AccessDenied(self._agent_id, f"agent:{agent}")
        return type(self)(
            self._backend,
            clock=self._clock,
            max_payload_bytes=self._max_payload_bytes,
            agent_id=agent,
        )

    def close(self) -> None:
        """Close the database connections (of every handle on this database)."""
        self._backend.close()

    def check_integrity(self) -> list[str]:
        """Ask the database engine whether its files are consistent; the problems, if any."""
        return self._backend.check_integrity()

    def stats(self) -> list[AgentStats]:
        """Sessions, entries, tokens, cost and size, per agent (one agent when scoped)."""
        with self._backend.read() as tx:
            rows = tx.agent_stats(self._agent_id)
        return [
            AgentStats(
                agent_id=row[0],
                sessions=int(row[1]),
                active=int(row[2] or 0),
                entries=int(row[3] or 0),
                messages=int(row[4] or 0),
                tokens=int(row[5] or 0),
                cost=float(row[6] or 0.0),
                size_bytes=int(row[7] or 0),
            )
            for row in rows
        ]

    # --- sessions -------------------------------------------------------------------

    def get_or_create(
        self,
        key: str,
        *,
        origin: Origin | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """The key's current session, made (and bound to the key) if it has none.

        Atomic: callers racing on a new key, in any number of threads or
        processes, all get the one session that won. `origin`, `title` and
        `metadata` only apply to a session this call makes.
        """
        stored, agent = self._key(key)
        with self._backend.read() as tx:
            sid = tx.binding(agent, stored)
            if sid is not None:
                return self._by_sid(tx, sid).session
        new = self._new_session(agent, stored, origin=origin, title=title, metadata=metadata)
        with self._backend.write() as tx:
            found = self._bind_new(tx, agent, stored, new)
            return found if found is not None else new

    def _bind_new(self, tx: SqlTx, agent: str, key: str, new: Session) -> Session | None:
        """Make `new` the key's session unless it has one: `None` when `new` was bound,
        else the session that holds the key (and `new` is not kept).

        On a server database another process may bind the key between our look
        and our insert, and a third may delete that session again before we
        look once more; each turn of the loop settles one such race.
        """
        new_sid: int | None = None
        for _ in range(_BIND_ATTEMPTS):
            sid = tx.binding(agent, key, lock=True)
            if sid is not None:
                if new_sid is not None:
                    tx.delete_session(new_sid)
                return self._by_sid(tx, sid).session
            if new_sid is None:
                new_sid = tx.insert_session(new)
            if tx.bind_if_unbound(agent, key, new_sid, to_micros(new.created_at)):
                return None
        raise StoreBusy(f"could not bind {key!r}: other writers kept changing it")

    def get(self, session_id: str) -> Session:
        """The session with this id.

        Raises:
            SessionNotFound: when there is none.
            AccessDenied: when a scoped handle asks for another agent's session.
        """
        with self._backend.read() as tx:
            return self._record(tx, session_id).session

    def current(self, key: str) -> Session | None:
        """The key's current session, or `None` when the key has never had one."""
        stored, agent = self._key(key)
        with self._backend.read() as tx:
            sid = tx.binding(agent, stored)
            return self._by_sid(tx, sid).session if sid is not None else None

    def list(
        self,
        *,
        agent_id: str | None = None,
        status: SessionStatus | None = None,
        channel: str | None = None,
        key: str | None = None,
        key_prefix: str | None = None,
        updated_after: Any = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """Sessions, most recently updated first, one bounded page at a time.

        Filters combine; `key` gives every session a key ever had (current and
        archived). Pass the page's `cursor` back to get the next page.
        """
        limit = check_int(limit, "limit", minimum=1, maximum=MAX_PAGE)
        agent = self._scope_agent(agent_id)
        if status is not None and status not in SESSION_STATUSES:
            raise InvalidInput(f"must be one of {', '.join(SESSION_STATUSES)}", field="status")
        where = ListFilter(
            agent_id=agent,
            status=status,
            channel=check_text(channel, "channel").strip().lower() if channel is not None else None,
            key=self._key(key)[0] if key is not None else None,
            key_prefix=check_text(key_prefix, "key_prefix") if key_prefix is not None else None,
            updated_after=to_micros(updated_after) if updated_after is not None else None,
        )
        after = _decode_cursor(cursor) if cursor is not None else None
        with self._backend.read() as tx:
            records = tx.list_sessions(where, limit=limit + 1, after=after)
        page = records[:limit]
        next_cursor = None
        if len(records) > limit:
            last = page[-1]
            next_cursor = f"{to_micros(last.session.updated_at)}.{last.sid}"
        return SessionPage(tuple(r.session for r in page), next_cursor)

    def patch(
        self,
        session_id: str,
        *,
        title: str | _Unset | None = UNSET,
        metadata: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> Session:
        """Change a session's title and merge-patch its metadata (RFC 7396: `None` removes).

        Raises:
            ConflictError: when `expected_version` is given and is not the
                session's version; nothing is written.
        """
        if expected_version is not None:
            check_int(expected_version, "expected_version")
        fields: dict[str, Any] = {}
        if not isinstance(title, _Unset):
            fields["title"] = check_text(title, "title") if title is not None else None
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInput("must be a JSON object", field="metadata")
        if metadata is not None:
            dumps(dict(metadata), field="metadata")  # refuse what JSON cannot carry, early
        now = to_micros(self._clock.now())
        with self._backend.write() as tx:
            record = self._record(tx, session_id, lock=True)
            _check_version(record.session, expected_version)
            if metadata is not None:
                fields["metadata"] = merge_patch(record.session.metadata, metadata)
            tx.update_session(record.sid, now=now, **fields)
            return self._by_sid(tx, record.sid).session

    def reset(self, key: str, *, origin: Origin | None = None) -> Session:
        """Start a new current session for the key; the old one stays readable, archived.

        The new session keeps the old one's origin unless `origin` is given.
        """
        stored, agent = self._key(key)
        now = self._clock.now()
        with self._backend.write() as tx:
            return self._reset_in(tx, agent, stored, origin=origin, now=now)

    def delete(self, session_id: str) -> bool:
        """Delete a session and its entries (and its key binding); whether it existed."""
        check_text(session_id, "session_id", max_length=256)
        with self._backend.write() as tx:
            found = tx.session_by_id(session_id)
            if found is None:
                return False
            self._check_scope(found.session)
            return self._delete_in(tx, found.sid)

    # --- entries --------------------------------------------------------------------

    def append(
        self,
        session_id: str,
        entries: Message | NewEntry | Iterable[Message | NewEntry],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> tuple[Entry, ...]:
        """Append entries to a session, in one transaction; return them with their seqs.

        Entries, counters, usage totals, `updated_at` and `version` move
        together or not at all. The first new entry hangs from the session's
        leaf, each next one from the one before. Retrying with the same
        `idempotency_key` returns the first call's entries and adds nothing.

        Raises:
            SessionNotFound: when there is no such session.
            ConflictError: when `expected_version` is not the session's version.
            InvalidPayload, PayloadTooLarge: for content the store cannot keep.
        """
        request = self.prepare_append(
            session_id, entries, idempotency_key=idempotency_key, expected_version=expected_version
        )
        return self.run_append(request)

    def run_append(self, request: AppendRequest) -> tuple[Entry, ...]:
        """Run a prepared append in a transaction of its own."""
        # Without a key to look up first, the append is one `append_entries` call.
        single = request.idempotency_key is None and bool(request.entries)
        return self._write_appending(
            lambda tx, fresh: self.append_in(tx, request, fresh_ids=fresh),
            self._backend.write_append if single else self._backend.write,
        )

    def _write_appending(
        self,
        work: Callable[[SqlTx, bool], T],
        begin: Callable[[], AbstractContextManager[SqlTx]] | None = None,
    ) -> T:
        """Run `work` in a write transaction (from `begin`, by default the backend's
        `write`), again with fresh entry ids should two generated ids ever clash
        (`work` gets whether to make fresh ones)."""
        for attempt in range(_ID_ATTEMPTS):
            try:
                with (begin or self._backend.write)() as tx:
                    return work(tx, attempt > 0)
            except _GeneratedIdClash:
                continue
        raise DuplicateEntryId("could not generate unique entry ids", field="id")

    def prepare_append(
        self,
        session_id: str,
        entries: Message | NewEntry | Iterable[Message | NewEntry],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
    ) -> AppendRequest:
        """Check and serialize an append before any transaction starts."""
        check_text(session_id, "session_id", max_length=256)
        if idempotency_key is not None:
            check_text(idempotency_key, "idempotency_key", max_length=256)
        if expected_version is not None:
            check_int(expected_version, "expected_version")
        stamp = Stamp.at(now_micros(self._clock))
        limit = self._max_payload_bytes
        given: object = entries
        prepared: tuple[PreparedEntry, ...]
        if isinstance(given, Message | NewEntry):
            # One entry, the commonest append: no generator, nothing to compare ids with.
            prepared = (prepare(given, stamp, max_payload_bytes=limit),)
        elif isinstance(given, Iterable) and not isinstance(given, str | bytes | Mapping):
            prepared = tuple(prepare(item, stamp, max_payload_bytes=limit) for item in given)
            explicit = [p.id for p in prepared if p.id is not None]
            if len(explicit) != len(set(explicit)):
                raise DuplicateEntryId("two entries in one append share an id", field="id")
        else:
            raise InvalidPayload("append takes a Message, a NewEntry or a list of them")
        return AppendRequest(session_id, prepared, idempotency_key, expected_version, stamp.micros)

    def append_in(
        self, tx: SqlTx, request: AppendRequest, *, fresh_ids: bool = False
    ) -> tuple[Entry, ...]:
        """Run a prepared append inside the caller's write transaction."""
        session_id = request.session_id
        if request.idempotency_key is not None:
            # Lock the session before looking: a retry racing the call it repeats
            # then waits for that call to commit, and finds its entries.
            if tx.append_target(session_id) is None:
                raise SessionNotFound(session_id)
            done = tx.entries_by_idempotency_key(session_id, request.idempotency_key)
            if done:
                self._check_scope(self._record(tx, session_id).session)
                return tuple(done)
        entries = request.entries
        if not entries:
            target = tx.append_target(session_id)
            if target is None:
                raise SessionNotFound(session_id)
            self._check_append(target, request)
            return ()
        try:
            appended = tx.append_entries(
                session_id,
                entries,
                suffixes=[new_entry_suffix() for _ in entries],
                agent_id=self._agent_id,
                expected_version=request.expected_version,
                idempotency_key=request.idempotency_key,
                now=request.now,
            )
        except DuplicateEntryId:
            if all(p.id is not None for p in entries) or fresh_ids:
                raise
            raise _GeneratedIdClash from None
        if appended is None:
            raise SessionNotFound(session_id)
        # Raising from here rolls back whatever was appended, with the transaction;
        # an append sent as one statement wrote nothing when these checks fail.
        self._check_append(appended.target, request)
        first = appended.target.entry_count + 1
        ids, parents = appended.ids, appended.parents
        created = from_micros(request.now)
        key = request.idempotency_key
        # Positional, in Entry's field order: a third cheaper than keywords.
        return tuple(
            Entry(
                session_id,
                first + offset,
                ids[offset],
                parents[offset],
                entry.type,
                entry.role,
                entry.payload_data,
                entry.text,
                entry.usage,
                created,
                key,
                entry.tokens,
            )
            for offset, entry in enumerate(entries)
        )

    def _check_append(self, target: AppendTarget, request: AppendRequest) -> None:
        if self._agent_id is not None and target.agent_id != self._agent_id:
            raise AccessDenied(self._agent_id, request.session_id)
        if request.expected_version is not None and request.expected_version != target.version:
            raise ConflictError(request.session_id, request.expected_version, target.version)

    def history(
        self,
        session_id: str,
        *,
        last: int | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> Page:
        """A bounded page of a session's log, in chronological (seq) order.

        - `history(id, last=50)`: the last 50 entries.
        - `history(id, before=page.cursor, limit=50)`: the 50 before a seq.
        - `history(id, after=0, limit=500)`: forward from a seq (export, sync).

        With none of `last`, `before`, `after`: the last `limit` (default 50).
        The cost of a page does not depend on the length of the session.
        """
        if last is not None and (before is not None or after is not None or limit is not None):
            raise InvalidInput(
                "last= stands alone; page with before= or after= and limit=", field="last"
            )
        if before is not None and after is not None:
            raise InvalidInput("pass before= or after=, not both", field="before")
        if last is not None:
            limit = check_int(last, "last", minimum=1, maximum=MAX_PAGE)
        limit = check_int(limit if limit is not None else 50, "limit", minimum=1, maximum=MAX_PAGE)
        if before is not None:
            check_int(before, "before")
        if after is not None:
            check_int(after, "after")
        check_text(session_id, "session_id", max_length=256)
        with self._backend.read_statement() as tx:
            page, more = tx.entries_page(
                session_id, self._agent_id, before=before, after=after, limit=limit
            )
        if not page:
            with self._backend.read() as tx:
                self._sid(tx, session_id)  # no such session, or another agent's, or empty
        if not more:
            return Page(tuple(page), None)
        return Page(tuple(page), page[-1].seq if after is not None else page[0].seq)

    def entry_ids(self, session_id: str, seqs: Iterable[int]) -> dict[int, str]:
        """The ids of a session's entries with these seqs (missing seqs are left out)."""
        wanted = [check_int(seq, "seq", minimum=1) for seq in seqs]
        if len(wanted) > MAX_PAGE:
            raise InvalidInput(f"at most {MAX_PAGE} seqs at a time", field="seqs")
        with self._backend.read() as tx:
            record = self._record(tx, session_id)
            return tx.entry_ids(record.sid, wanted)

    # --- the active path and the context --------------------------------------------

    def path(self, session_id: str, *, last: int = 50, before: int | None = None) -> Page:
        """The last entries of the active branch (root to leaf), chronological.

        Unlike `history`, which reads the whole log, this follows the tree:
        entries of abandoned branches are not on it. Pass `before=page.cursor`
        for the entries before a page. The cost does not depend on the
        length of the session.
        """
        last = check_int(last, "last", minimum=1, maximum=MAX_PAGE)
        with self._backend.read() as tx:
            record = self._record(tx, session_id)
            if before is None:
                leaf = record.session.leaf_seq
            else:
                check_int(before, "before", minimum=1)
                leaf = tx.parent_of(record.sid, before) or 0
            ranges = path_tail(tx, record.sid, leaf, last + 1) if leaf > 0 else []
            entries = [
                entry
                for start, end in ranges
                for entry in tx.entries_between(record.sid, record.session.id, start, end)
            ]
        page = entries[-last:]
        return Page(tuple(page), page[0].seq if len(entries) > last else None)

    def context(self, session_id: str, *, max_tokens: int | None = None) -> Context:
        """The messages for the model, from the active branch, compaction applied.

        With `max_tokens`, older entries are left out to fit (never the system
        prompt or the compaction summary, never a tool result without its call).
        """
        if max_tokens is not None:
            check_int(max_tokens, "max_tokens", minimum=1)
        with self._backend.read() as tx:
            record = self._record(tx, session_id)
            return build_context(
                tx, record.sid, record.session.id, record.session.leaf_seq, max_tokens=max_tokens
            )

    # --- compaction -----------------------------------------------------------------

    def compact(
        self,
        session_id: str,
        strategy: Strategy,
        summarizer: Summarizer = headings_summarizer,
    ) -> CompactionResult:
        """Summarise the start of the context and append a `compaction` entry.

        Nothing is deleted: the context starts with the summary, the history
        keeps every entry, and `undo_compaction` moves the leaf back. A no-op
        (no entry, counters unchanged) when nothing would be dropped. The
        summariser runs outside any transaction; an async one needs the async
        store.

        Raises:
            ConflictError: when the kept entries left the active path while the
                summariser ran (a rewind); nothing was written.
        """
        plan = self.plan_compaction(session_id, strategy)
        if plan is None:
            return CompactionResult(self.get(session_id), None, None, 0, 0)
        return self.commit_compaction(plan, _summary_now(summarizer(plan.dropped)))

    def plan_compaction(self, session_id: str, strategy: Strategy) -> CompactionPlan | None:
        """Decide what `compact` would summarise (a read transaction); `None` for nothing."""
        with self._backend.read() as tx:
            record = self._record(tx, session_id)
            return plan_compaction(tx, record.sid, record.session, strategy)

    def commit_compaction(self, plan: CompactionPlan, summary: str) -> CompactionResult:
        """Append the compaction entry of `plan` with `summary` (a write transaction)."""
        entry = NewEntry("compaction", compaction_payload(plan, summary))
        request = self.prepare_append(plan.session_id, entry)

        def work(tx: SqlTx, fresh: bool) -> CompactionResult:
            record = self._record(tx, plan.session_id, lock=True)
            check_still_valid(tx, record.sid, record.session, plan)
            appended = self.append_in(tx, request, fresh_ids=fresh)
            session = self._by_sid(tx, record.sid).session
            return CompactionResult(
                session, appended[0], plan.first_kept.seq, len(plan.dropped), plan.tokens_before
            )

        return self._write_appending(work)

    def undo_compaction(self, session_id: str) -> Session:
        """Move the leaf back to just before the latest compaction on the active branch.

        Raises:
            InvalidInput: when the active branch has no compaction.
        """
        with self._backend.read() as tx:
            record = self._record(tx, session_id)
            leaf = record.session.leaf_seq
            seq = find_on_path(tx, record.sid, leaf, tx.compactions_before(record.sid, leaf, 16))
            parent = tx.parent_of(record.sid, seq) if seq is not None else None
        if seq is None:
            raise InvalidInput("the active branch has no compaction", field="session_id")
        return self.rewind(session_id, parent or 0)

    # --- branches -------------------------------------------------------------------

    def rewind(
        self,
        session_id: str,
        to_seq: int,
        *,
        summary: str | None = None,
        expected_version: int | None = None,
    ) -> Session:
        """Move the active leaf to entry `to_seq` (0: before the first entry).

        Nothing is deleted; the next append starts a new branch from there and
        the old branch stays listable. With `summary`, a `branch_summary` entry
        recording what the abandoned branch did is appended at the new leaf.
        """
        check_int(to_seq, "to_seq")
        if expected_version is not None:
            check_int(expected_version, "expected_version")
        if summary is not None:
            check_text(summary, "summary", max_length=1_000_000)

        def work(tx: SqlTx, fresh: bool) -> Session:
            record = self._record(tx, session_id, lock=True)
            session = record.session
            _check_version(session, expected_version)
            if to_seq > session.entry_count:
                raise InvalidInput(f"the session has {session.entry_count} entries", field="to_seq")
            now = self._clock.now()
            old_leaf = tx.entry_ids(record.sid, [session.leaf_seq]).get(session.leaf_seq)
            tx.update_session(record.sid, now=to_micros(now), leaf_seq=to_seq)
            if summary is not None and old_leaf is not None:
                request = self.prepare_append(
                    session.id, NewEntry.branch_summary(old_leaf, summary)
                )
                self.append_in(tx, request, fresh_ids=fresh)
            return self._by_sid(tx, record.sid).session

        return self._write_appending(work)

    def branches(self, session_id: str) -> tuple[Branch, ...]:
        """Every branch of the session (one per leaf of its tree), oldest leaf first.

        The active branch is marked; after a rewind it ends at the rewound-to
        entry until the next append.
        """
        with self._backend.read() as tx:
            record = self._record(tx, session_id)
            session = record.session
            jumps = tx.jumps(record.sid)
            leaves = tree_leaves(jumps, session.entry_count)
            if session.leaf_seq > 0 and session.leaf_seq not in leaves:
                leaves = sorted([*leaves, session.leaf_seq])
            entries = {e.seq: e for e in tx.entries_by_seq(record.sid, session.id, leaves)}
        return tuple(
            Branch(
                leaf_seq=seq,
                leaf_id=entries[seq].id,
                length=path_length(jumps, seq),
                last_activity=entries[seq].created_at,
                active=seq == session.leaf_seq,
            )
            for seq in leaves
        )

    def fork(
        self,
        session_id: str,
        at_seq: int | None = None,
        *,
        key: str | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Session:
        """A new session holding the source's active path up to `at_seq` (default: its
        leaf), entries copied verbatim (ids, payloads, times); the source is untouched
        and recorded as the fork's parent. With `key`, the fork becomes that key's
        current session (its previous one is archived).
        """
        if at_seq is not None:
            check_int(at_seq, "at_seq", minimum=1)
        stored = self._key(key) if key is not None else None
        now = self._clock.now()

        with self._backend.write() as tx:
            # The source is read, not locked: appends racing with the fork only
            # add entries after the forked path.
            source = self._record(tx, session_id)
            at = source.session.leaf_seq if at_seq is None else at_seq
            if (
                at_seq is not None
                and find_on_path(tx, source.sid, source.session.leaf_seq, [at_seq]) is None
            ):
                raise InvalidInput("must be an entry on the active branch", field="at_seq")
            agent = source.session.agent_id
            new = self._new_session(
                agent,
                stored[0] if stored else None,
                origin=source.session.origin,
                title=title if title is not None else source.session.title,
                metadata=metadata,
                fork_parent=ForkRef(source.session.id, at) if at else None,
                now=now,
            )
            sid = tx.insert_session(new)
            position = 1
            for start, end in path_ranges(tx, source.sid, at) if at > 0 else []:
                tx.copy_range(source.sid, sid, start, end, position)
                position += end - start + 1
            tx.recount(sid, to_micros(now))
            if stored is not None:
                old = tx.binding(stored[1], stored[0], lock=True)
                tx.rebind(stored[1], stored[0], sid, to_micros(now))
                if old is not None:
                    tx.update_session(old, now=to_micros(now), status="archived")
            return self._by_sid(tx, sid).session

    # --- retention ------------------------------------------------------------------

    def maintain(
        self,
        policy: RetentionPolicy | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> MaintenanceReport:
        """Apply a retention policy (default: warn about the defaults) and report.

        In `warn` mode nothing changes. In `enforce` mode each removal is its
        own transaction, re-checked there: a session that saw activity since
        the scan is left alone. A scoped handle maintains only its agent.
        `progress(done, total)` is called after each planned session is dealt
        with (removed, or left alone).
        """
        policy = policy or RetentionPolicy()
        if not isinstance(policy, RetentionPolicy):
            raise InvalidInput("must be a RetentionPolicy", field="policy")
        now = self._clock.now()
        with self._backend.read() as tx:
            rows = tx.maintenance_rows(self._agent_id)
        planned = plan_removals(rows, policy, now)
        removals = []
        for row, reason in planned:
            removed = policy.mode == "enforce" and self._remove_unchanged(row.sid, row.active_at)
            removals.append(removal(row, reason, removed=removed))
            if progress is not None:
                progress(len(removals), len(planned))
        report = MaintenanceReport(policy.mode, len(rows), tuple(removals))
        logger.info(
            "maintenance ({}): scanned {}, chose {}, removed {}",
            policy.mode,
            report.scanned,
            len(report.removals),
            report.removed,
        )
        return report

    def _remove_unchanged(self, sid: int, active_at: int) -> bool:
        with self._backend.write() as tx:
            return self._delete_in(tx, sid, active_at=active_at)

    def _delete_in(self, tx: SqlTx, sid: int, *, active_at: int | None = None) -> bool:
        """Delete a session, its entries and its binding; with `active_at`, only if it has
        seen no activity since then. Locks its binding, then the session: every write
        takes bindings before sessions, so two writers never wait on each other in a circle.
        """
        tx.lock_bindings_of(sid)
        record = tx.session_by_sid(sid, lock=True)
        if record is None:
            return False
        if active_at is not None and to_micros(record.session.active_at) != active_at:
            return False
        tx.delete_session(sid)
        return True

    # --- routing inbound messages ---------------------------------------------------

    def resolve(self, inbound: Inbound, config: SessionConfig | None = None) -> Resolution:
        """The session an inbound message goes to (made or reset as the policy says).

        Routes the message to a key, finds the key's current session, and
        starts a new one when there is none, when the current one is stale
        (daily boundary, idle window, per-type and per-channel overrides) or
        when the message is a reset trigger (`Resolution.text` is then what
        followed the trigger). Atomic across processes.
        """
        config = config or SessionConfig()
        if not isinstance(inbound, Inbound):
            raise InvalidInput("must be an Inbound", field="inbound")
        stored, agent = self._key(route(inbound, config))
        now = inbound.at or self._clock.now()
        trigger = config.trigger(inbound.text)
        text = trigger[1] if trigger else inbound.text
        with self._backend.read() as tx:
            sid = tx.binding(agent, stored)
            current = self._by_sid(tx, sid).session if sid is not None else None
        reason = decide(current, stored, inbound, config, now, triggered=trigger is not None)
        if reason is None and current is not None:
            return Resolution(current, stored, None, None, text, None)
        origin = origin_of(inbound)
        with self._backend.write() as tx:
            sid = tx.binding(agent, stored, lock=True)
            latest = self._by_sid(tx, sid).session if sid is not None else None
            moved = latest is not None and (current is None or latest.id != current.id)
            if trigger is None and moved:
                # Another process started a session for this key meanwhile: decide again.
                reason = decide(latest, stored, inbound, config, now, triggered=False)
                if reason is None and latest is not None:
                    return Resolution(latest, stored, None, None, text, None)
            if latest is None:
                new = self._new_session(agent, stored, origin=origin, now=now)
                theirs = self._bind_new(tx, agent, stored, new)
                if theirs is None:
                    return Resolution(new, stored, "new", None, text, None)
                # Bound by another process meanwhile (a server database; SQLite
                # writers never overlap): theirs wins.
                return Resolution(theirs, stored, None, None, text, None)
            new = self._reset_in(tx, agent, stored, origin=origin, now=now)
            previous = self._by_sid(tx, sid).session if sid is not None else None
            return Resolution(new, stored, reason, previous, text, trigger[0] if trigger else None)

    # --- search ---------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        agent_id: str | None = None,
        key_prefix: str | None = None,
        role: str | None = None,
        session_id: str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
        highlight: tuple[str, str] = ("[", "]"),
    ) -> SearchPage:
        """Full-text search over message text, best matches first.

        The query language: words (all must match), "quoted phrases",
        prefixes (`deplo*`), alternatives (`deploy OR release`), exclusions
        (`-staging`); matching ignores case (and, on SQLite, accents). Filters
        narrow by agent, key prefix, role, session and time (`after`,
        `before`). Each hit carries a snippet with the matches between the
        `highlight` markers. Pass `page.cursor` for the next page.

        Every entry committed before the search starts is found. SQLite adds
        new entries to its index a few hundred at a time, and a search first
        indexes those still waiting: a write, which may wait for another writer
        like any write; when the store is full or stays locked, the search runs
        on what is indexed, with a warning.

        Raises:
            SearchQueryError: for a malformed query (never an engine's error).
        """
        clauses = parse_query(query)
        limit = check_int(limit, "limit", minimum=1, maximum=MAX_SEARCH_PAGE)
        offset = 0
        given: object = cursor
        if given is not None:
            if not isinstance(given, str) or not given.isdigit():
                raise InvalidInput("must be a cursor from a previous page", field="cursor")
            offset = int(given)
        if offset + limit > MAX_SEARCH_DEPTH:
            raise InvalidInput(f"search pages end at {MAX_SEARCH_DEPTH} hits", field="cursor")
        _check_markers(highlight)
        where = SearchFilter(
            agent_id=self._scope_agent(agent_id),
            key_prefix=check_text(key_prefix, "key_prefix") if key_prefix is not None else None,
            role=check_text(role, "role", max_length=64) if role is not None else None,
            session_id=check_text(session_id, "session_id", max_length=256)
            if session_id is not None
            else None,
            created_after=to_micros(after) if after is not None else None,
            created_before=to_micros(before) if before is not None else None,
        )
        self._backend.index_for_search()
        with self._backend.read() as tx:
            rows = tx.search(clauses, where, limit=limit + 1, offset=offset, highlight=highlight)
        hits = tuple(
            SearchHit(
                session_id=row[0],
                agent_id=row[1],
                key=row[2],
                seq=row[3],
                entry_id=row[4],
                role=row[5],
                created_at=from_micros(row[6]),
                snippet=row[7],
                rank=row[8],
            )
            for row in rows[:limit]
        )
        more = len(rows) > limit and offset + limit < MAX_SEARCH_DEPTH
        return SearchPage(hits, str(offset + limit) if more else None)

    # --- whole sessions: imports, copies, dumps -------------------------------------

    def stream_sessions(self, *, page: int = 200) -> Iterator[tuple[Session, bool]]:
        """Every session (of this handle's agent, when scoped) in the order they were
        stored, with whether it is its key's current session; read a page at a time."""
        after = 0
        while True:
            with self._backend.read() as tx:
                records = tx.sessions_after(after, page, self._agent_id)
                found = [(r.session, tx.is_bound(r.sid)) for r in records]
            yield from found
            if len(records) < page:
                return
            after = records[-1].sid

    def write_session(
        self,
        image: SessionImage,
        entries: Iterable[EntryImage],
        *,
        replace: bool = False,
    ) -> Session:
        """Write a whole session (an import, a copy) in one transaction, exactly as given:
        id, entries with their ids, tree, payloads and times, version, and, when
        `image.current`, its key's binding (archiving the session it replaces).

        Entries are consumed a page at a time. Counters and usage totals are
        computed from the entries. Nothing is written if anything is wrong.

        Raises:
            SessionExists: when the store holds a session with this id (and not `replace`).
            InvalidInput: for entries that are not numbered 1, 2, 3... or whose
                parent is not an earlier entry, and for any bad value.
        """
        self._check_image(image)
        now = self._clock.now()
        with self._backend.write() as tx:
            if image.current and image.key is not None:
                tx.binding(image.agent_id, image.key, lock=True)  # bindings before sessions
            existing = tx.session_by_id(image.id)
            if existing is not None:
                if not replace:
                    raise SessionExists(image.id)
                self._check_scope(existing.session)
                self._delete_in(tx, existing.sid)
            session = self._new_session(
                image.agent_id,
                image.key,
                origin=image.origin,
                title=image.title,
                metadata=image.metadata,
                fork_parent=image.fork_parent,
                now=image.created_at,
            )
            session = attrs.evolve(session, id=image.id, status=image.status)
            sid = tx.insert_session(session)
            count = self._write_entries(tx, sid, entries)
            if image.leaf_seq > count:
                raise InvalidInput(f"the session has {count} entries", field="leaf_seq")
            tx.recount(sid, to_micros(now))
            tx.restore_state(
                sid,
                leaf_seq=image.leaf_seq,
                version=image.version,
                updated_at=to_micros(image.updated_at),
                active_at=to_micros(image.active_at),
            )
            if image.current and image.key is not None:
                old = tx.binding(image.agent_id, image.key, lock=True)
                tx.rebind(image.agent_id, image.key, sid, to_micros(now))
                if old is not None and old != sid:
                    tx.update_session(old, now=to_micros(now), status="archived")
            return self._by_sid(tx, sid).session

    def _check_image(self, image: SessionImage) -> None:
        if not isinstance(image, SessionImage):
            raise InvalidInput("must be a SessionImage", field="image")
        check_text(image.id, "id", max_length=256)
        check_text(image.agent_id, "agent_id", max_length=64)
        if image.agent_id != normalize_agent_id(image.agent_id):
            raise InvalidInput("must be a normalised agent id", field="agent_id")
        if image.key is not None:
            stored, agent = session_key(image.key, image.agent_id)
            if stored != image.key or agent != image.agent_id:
                raise InvalidInput(
                    f"must be a normalised key of agent {image.agent_id}", field="key"
                )
        if image.status not in SESSION_STATUSES:
            raise InvalidInput(f"must be one of {', '.join(SESSION_STATUSES)}", field="status")
        check_int(image.version, "version", minimum=1)
        check_int(image.leaf_seq, "leaf_seq")
        if self._agent_id is not None and image.agent_id != self._agent_id:
            raise AccessDenied(self._agent_id, image.id)

    def _write_entries(self, tx: SqlTx, sid: int, entries: Iterable[EntryImage]) -> int:
        """Insert entry images a page at a time; return how many there were."""
        batch: list[tuple[PreparedEntry, EntryImage]] = []
        count = 0

        def flush() -> None:
            if batch:
                tx.insert_entries(
                    sid,
                    [prepared for prepared, _ in batch],
                    ids=[image.id for _, image in batch],
                    first_seq=batch[0][1].seq,
                    parents=[image.parent_seq for _, image in batch],
                    idempotency_key=[image.idempotency_key for _, image in batch],
                )
                batch.clear()

        for image in entries:
            count += 1
            if not isinstance(image, EntryImage):
                raise InvalidInput("must be EntryImage values", field="entries")
            if image.seq != count:
                raise InvalidInput(f"entry {image.seq} should be entry {count}", field="seq")
            if image.parent_seq is not None and not 1 <= image.parent_seq < image.seq:
                raise InvalidInput(
                    f"entry {image.seq} hangs from {image.parent_seq}, not an earlier entry",
                    field="parent_seq",
                )
            check_text(image.id, "id", max_length=256)
            prepared = prepare(
                NewEntry(image.type, image.payload, id=image.id),
                Stamp.of(image.created_at),
                max_payload_bytes=self._max_payload_bytes,
                verbatim=True,
            )
            batch.append((prepared, image))
            if len(batch) >= PAGE:
                flush()
        flush()
        return count

    # --- helpers --------------------------------------------------------------------

    def _key(self, key: object) -> tuple[str, str]:
        stored, agent = session_key(key, self._agent_id)
        if self._agent_id is not None and agent != self._agent_id:
            raise AccessDenied(self._agent_id, stored)
        return stored, agent

    def _scope_agent(self, agent_id: str | None) -> str | None:
        if agent_id is None:
            return self._agent_id
        agent = normalize_agent_id(check_text(agent_id, "agent_id", max_length=64))
        if self._agent_id is not None and agent != self._agent_id:
            raise AccessDenied(self._agent_id, f"agent:{agent}")
        return agent

    def _check_scope(self, session: Session) -> None:
        if self._agent_id is not None and session.agent_id != self._agent_id:
            raise AccessDenied(self._agent_id, session.id)

    def _record(self, tx: SqlTx, session_id: str, *, lock: bool = False) -> SessionRecord:
        check_text(session_id, "session_id", max_length=256)
        record = tx.session_by_id(session_id, lock=lock)
        if record is None:
            raise SessionNotFound(session_id)
        self._check_scope(record.session)
        return record

    def _sid(self, tx: SqlTx, session_id: str) -> int:
        """A session's internal id, checked for existence and scope (a light `_record`)."""
        check_text(session_id, "session_id", max_length=256)
        ref = tx.session_ref(session_id)
        if ref is None:
            raise SessionNotFound(session_id)
        if self._agent_id is not None and ref[1] != self._agent_id:
            raise AccessDenied(self._agent_id, session_id)
        return ref[0]

    def _by_sid(self, tx: SqlTx, sid: int) -> SessionRecord:
        record = tx.session_by_sid(sid)
        if record is None:  # pragma: no cover - bindings reference sessions by foreign key
            raise SessionNotFound(f"#{sid}")
        return record

    def _new_session(
        self,
        agent_id: str,
        key: str | None,
        *,
        origin: Origin | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        fork_parent: Any = None,
        now: Any = None,
    ) -> Session:
        if origin is not None and not isinstance(origin, Origin):
            raise InvalidInput("must be an Origin", field="origin")
        if title is not None:
            check_text(title, "title")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInput("must be a JSON object", field="metadata")
        meta = dict(metadata or {})
        dumps(meta, field="metadata")
        when = now or self._clock.now()
        return Session(
            id=new_session_id(),
            agent_id=agent_id,
            key=key,
            status="active",
            title=title,
            created_at=when,
            updated_at=when,
            active_at=when,
            entry_count=0,
            message_count=0,
            compaction_count=0,
            compacted_at=None,
            usage=TokenUsage(),
            size_bytes=0,
            metadata=meta,
            origin=origin or Origin(),
            fork_parent=fork_parent,
            leaf_seq=0,
            version=1,
        )

    def _reset_in(
        self, tx: SqlTx, agent: str, key: str, *, origin: Origin | None, now: Any
    ) -> Session:
        old_sid = tx.binding(agent, key, lock=True)
        old = tx.session_by_sid(old_sid, lock=True) if old_sid is not None else None
        if origin is None and old is not None:
            origin = old.session.origin
        new = self._new_session(agent, key, origin=origin, now=now)
        new_sid = tx.insert_session(new)
        if old_sid is None and tx.bind_if_unbound(agent, key, new_sid, to_micros(now)):
            return new
        if old_sid is None:
            # Another process bound the key meanwhile: ours replaces theirs.
            old_sid = tx.binding(agent, key, lock=True)
        tx.rebind(agent, key, new_sid, to_micros(now))
        if old_sid is not None:
            tx.update_session(old_sid, now=to_micros(now), status="archived")
        return new


def _summary_now(result: str | Awaitable[str]) -> str:
    """A summariser's answer, awaited when it is a coroutine and no loop is running."""
    if not inspect.isawaitable(result):
        return result
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(result))
    if inspect.iscoroutine(result):
        result.close()
    raise InvalidInput(
        "an async summariser inside a running event loop needs the async store",
        field="summarizer",
    )


async def _awaited(result: Awaitable[str]) -> str:
    return await result


def _check_markers(highlight: object) -> None:
    """Highlight markers: two short strings that cannot change the engine's snippet options."""
    markers = highlight if isinstance(highlight, tuple) and len(highlight) == 2 else None
    if markers is None or not all(
        isinstance(m, str) and len(m) <= 16 and not set(m) & set(',="\x00') for m in markers
    ):
        raise InvalidInput("must be two short markers without , = or quotes", field="highlight")


def _check_version(session: Session, expected: int | None) -> None:
    if expected is not None and session.version != expected:
        raise ConflictError(session.id, expected, session.version)


def _decode_cursor(cursor: object) -> tuple[int, int]:
    if not isinstance(cursor, str):
        raise InvalidInput("must be a cursor from a previous page", field="cursor")
    updated, _, sid = cursor.partition(".")
    if not (updated.isdigit() and sid.isdigit()):
        raise InvalidInput("must be a cursor from a previous page", field="cursor")
    return int(updated), int(sid)
