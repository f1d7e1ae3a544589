"""The session store: the synchronous API, written once over any backend."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

import attrs

from aisopod_session._branching import Branch, path_length, tree_leaves
from aisopod_session._compaction import (
    CompactionResult,
    Strategy,
    Summarizer,
    headings_summarizer,
)
from aisopod_session._config import RetentionPolicy, SessionConfig
from aisopod_session._context import Context, build_context
from aisopod_session._cursors import (
    PageSide,
    list_cursor,
    page_cursor,
    read_list_cursor,
    read_page_cursor,
    read_search_cursor,
    search_cursor,
)
from aisopod_session._engine import Engine
from aisopod_session._entries import DEFAULT_MAX_PAYLOAD_BYTES, NewEntry
from aisopod_session._errors import ConflictError
from aisopod_session._model import (
    SESSION_STATUSES,
    AgentStats,
    DailyUsage,
    Entry,
    ForkRef,
    Origin,
    Page,
    Session,
    SessionPage,
    SessionStatus,
    stored_forms,
)
from aisopod_session._paths import find_on_path, path_ranges, path_tail
from aisopod_session._resolver import Inbound, Resolution, decide, origin_of, route, user_of
from aisopod_session._retention import MaintenanceReport, plan_removals, removal
from aisopod_session._search import SearchPage, parse_query
from aisopod_session._validate import check_int, check_micros, check_text, merge_patch
from aisopod_session.backends._sql import Backend, ListFilter, SearchFilter, SqlTx
from aisopod_session.keys import DEFAULT_AGENT_ID
from aisopod_shared import (
    Clock,
    InvalidInput,
    Message,
    SystemClock,
    dumps,
    logger,
    to_micros,
)

__all__ = ["UNSET", "AgentStats", "SchemaInfo", "SessionStore", "Unset", "engine_of"]

MAX_PAGE: Final = 10_000
"""The most entries or sessions one page may hold: every read is bounded."""

MAX_USAGE_DAYS: Final = 366
"""The longest range `usage_by_day` sums over: its answer grows with the days."""

MAX_SEARCH_PAGE: Final = 100
MAX_SEARCH_DEPTH: Final = 10_000
"""How far search results can be paged: ranking is by relevance, and nobody reads
the ten-thousandth best match."""


class Unset:
    """The type of `UNSET`."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()
"""Marks a `patch` argument that was not given (as opposed to `None`, which clears)."""


@attrs.frozen
class SchemaInfo:
    """The schema a store's database is at, and the migrations this code knows."""

    version: int
    """The version recorded in the database (0 for a new one)."""
    migrations: tuple[str, ...]
    """The names of the migrations this code knows, in order: version N is the N-th."""

    @property
    def latest(self) -> int:
        """The newest version this code knows."""
        return len(self.migrations)


class SessionStore:
    """Sessions, their bindings to keys, and their entries, in one database.

    Open one with `open_store(url)`. Each method is atomic: a write is one
    transaction (or, for a compaction, a read and then a write that checks
    nothing it relied on moved), and a read sees one consistent snapshot of
    what it reads. Reads are bounded (keyset pages, never OFFSET over
    history, never a whole history). A store handle is safe to share between
    threads. `for_agent(agent_id)` returns a handle that sees and touches
    only that agent's sessions.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._backend: Backend = engine.backend
        self._clock: Clock = engine.clock

    @classmethod
    def over(
        cls,
        backend: Backend,
        *,
        clock: Clock | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> SessionStore:
        """A store on an open backend (`open_store` is the way to get one from a URL)."""
        limit = check_int(max_payload_bytes, "max_payload_bytes", minimum=1)
        return cls(Engine(backend, clock or SystemClock(), limit))

    def __repr__(self) -> str:
        scope = f", agent={self.agent_id!r}" if self.agent_id else ""
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
    def clock(self) -> Clock:
        """The clock the store stamps writes with."""
        return self._clock

    @property
    def agent_id(self) -> str | None:
        """The agent this handle is scoped to, or `None` for an unscoped handle."""
        return self._engine.agent_id

    def for_agent(self, agent_id: str) -> SessionStore:
        """A handle on the same database that sees and touches only `agent_id`'s sessions."""
        return type(self)(self._engine.scoped(agent_id))

    def close(self) -> None:
        """Close the database connections (of every handle on this database)."""
        self._backend.close()

    def check_integrity(self) -> list[str]:
        """Ask the database engine whether its files are consistent; the problems, if any."""
        return self._backend.check_integrity()

    def schema(self) -> SchemaInfo:
        """The database's schema version and the migrations this code knows."""
        return SchemaInfo(
            self._backend.schema_version(), tuple(m.name for m in self._backend.migrations)
        )

    def diagnostics(self) -> dict[str, Any]:
        """Settings and facts worth checking: the engine's settings, sizes, permissions."""
        return self._backend.diagnostics()

    def stats(self) -> list[AgentStats]:
        """Sessions, entries, tokens, cost and size, per agent (one agent when scoped)."""
        with self._backend.read() as tx:
            return tx.agent_stats(self.agent_id)

    def usage_by_day(
        self, *, since: datetime, until: datetime | None = None, agent_id: str | None = None
    ) -> tuple[DailyUsage, ...]:
        """Tokens and cost per agent per day (UTC), summed from the entries made in
        `since <= created_at < until` (default: up to now) that carry usage, by day then
        agent; days without usage are left out. One agent's with `agent_id` (a
        scoped handle: its own). Entries a fork copied count once, in the session
        they were appended to. The range is at most `MAX_USAGE_DAYS` days.

        Raises:
            InvalidInput: for a naive or missing datetime, a `until` before `since`,
                or a range longer than `MAX_USAGE_DAYS` days.
        """
        start = check_micros(since, "since")
        if until is not None:
            end = check_micros(until, "until")
            if end < start:
                raise InvalidInput("must not be before since", field="until")
        else:  # up to now included: an entry made this microsecond counts
            until = self._clock.now()
            end = to_micros(until) + 1
        if until - since > timedelta(days=MAX_USAGE_DAYS):
            raise InvalidInput(f"the range is at most {MAX_USAGE_DAYS} days", field="until")
        agent = self._engine.agent_filter(agent_id)
        with self._backend.read() as tx:
            return tuple(tx.usage_by_day(agent, start, end))

    # --- sessions -------------------------------------------------------------------

    def get_or_create(
        self,
        key: str,
        *,
        origin: Origin | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> Session:
        """The key's current session, made (and bound to the key) if it has none.

        Atomic: callers racing on a new key, in any number of threads or
        processes, all get the one session that won. `origin`, `title`,
        `metadata` and `user_id` (whose `user:` state the session shares) only
        apply to a session this call makes.
        """
        stored, agent = self._engine.key(key)
        with self._backend.read() as tx:
            found = self._engine.bound(tx, agent, stored)
            if found is not None:
                return found.session
        new = self._engine.new_session(
            agent, stored, origin=origin, title=title, metadata=metadata, user_id=user_id
        )
        with self._backend.write() as tx:
            theirs = self._engine.bind_new(tx, agent, stored, new)
            return theirs if theirs is not None else new

    def get(self, session_id: str) -> Session:
        """The session with this id.

        Raises:
            SessionNotFound: when there is none.
            AccessDenied: when a scoped handle asks for another agent's session.
        """
        with self._backend.read() as tx:
            return self._engine.record(tx, session_id).session

    def current(self, key: str) -> Session | None:
        """The key's current session, or `None` when the key has never had one."""
        stored, agent = self._engine.key(key)
        with self._backend.read() as tx:
            found = self._engine.bound(tx, agent, stored)
            return found.session if found is not None else None

    def list(
        self,
        *,
        agent_id: str | None = None,
        status: SessionStatus | None = None,
        channel: str | None = None,
        key: str | None = None,
        key_prefix: str | None = None,
        updated_after: Any = None,
        updated_before: Any = None,
        user_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        """Sessions, most recently updated first, one bounded page at a time.

        Filters combine; `key` gives every session a key ever had (current and
        archived), `user_id` every session with that user; `updated_after` and
        `updated_before` (aware datetimes, both exclusive) bound `updated_at`. Pass the page's
        `next` (also `cursor`) back as `cursor=` for the page after it, its
        `previous` for the page before it.

        Raises:
            InvalidInput: for a cursor that is not a list page's.
        """
        limit = check_int(limit, "limit", minimum=1, maximum=MAX_PAGE)
        agent = self._engine.agent_filter(agent_id)
        if status is not None and status not in SESSION_STATUSES:
            raise InvalidInput(f"must be one of {', '.join(SESSION_STATUSES)}", field="status")
        where = ListFilter(
            agent_id=agent,
            status=status,
            channel=check_text(channel, "channel").strip().lower() if channel is not None else None,
            key=self._engine.key(key)[0] if key is not None else None,
            key_prefix=check_text(key_prefix, "key_prefix") if key_prefix is not None else None,
            updated_after=(
                check_micros(updated_after, "updated_after") if updated_after is not None else None
            ),
            updated_before=(
                check_micros(updated_before, "updated_before")
                if updated_before is not None
                else None
            ),
            user_id=check_text(user_id, "user_id", max_length=256) if user_id is not None else None,
        )
        side, at = read_list_cursor(cursor) if cursor is not None else ("after", None)
        backward = side == "before"
        with self._backend.read() as tx:
            records = tx.list_sessions(
                where,
                limit=limit + 1,
                after=None if backward else at,
                before=at if backward else None,
            )
        more = len(records) > limit
        # One row past the page tells whether there is more the way it was read;
        # the other way there is more exactly when a cursor led here.
        page = records[-limit:] if backward else records[:limit]
        first = (to_micros(page[0].session.updated_at), page[0].sid) if page else at
        last = (to_micros(page[-1].session.updated_at), page[-1].sid) if page else at
        further_back = more if backward else at is not None
        further_on = at is not None if backward else more
        return SessionPage(
            tuple(r.session for r in page),
            list_cursor("after", last) if further_on and last is not None else None,
            previous=list_cursor("before", first) if further_back and first is not None else None,
        )

    def patch(
        self,
        session_id: str,
        *,
        title: str | Unset | None = UNSET,
        metadata: Mapping[str, Any] | None = None,
        user_id: str | Unset | None = UNSET,
        expected_version: int | None = None,
    ) -> Session:
        """Change a session's title and user, and merge-patch its metadata (RFC 7396:
        `None` removes).

        Raises:
            ConflictError: when `expected_version` is given and is not the
                session's version; nothing is written.
        """
        if expected_version is not None:
            check_int(expected_version, "expected_version")
        fields: dict[str, Any] = {}
        if not isinstance(title, Unset):
            fields["title"] = check_text(title, "title") if title is not None else None
        if not isinstance(user_id, Unset):
            fields["user_id"] = (
                check_text(user_id, "user_id", max_length=256) if user_id is not None else None
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInput("must be a JSON object", field="metadata")
        if metadata is not None:
            dumps(dict(metadata), field="metadata")  # refuse what JSON cannot carry, early
        now = to_micros(self._clock.now())
        with self._backend.write() as tx:
            record = self._engine.record(tx, session_id, lock=True)
            _check_version(record.session, expected_version)
            if metadata is not None:
                fields["metadata"] = merge_patch(record.session.metadata, metadata)
            tx.update_session(record.sid, now=now, **fields)
            return self._engine.by_sid(tx, record.sid).session

    def reset(self, key: str, *, origin: Origin | None = None) -> Session:
        """Start a new current session for the key; the old one stays readable, archived.

        The new session keeps the old one's origin unless `origin` is given.
        """
        stored, agent = self._engine.key(key)
        now = self._clock.now()
        with self._backend.write() as tx:
            return self._engine.reset_in(tx, agent, stored, origin=origin, now=now)

    def delete(self, session_id: str) -> bool:
        """Delete a session and its entries (and its key binding); whether it existed."""
        check_text(session_id, "session_id", max_length=256)
        with self._backend.write() as tx:
            found = tx.session_by_id(session_id)
            if found is None:
                return False
            self._engine.visible(found.session)
            return self._engine.delete_in(tx, found.sid)

    def archive(self, session_id: str, *, expected_version: int | None = None) -> Session:
        """Mark a session no key points at (a fork made without a key, say) archived;
        nothing else changes, and an archived session stays as it is.

        A key's current session is archived only by resetting the key, which starts
        the new session it then points at: a key always has one current session.

        Raises:
            InvalidInput: when the session is a key's current session (field
                `session_id`); nothing is written.
            ConflictError: when `expected_version` is given and is not the
                session's version.
        """
        if expected_version is not None:
            check_int(expected_version, "expected_version")
        now = to_micros(self._clock.now())
        with self._backend.write() as tx:
            sid = self._engine.sid(tx, session_id)
            tx.lock_bindings_of(sid)  # bindings before sessions, as every write
            record = self._engine.by_sid(tx, sid, lock=True)
            _check_version(record.session, expected_version)
            if tx.is_bound(sid):
                raise InvalidInput(
                    f"is the current session of key {record.session.key!r}: reset the key"
                    " to archive it (a key always has one current session)",
                    field="session_id",
                )
            if record.session.status == "archived":
                return record.session
            tx.update_session(sid, now=now, status="archived")
            return self._engine.by_sid(tx, sid).session

    # --- entries --------------------------------------------------------------------

    def append(
        self,
        session_id: str,
        entries: Message | NewEntry | Iterable[Message | NewEntry],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> tuple[Entry, ...]:
        """Append entries to a session, in one transaction; return them with their seqs.

        Entries, counters, usage totals, `updated_at`, `version` and the `state`
        delta move together or not at all. The first new entry hangs from the
        session's leaf, each next one from the one before. Retrying with the
        same `idempotency_key` returns the first call's entries and adds nothing.

        `state` maps keys to new values (`REMOVE` deletes): unprefixed keys are
        the session's, recorded by a `state` entry after the others (so the
        state follows rewinds, branches and forks); `user:` keys are the
        session's user's, `agent:` keys the agent's, shared by their sessions;
        `temp:` keys are dropped. `entries` may be empty when only state changes.

        Raises:
            SessionNotFound: when there is no such session.
            ConflictError: when `expected_version` is not the session's version.
            InvalidPayload, PayloadTooLarge: for content the store cannot keep.
            InvalidInput: for a bad state delta, or `user:` keys on a session
                without a user.
        """
        request = self._engine.prepare_append(
            session_id,
            entries,
            idempotency_key=idempotency_key,
            expected_version=expected_version,
            state=state,
        )
        return self._engine.run_append(request)

    def update_state(
        self,
        session_id: str,
        delta: Mapping[str, Any],
        *,
        expected_version: int | None = None,
    ) -> Mapping[str, Any]:
        """Apply a state delta alone (see `append`); return the state after it (as
        `state()` gives it), read in the same transaction."""
        request = self._engine.prepare_append(
            session_id, [], expected_version=expected_version, state=delta
        )
        if request.state is None:
            return self.state(session_id)

        def work(tx: SqlTx, fresh: bool) -> Mapping[str, Any]:
            self._engine.append_in(tx, request, fresh_ids=fresh)
            return self._state_in(tx, session_id, None)

        return self._engine.write_appending(work)

    def state(self, session_id: str, *, at_seq: int | None = None) -> Mapping[str, Any]:
        """The session's state, read-only: its own keys as they are at its leaf (or,
        with `at_seq`, as they were at that entry, on the path to it), with the
        current `user:` and `agent:` keys, prefixed, beside them.

        The state at the leaf is one row; the state at a past entry folds at most
        a few dozen changes onto a snapshot, however long the history.
        """
        if at_seq is not None:
            check_int(at_seq, "at_seq")
        with self._backend.read() as tx:
            return self._state_in(tx, session_id, at_seq)

    def _state_in(self, tx: SqlTx, session_id: str, at_seq: int | None) -> Mapping[str, Any]:
        sid = self._engine.sid(tx, session_id)
        current = tx.session_state(sid)
        own = current.state
        if at_seq is not None:
            if at_seq > self._engine.record(tx, session_id).session.entry_count:
                raise InvalidInput("no such entry in the session", field="at_seq")
            own = self._engine.state_at(tx, sid, at_seq)[0]
        shared = self._engine.shared_state(tx, current.agent_id, current.user_id)
        return MappingProxyType({**own, **shared})

    def user_state(self, user_id: str, agent_id: str | None = None) -> Mapping[str, Any]:
        """One user's `user:` state with an agent (this handle's, else `main`), keys
        without the prefix, read-only."""
        check_text(user_id, "user_id", max_length=256)
        agent = self._engine.agent_filter(agent_id) or DEFAULT_AGENT_ID
        with self._backend.read() as tx:
            return MappingProxyType(tx.shared_state("user_state", agent, user_id))

    def agent_state(self, agent_id: str | None = None) -> Mapping[str, Any]:
        """An agent's `agent:` state (this handle's, else `main`), keys without the
        prefix, read-only."""
        agent = self._engine.agent_filter(agent_id) or DEFAULT_AGENT_ID
        with self._backend.read() as tx:
            return MappingProxyType(tx.shared_state("agent_state", agent, None))

    def history(
        self,
        session_id: str,
        *,
        last: int | None = None,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """A bounded page of a session's log, in chronological (seq) order.

        - `history(id, last=50)`: the last 50 entries.
        - `history(id, cursor=page.next)`: the next page the way `page` was read
          (`page.previous`: the page on its other side), `limit` as given.
        - `history(id, before=120, limit=50)`: the 50 before a seq.
        - `history(id, after=0, limit=500)`: forward from a seq (export, sync).

        With none of `last`, `before`, `after`, `cursor`: the last `limit`
        (default 50). The cost of a page does not depend on the length of the
        session.
        """
        if cursor is not None:
            if (last, before, after) != (None, None, None):
                raise InvalidInput("cursor= stands alone (with limit=)", field="cursor")
            side, seq = read_page_cursor(cursor)
            before, after = (seq, None) if side == "before" else (None, seq)
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
                session_id, self.agent_id, before=before, after=after, limit=limit
            )
        if not page:
            with self._backend.read() as tx:
                self._engine.sid(tx, session_id)  # no such session, or another agent's, or empty
            return Page((), None)
        forward = after is not None
        # The way it was read continues from its last entry read; the other way
        # from the other end.
        ahead, behind = (page[-1].seq, page[0].seq) if forward else (page[0].seq, page[-1].seq)
        way: PageSide = "after" if forward else "before"
        other: PageSide = "before" if forward else "after"
        return Page(
            tuple(page),
            ahead if more else None,
            next=page_cursor(way, ahead) if more else None,
            previous=page_cursor(other, behind) if behind > 1 or other == "after" else None,
        )

    def entry_ids(self, session_id: str, seqs: Iterable[int]) -> dict[int, str]:
        """The ids of a session's entries with these seqs (missing seqs are left out)."""
        wanted = [check_int(seq, "seq", minimum=1) for seq in seqs]
        if len(wanted) > MAX_PAGE:
            raise InvalidInput(f"at most {MAX_PAGE} seqs at a time", field="seqs")
        with self._backend.read() as tx:
            record = self._engine.record(tx, session_id)
            return tx.entry_ids(record.sid, wanted)

    # --- the active path and the context --------------------------------------------

    def path(
        self,
        session_id: str,
        *,
        last: int = 50,
        before: int | None = None,
        cursor: str | None = None,
        leaf: int | None = None,
    ) -> Page:
        """The last entries of the active branch (root to leaf), chronological.

        Unlike `history`, which reads the whole log, this follows the tree:
        entries of abandoned branches are not on it. `leaf=SEQ` reads the branch
        that ends at that entry instead (an abandoned branch's tip, or any entry:
        the path to it). Pass `cursor=page.next` (or `before=page.cursor`) for
        the entries before a page; they are on the same branch. The cost does
        not depend on the length of the session.
        """
        if cursor is not None:
            side, seq = read_page_cursor(cursor)
            if side != "before" or before is not None:
                raise InvalidInput("a path pages backwards: cursor=page.next alone", field="cursor")
            before = seq
        if leaf is not None and before is not None:
            raise InvalidInput(
                "leaf or before, not both: a page before an entry is on its branch", field="leaf"
            )
        last = check_int(last, "last", minimum=1, maximum=MAX_PAGE)
        with self._backend.read() as tx:
            record = self._engine.record(tx, session_id)
            if leaf is not None:
                leaf = check_int(leaf, "leaf", minimum=1)
                if leaf > record.session.entry_count:
                    raise InvalidInput(f"there is no entry {leaf}", field="leaf")
            elif before is None:
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
        more = len(entries) > last
        return Page(
            tuple(page),
            page[0].seq if more else None,
            next=page_cursor("before", page[0].seq) if more else None,
        )

    def context(self, session_id: str, *, max_tokens: int | None = None) -> Context:
        """The messages for the model, from the active branch, compaction applied.

        With `max_tokens`, older entries are left out to fit: never the system
        prompt or the compaction summary; what is kept starts where a model can
        start reading (not with an assistant message or a tool result whose
        call is left out, never between a call and its result); `truncated` is
        true exactly when a message was left out. The budget counts the
        entries that become messages.

        Raises:
            ContextBudgetTooSmall: when `max_tokens` cannot hold the system
                prompt, the summary and the last user message with what follows
                it (`needed` says how many tokens would).
        """
        if max_tokens is not None:
            check_int(max_tokens, "max_tokens", minimum=1)
        with self._backend.read() as tx:
            record = self._engine.record(tx, session_id)
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
        plan = self._engine.plan_compaction(session_id, strategy)
        if plan is None:
            return CompactionResult(self.get(session_id), None, None, 0, 0)
        return self._engine.commit_compaction(plan, _summary_now(summarizer(plan.dropped)))

    def undo_compaction(self, session_id: str) -> Session:
        """Move the leaf back to just before the latest compaction on the active branch.

        Raises:
            InvalidInput: when the active branch has no compaction.
        """
        with self._backend.read() as tx:
            record = self._engine.record(tx, session_id)
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
            record = self._engine.record(tx, session_id, lock=True)
            session = record.session
            _check_version(session, expected_version)
            if to_seq > session.entry_count:
                raise InvalidInput(f"the session has {session.entry_count} entries", field="to_seq")
            now = self._clock.now()
            old_leaf = tx.entry_ids(record.sid, [session.leaf_seq]).get(session.leaf_seq)
            tx.update_session(record.sid, now=to_micros(now), leaf_seq=to_seq)
            self._engine.move_state_to(tx, record.sid, to_seq)
            if summary is not None and old_leaf is not None:
                request = self._engine.prepare_append(
                    session.id, NewEntry.branch_summary(old_leaf, summary)
                )
                self._engine.append_in(tx, request, fresh_ids=fresh)
            return self._engine.by_sid(tx, record.sid).session

        return self._engine.write_appending(work)

    def branches(self, session_id: str) -> tuple[Branch, ...]:
        """Every branch of the session (one per leaf of its tree), oldest leaf first.

        The active branch is marked; after a rewind it ends at the rewound-to
        entry until the next append.
        """
        with self._backend.read() as tx:
            record = self._engine.record(tx, session_id)
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
        and recorded as the fork's parent. With `key` (a key of the session's own
        agent), the fork becomes that key's current session (its previous one is
        archived).

        Raises:
            InvalidInput: when `key` is another agent's (a fork stays with its agent).
        """
        if at_seq is not None:
            check_int(at_seq, "at_seq", minimum=1)
        stored = self._engine.key(key) if key is not None else None
        now = self._clock.now()

        with self._backend.write() as tx:
            # The source is read, not locked: appends racing with the fork only
            # add entries after the forked path.
            source = self._engine.record(tx, session_id)
            at = source.session.leaf_seq if at_seq is None else at_seq
            if (
                at_seq is not None
                and find_on_path(tx, source.sid, source.session.leaf_seq, [at_seq]) is None
            ):
                raise InvalidInput("must be an entry on the active branch", field="at_seq")
            agent = source.session.agent_id
            if stored is not None and stored[1] != agent:
                raise InvalidInput(
                    f"{stored[0]!r} is a key of agent {stored[1]}; the session is agent"
                    f" {agent}'s, and a fork stays with its agent",
                    field="key",
                )
            new = self._engine.new_session(
                agent,
                stored[0] if stored else None,
                origin=source.session.origin,
                title=title if title is not None else source.session.title,
                metadata=metadata,
                fork_parent=ForkRef(source.session.id, at) if at else None,
                now=now,
                user_id=source.session.user_id,
            )
            sid = tx.insert_session(new)
            position = 1
            for start, end in path_ranges(tx, source.sid, at) if at > 0 else []:
                tx.copy_range(source.sid, sid, start, end, position)
                position += end - start + 1
            tx.recount(sid, to_micros(now))
            self._engine.rebuild_state(tx, sid, position - 1)
            if stored is not None:
                self._engine.rebind(tx, agent, stored[0], sid, now)
            return self._engine.by_sid(tx, sid).session

    def largest(
        self, *, limit: int = 10, agent_id: str | None = None, updated_after: Any = None
    ) -> tuple[Session, ...]:
        """The sessions with the most tokens, most first (ties: the most bytes), of
        one agent (`agent_id`; a scoped handle: its own) or every agent, only those
        updated after `updated_after` (an aware datetime, exclusive) when given.

        Raises:
            InvalidInput: for a limit outside 1..MAX_PAGE or a naive datetime.
            AccessDenied: when a scoped handle asks for another agent.
        """
        limit = check_int(limit, "limit", minimum=1, maximum=MAX_PAGE)
        agent = self._engine.agent_filter(agent_id)
        after = check_micros(updated_after, "updated_after") if updated_after is not None else None
        with self._backend.read() as tx:
            records = tx.largest_sessions(agent, after, limit)
        return tuple(r.session for r in records)

    def forks(self, session_id: str, *, limit: int = 50) -> tuple[Session, ...]:
        """The sessions forked from this one (whose `fork_parent` names it), the
        newest `limit` first; a scoped handle sees its own agent's only.

        Raises:
            SessionNotFound: when there is no such session.
            AccessDenied: when a scoped handle asks about another agent's session.
        """
        limit = check_int(limit, "limit", minimum=1, maximum=MAX_PAGE)
        with self._backend.read() as tx:
            parent = self._engine.record(tx, session_id)
            records = tx.forks_of(parent.session.id, self.agent_id, limit)
        return tuple(r.session for r in records)

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
        the scan is left alone. A scoped handle maintains only its agent. A
        removed session's state goes with it; `user:` and `agent:` state stays
        (the report gives its size).
        `progress(done, total)` is called after each planned session is dealt
        with (removed, or left alone). A limit the run cannot bring the store
        under (current sessions active within the window are never removed) is
        in the report's `unmet`.
        """
        policy = policy or RetentionPolicy()
        if not isinstance(policy, RetentionPolicy):
            raise InvalidInput("must be a RetentionPolicy", field="policy")
        now = self._clock.now()
        with self._backend.read() as tx:
            rows = tx.maintenance_rows(self.agent_id)
            shared = tx.shared_state_bytes(self.agent_id)
        plan = plan_removals(rows, policy, now)
        removals = []
        for row, reason in plan.removals:
            removed = policy.mode == "enforce" and self._remove_unchanged(row.sid, row.active_at)
            removals.append(removal(row, reason, removed=removed))
            if progress is not None:
                progress(len(removals), len(plan.removals))
        report = MaintenanceReport(policy.mode, len(rows), tuple(removals), shared, plan.unmet)
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
            return self._engine.delete_in(tx, sid, active_at=active_at)

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
        stored, agent = self._engine.key(route(inbound, config))
        now = inbound.at or self._clock.now()
        trigger = config.trigger(inbound.text)
        text = trigger[1] if trigger else inbound.text
        with self._backend.read() as tx:
            bound = self._engine.bound(tx, agent, stored)
            current = bound.session if bound is not None else None
        reason = decide(current, stored, inbound, config, now, triggered=trigger is not None)
        if reason is None and current is not None:
            return Resolution(current, stored, None, None, text, None)
        origin = origin_of(inbound)
        with self._backend.write() as tx:
            bound = self._engine.bound(tx, agent, stored, lock=True)
            latest = bound.session if bound is not None else None
            moved = latest is not None and (current is None or latest.id != current.id)
            if trigger is None and moved:
                # Another process started a session for this key meanwhile: decide again.
                reason = decide(latest, stored, inbound, config, now, triggered=False)
                if reason is None and latest is not None:
                    return Resolution(latest, stored, None, None, text, None)
            user = user_of(inbound, config)
            if latest is None:
                new = self._engine.new_session(agent, stored, origin=origin, now=now, user_id=user)
                theirs = self._engine.bind_new(tx, agent, stored, new)
                if theirs is None:
                    return Resolution(new, stored, "new", None, text, None)
                # Bound by another process meanwhile (a server database; SQLite
                # writers never overlap): theirs wins.
                return Resolution(theirs, stored, None, None, text, None)
            new = self._engine.reset_in(tx, agent, stored, origin=origin, now=now, user_id=user)
            assert bound is not None  # latest is bound's session
            previous = self._engine.by_sid(tx, bound.sid).session
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
        `highlight` markers. Pass the page's `next` (also `cursor`) back as
        `cursor=` for the page after it, its `previous` for the page before it.

        Every entry committed before the search starts is found, and a search
        only reads: it never waits for a writer. (SQLite adds new entries to its
        index a few hundred at a time; a search reads the few still waiting
        through an index of its own, in memory, and ranks them among
        themselves, so their rank against indexed entries is approximate.)

        Raises:
            SearchQueryError: for a malformed query (never an engine's error).
            InvalidInput: for a cursor that is not a search page's.
        """
        clauses = parse_query(query)
        limit = check_int(limit, "limit", minimum=1, maximum=MAX_SEARCH_PAGE)
        offset = read_search_cursor(cursor) if cursor is not None else 0
        if offset + limit > MAX_SEARCH_DEPTH:
            raise InvalidInput(f"search pages end at {MAX_SEARCH_DEPTH} hits", field="cursor")
        _check_markers(highlight)
        where = SearchFilter(
            agent_id=self._engine.agent_filter(agent_id),
            key_prefix=check_text(key_prefix, "key_prefix") if key_prefix is not None else None,
            roles=stored_forms(check_text(role, "role", max_length=64))
            if role is not None
            else None,
            session_id=check_text(session_id, "session_id", max_length=256)
            if session_id is not None
            else None,
            created_after=to_micros(after) if after is not None else None,
            created_before=to_micros(before) if before is not None else None,
        )
        with self._backend.read() as tx:
            rows = tx.search(clauses, where, limit=limit + 1, offset=offset, highlight=highlight)
        hits = tuple(rows[:limit])
        more = len(rows) > limit and offset + limit < MAX_SEARCH_DEPTH
        return SearchPage(
            hits,
            search_cursor(offset + limit) if more else None,
            previous=search_cursor(max(0, offset - limit)) if offset > 0 else None,
        )


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


def engine_of(store: SessionStore) -> Engine:
    """The engine under a store: the async store's appends and compactions, and the
    transfer functions' whole sessions, run on it."""
    return store._engine
