"""The engine under both store APIs: scope, appends, compaction, whole sessions.

`SessionStore` (sync) and `AsyncSessionStore` are the user's API; what they
share lives here, once:

- **the scope check**: a handle scoped to an agent sees and touches only that
  agent's sessions. Every session a method reads or writes is reached through
  `Engine.record`, `Engine.sid` or `Engine.bound` (by id, light, or through a
  key's binding), and every key through `Engine.key`: each checks the scope;
  filters (list, search, stats, retention) take `Engine.agent_filter`;
- **appends**: checked and serialized before any transaction
  (`prepare_append`), run in a transaction of their own (`run_append`) or in
  the caller's (`append_in`, for group commit and for the writes that append
  on the way), with one retry rule for generated entry ids that clash
  (`fresh_ids`);
- **compaction in two transactions** (`plan_compaction`, then the summariser
  outside any transaction, then `commit_compaction`);
- **whole sessions** (`write_session`, `stream_sessions`), for imports,
  restores and copies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar

import attrs

from aisopod_session._compaction import (
    CompactionPlan,
    CompactionResult,
    Strategy,
    check_still_valid,
    compaction_payload,
)
from aisopod_session._compaction import plan as plan_compaction
from aisopod_session._entries import NativeMessage, NewEntry, PreparedEntry, Stamp, prepare
from aisopod_session._errors import (
    AccessDenied,
    ConflictError,
    DuplicateEntryId,
    InvalidPayload,
    SessionExists,
    SessionNotFound,
    StoreBusy,
)
from aisopod_session._ids import new_entry_suffixes, new_session_id
from aisopod_session._model import SESSION_STATUSES, Entry, Origin, Session
from aisopod_session._paths import find_on_path, path_ranges
from aisopod_session._state import (
    SNAPSHOT_EVERY,
    StateDelta,
    apply_change,
    merged,
    prepare_delta,
)
from aisopod_session._tail import Decode, read_tail
from aisopod_session._validate import check_int, check_text, session_key
from aisopod_session.backends._sql import (
    AppendTarget,
    Backend,
    BoundSession,
    SessionRecord,
    SqlTx,
    StateEdit,
    StateOwner,
)
from aisopod_session.keys import normalize_agent_id
from aisopod_session.transfer._images import PAGE, EntryImage, SessionImage, SharedValue
from aisopod_shared import (
    Clock,
    InvalidInput,
    Message,
    TokenUsage,
    dumps,
    from_micros,
    loads,
    now_micros,
    to_micros,
)

__all__ = ["AppendRequest", "Engine"]

T = TypeVar("T")

ID_ATTEMPTS: Final = 3
"""How often an append is tried with fresh generated entry ids after a clash."""
_BIND_ATTEMPTS: Final = 8
_SNAPSHOT_CANDIDATES: Final = 16
"""State snapshots looked at for one on a path (newest first): more than branch
points a path typically crosses between two snapshots."""


class AppendRequest(NamedTuple):
    """One call to `append`, checked and serialized, ready to run in a transaction."""

    session_id: str
    entries: tuple[PreparedEntry, ...]
    idempotency_key: str | None
    expected_version: int | None
    now: int
    state: StateDelta | None = None
    """The state delta (its session part is the last of `entries`, a `state` entry)."""
    key: tuple[str, str] | None = None
    """(agent, stored key) of an append to a key's current session (made if it has none);
    `session_id` is empty until the append runs and finds it."""
    only_last: bool = False
    """Return only the last entry appended, for callers that need no more (the
    framework adapters): no `Entry` is built for the others."""


class SharedChange(NamedTuple):
    """A change to one `user:` or `agent:` row: its new JSON, or `None` to remove it."""

    table: str
    agent_id: str
    user_id: str | None
    key: str
    value: bytes | None


_TABLE_ORDER: Final = {"user_state": 0, "agent_state": 1}


def apply_shared(tx: SqlTx, changes: Iterable[SharedChange], now: int) -> None:
    """Apply changes to shared rows in one order (users' rows, then agents', each by
    owner and key), after the sessions of the transaction: every writer takes
    bindings, then sessions in id order, then shared rows in this order, so no two
    wait for each other in a circle."""
    for change in sorted(
        changes, key=lambda c: (_TABLE_ORDER[c.table], c.agent_id, c.user_id or "", c.key)
    ):
        tx.change_shared_state(
            change.table, change.agent_id, change.user_id, {change.key: change.value}, now
        )


class _Unbound(Exception):
    """An append to a key found the key bound to no session (nothing was written)."""


class GeneratedIdClash(Exception):
    """Two generated entry ids met; the append is tried again with fresh ids."""


@attrs.frozen
class Engine:
    """A database, a clock, a payload limit and a scope (an agent, or none)."""

    backend: Backend
    clock: Clock
    max_payload_bytes: int
    agent_id: str | None = None

    def scoped(self, agent_id: str) -> Engine:
        """The same engine for one agent (a scoped engine cannot widen its scope)."""
        agent = normalize_agent_id(check_text(agent_id, "agent_id", max_length=64))
        if self.agent_id is not None and agent != self.agent_id:
            raise AccessDenied(self.agent_id, f"agent:{agent}")
        return attrs.evolve(self, agent_id=agent)

    # --- the scope check ------------------------------------------------------------

    def key(self, key: object) -> tuple[str, str]:
        """A session key normalised (bare keys belong to the scope's agent, else
        `main`), with its agent; refused when it is another agent's."""
        stored, agent = session_key(key, self.agent_id)
        if self.agent_id is not None and agent != self.agent_id:
            raise AccessDenied(self.agent_id, stored)
        return stored, agent

    def agent_filter(self, agent_id: str | None) -> str | None:
        """The agent a filtered read (list, search, stats) covers: the one asked for,
        within the scope; a scoped handle's own agent when none is asked for."""
        if agent_id is None:
            return self.agent_id
        agent = normalize_agent_id(check_text(agent_id, "agent_id", max_length=64))
        if self.agent_id is not None and agent != self.agent_id:
            raise AccessDenied(self.agent_id, f"agent:{agent}")
        return agent

    def visible(self, session: Session) -> Session:
        """`session`, when this handle may see it."""
        if self.agent_id is not None and session.agent_id != self.agent_id:
            raise AccessDenied(self.agent_id, session.id)
        return session

    def record(self, tx: SqlTx, session_id: str, *, lock: bool = False) -> SessionRecord:
        """A session by id, in scope (locked for the transaction with `lock`)."""
        check_text(session_id, "session_id", max_length=256)
        record = tx.session_by_id(session_id, lock=lock)
        if record is None:
            raise SessionNotFound(session_id)
        self.visible(record.session)
        return record

    def sid(self, tx: SqlTx, session_id: str) -> int:
        """A session's internal id, checked for existence and scope (a light `record`)."""
        check_text(session_id, "session_id", max_length=256)
        ref = tx.session_ref(session_id)
        if ref is None:
            raise SessionNotFound(session_id)
        if self.agent_id is not None and ref.agent_id != self.agent_id:
            raise AccessDenied(self.agent_id, session_id)
        return ref.sid

    def by_sid(self, tx: SqlTx, sid: int, *, lock: bool = False) -> SessionRecord:
        """A session by internal id (one the transaction just reached), in scope."""
        record = tx.session_by_sid(sid, lock=lock)
        if record is None:  # pragma: no cover - callers hold a reference to the row
            raise SessionNotFound(f"#{sid}")
        self.visible(record.session)
        return record

    def bound(self, tx: SqlTx, agent: str, key: str, *, lock: bool = False) -> SessionRecord | None:
        """The session bound to a key (from `key`), in scope; `None` when unbound."""
        sid = tx.binding(agent, key, lock=lock)
        return self.by_sid(tx, sid, lock=lock) if sid is not None else None

    # --- transactions that append ---------------------------------------------------

    def fresh_ids(self, attempt: Callable[[bool], T]) -> T:
        """`attempt(fresh)`, again with fresh generated entry ids (`fresh=True`) should
        two generated ids ever clash: the one retry rule of every append."""
        for n in range(ID_ATTEMPTS):
            try:
                return attempt(n > 0)
            except GeneratedIdClash:
                continue
        raise DuplicateEntryId("could not generate unique entry ids", field="id")

    def write_appending(
        self,
        work: Callable[[SqlTx, bool], T],
        begin: Callable[[], AbstractContextManager[SqlTx]] | None = None,
    ) -> T:
        """Run `work(tx, fresh)` in a write transaction (from `begin`, by default the
        backend's `write`), under the id retry rule."""

        def attempt(fresh: bool) -> T:
            with (begin or self.backend.write)() as tx:
                return work(tx, fresh)

        return self.fresh_ids(attempt)

    # --- appends --------------------------------------------------------------------

    def prepare_append(
        self,
        session_id: str,
        entries: Message | NewEntry | NativeMessage | Iterable[Message | NewEntry | NativeMessage],
        *,
        idempotency_key: str | None = None,
        expected_version: int | None = None,
        state: Mapping[str, Any] | None = None,
        key: tuple[str, str] | None = None,
        only_last: bool = False,
    ) -> AppendRequest:
        """Check and serialize an append (and its state delta) before any transaction
        starts. With `key` (from `Engine.key`, as (stored key, agent)), the append goes
        to the key's current session, made if it has none, and `session_id` is ignored.
        With `only_last`, running it returns only the last entry appended."""
        if key is None:
            check_text(session_id, "session_id", max_length=256)
        if idempotency_key is not None:
            check_text(idempotency_key, "idempotency_key", max_length=256)
        if expected_version is not None:
            check_int(expected_version, "expected_version")
        stamp = Stamp.at(now_micros(self.clock))
        limit = self.max_payload_bytes
        given: object = entries
        prepared: tuple[PreparedEntry, ...]
        if isinstance(given, Message | NewEntry | NativeMessage):
            # One entry, the commonest append: no generator, nothing to compare ids with.
            prepared = (prepare(given, stamp, max_payload_bytes=limit),)
        elif isinstance(given, Iterable) and not isinstance(given, str | bytes | Mapping):
            prepared = tuple(prepare(item, stamp, max_payload_bytes=limit) for item in given)
            explicit = [p.id for p in prepared if p.id is not None]
            if len(explicit) != len(set(explicit)):
                raise DuplicateEntryId("two entries in one append share an id", field="id")
        else:
            raise InvalidPayload("append takes a Message, a NewEntry or a list of them")
        if any(p.type == "state" for p in prepared):
            raise InvalidInput(
                "state changes are appended with state=..., not as entries", field="type"
            )
        delta = None
        if state is not None:
            delta = prepare_delta(state, max_value_bytes=limit)
            # A session change is recorded by a state entry; so is a keyed change of
            # shared keys alone (an empty one), so that a retry finds its key.
            if delta is not None and (delta.session or (idempotency_key and not prepared)):
                prepared += (delta.session_entry(stamp, max_payload_bytes=limit),)
        return AppendRequest(
            "" if key is not None else session_id,
            prepared,
            idempotency_key,
            expected_version,
            stamp.micros,
            delta,
            (key[1], key[0]) if key is not None else None,
            only_last,
        )

    def run_append(self, request: AppendRequest) -> tuple[Entry, ...]:
        """Run a prepared append in a transaction of its own."""
        # Without an idempotency key to look up first or state to apply after, the
        # append is one `append_entries` call, which finds a key's session itself (on
        # PostgreSQL in its one statement; on SQLite with the session's row).
        single = request.idempotency_key is None and bool(request.entries) and request.state is None
        if single:
            try:
                return self.write_appending(
                    lambda tx, fresh: self.append_in(tx, request, fresh_ids=fresh, bound=True),
                    self.backend.write_append,
                )
            except _Unbound:
                # Nothing was written: the key's session is made, and the entries
                # appended to it, in a transaction.
                single = False
        return self.write_appending(
            lambda tx, fresh: self.append_in(tx, request, fresh_ids=fresh),
            self.backend.write_append if single else self.backend.write,
        )

    def append_in(
        self,
        tx: SqlTx,
        request: AppendRequest,
        *,
        fresh_ids: bool = False,
        shared: list[SharedChange] | None = None,
        bound: bool = False,
    ) -> tuple[Entry, ...]:
        """Run a prepared append inside the caller's write transaction (raising
        `GeneratedIdClash` for `fresh_ids` to handle). With `shared`, the changes to
        `user:` and `agent:` rows are put there, for the caller to apply after every
        session it locks (`apply_shared`). With `bound`, an append of entries alone
        to a key goes to the key's session only if it has one, found by
        `append_entries` itself (raising `_Unbound` when it has none)."""
        to_key = None
        if request.key is not None and not request.session_id:
            if bound:
                to_key = request.key
            else:
                request = request._replace(session_id=self.key_session(tx, *request.key))
        session_id = request.session_id
        if request.idempotency_key is not None:
            # Lock the session before looking: a retry racing the call it repeats
            # then waits for that call to commit, and finds its entries.
            target = tx.append_target(session_id)
            if target is None:
                raise SessionNotFound(session_id)
            self._check_target(target, request, version=False)
            done = tx.entries_by_idempotency_key(session_id, request.idempotency_key)
            if done:
                return tuple(done)
        entries = request.entries
        if not entries:
            target = tx.append_target(session_id)
            if target is None:
                raise SessionNotFound(session_id)
            self._check_target(target, request)
            if request.state is not None:
                self._apply_state(tx, target.sid, request.state, None, request.now, shared, None)
            return ()
        delta = request.state
        edit = None
        if delta is not None and delta.session:
            edit = StateEdit(
                {key: c.json for key, c in delta.session.items() if c is not None},
                [key for key, c in delta.session.items() if c is None],
            )
        try:
            appended = tx.append_entries(
                session_id,
                entries,
                suffixes=new_entry_suffixes(len(entries)),
                agent_id=self.agent_id,
                expected_version=request.expected_version,
                idempotency_key=request.idempotency_key,
                now=request.now,
                state=edit,
                key=to_key,
            )
        except DuplicateEntryId:
            if all(p.id is not None for p in entries) or fresh_ids:
                raise
            raise GeneratedIdClash from None
        if appended is None:
            if to_key is not None:
                raise _Unbound
            raise SessionNotFound(session_id)
        if to_key is not None:  # the session is the one the statement found
            session_id = appended.session_id
            request = request._replace(session_id=session_id)
        # Raising from here rolls back whatever was appended, with the transaction;
        # an append sent as one statement wrote nothing when these checks fail.
        self._check_target(appended.target, request)
        first = appended.target.entry_count + 1
        if delta is not None:
            last = first + len(entries) - 1  # the state entry, when there is one
            self._apply_state(
                tx, appended.target.sid, delta, last, request.now, shared, appended.owner
            )
        ids, parents = appended.ids, appended.parents
        created = from_micros(request.now)
        key = request.idempotency_key
        skipped = len(entries) - 1 if request.only_last else 0
        # Positional, in Entry's field order: a third cheaper than keywords.
        return tuple(
            Entry(
                session_id,
                first + offset,
                ids[offset],
                parents[offset],
                entry.type,
                entry.role,
                entry.payload_data if entry.payload_data is not None else loads(entry.payload),
                entry.text,
                entry.usage,
                created,
                key,
                entry.tokens,
            )
            for offset, entry in enumerate(entries[skipped:], skipped)
        )

    def find_key_session(self, tx: SqlTx, request: AppendRequest) -> AppendRequest:
        """`request`, aimed at its key's session when the key has one (else as it is)."""
        if request.key is None or request.session_id:
            return request
        found = self.bound_session(tx, *request.key)
        return request._replace(session_id=found.id) if found is not None else request

    def key_session(self, tx: SqlTx, agent: str, key: str) -> str:
        """The id of the key's current session, made and bound if it has none."""
        found = self.bound_session(tx, agent, key)
        if found is not None:
            return found.id
        new = self.new_session(agent, key)
        theirs = self.bind_new(tx, agent, key, new)
        return (theirs or new).id

    def bound_session(self, tx: SqlTx, agent: str, key: str) -> BoundSession | None:
        """What reads of a key's conversation need of its session (in scope), found
        with the binding in one statement; `None` when the key is unbound."""
        found = tx.bound_session(agent, key)
        if found is not None:
            self._check_bound(found)
        return found

    def _check_bound(self, found: BoundSession) -> None:
        """The scope check of a session reached through a key's binding."""
        if self.agent_id is not None and found.agent_id != self.agent_id:
            raise AccessDenied(self.agent_id, found.id)

    def entries_since_compaction(self, session_id: str, leaf: int) -> int:
        """How many entries lie after the session's latest compaction at or before
        `leaf` (after its start, without one): the adapters' compaction trigger."""
        with self.backend.read_statement() as tx:
            latest = tx.compactions_before(self.sid(tx, session_id), leaf, 1)
        return leaf - (latest[0] if latest else 0)

    def read_key_tail(
        self, agent: str, key: str, limit: int | None, decode: Decode[T], *, keep_pairs: bool
    ) -> list[T]:
        """The last `limit` items of the key's conversation (`_tail.read_tail`)."""
        with self.backend.read_statement() as tx:
            found = self.bound_session(tx, agent, key)
            if found is None:
                return []
            return read_tail(tx, found, limit, decode, keep_pairs=keep_pairs)

    def _check_target(
        self, target: AppendTarget, request: AppendRequest, *, version: bool = True
    ) -> None:
        """The scope check and the version check of an append, on the locked row."""
        if self.agent_id is not None and target.agent_id != self.agent_id:
            raise AccessDenied(self.agent_id, request.session_id)
        expected = request.expected_version
        if version and expected is not None and expected != target.version:
            raise ConflictError(request.session_id, expected, target.version)

    # --- state ---------------------------------------------------------------------

    def _apply_state(
        self,
        tx: SqlTx,
        sid: int,
        delta: StateDelta,
        state_seq: int | None,
        now: int,
        shared: list[SharedChange] | None,
        edited: StateOwner | None,
    ) -> None:
        """Apply a delta in the append's transaction: the session part (recorded by
        the `state` entry at `state_seq`, edited by the append itself: `edited`)
        with a snapshot every `SNAPSHOT_EVERY` changes; the shared parts to their
        rows, or, given `shared`, into it for the caller to apply once its sessions
        are done."""
        if delta.session:
            assert state_seq is not None
            assert edited is not None  # the append edited the kept state
            owner = edited
            if owner.since_snapshot >= SNAPSHOT_EVERY:
                data = dumps(tx.session_state(sid).state, field="state")
                tx.add_state_snapshot(sid, state_seq, data)
                tx.set_session_state(sid, data, 0)
        else:
            owner = tx.state_owner(sid)
        if delta.user and owner.user_id is None:
            raise InvalidInput(
                "user: keys belong to the session's user, and this session has none"
                " (give user_id when it is made, or patch it)",
                field="state",
            )
        changes = [
            SharedChange(table, owner.agent_id, user, key, c.json if c is not None else None)
            for table, scope, user in (
                ("user_state", delta.user, owner.user_id),
                ("agent_state", delta.agent, None),
            )
            for key, c in scope.items()
        ]
        if shared is not None:
            shared.extend(changes)  # the caller applies them last (see apply_shared)
        elif changes:
            apply_shared(tx, changes, now)

    def state_at(self, tx: SqlTx, sid: int, seq: int) -> tuple[dict[str, Any], int]:
        """The session state at entry `seq` (0: before the first), and how many
        changes were folded onto the nearest snapshot on its path to make it."""
        if seq <= 0:
            return {}, 0
        candidates = tx.state_snapshots_before(sid, seq, _SNAPSHOT_CANDIDATES)
        snapshot = find_on_path(tx, sid, seq, candidates) if candidates else None
        state = tx.state_snapshot(sid, snapshot) if snapshot is not None else {}
        after = snapshot or 0
        folded = 0
        for start, end in path_ranges(tx, sid, seq, first=max(after, 1)):
            if max(start, after + 1) <= end:
                for _, payload in tx.state_changes_between(sid, max(start, after + 1), end):
                    apply_change(state, payload)
                    folded += 1
        return state, folded

    def move_state_to(self, tx: SqlTx, sid: int, leaf: int) -> None:
        """Keep the state at `leaf` as the session's (after its leaf moved)."""
        state, since = self.state_at(tx, sid, leaf)
        tx.set_session_state(sid, dumps(state, field="state"), since)

    def rebuild_state(self, tx: SqlTx, sid: int, leaf: int) -> None:
        """Fold every state change on the path to `leaf`, snapshotting on the way (a
        session just written whole: a fork, an import, a copy)."""
        state: dict[str, Any] = {}
        since = 0
        for start, end in path_ranges(tx, sid, leaf) if leaf > 0 else []:
            for seq, payload in tx.state_changes_between(sid, start, end):
                apply_change(state, payload)
                since += 1
                if since >= SNAPSHOT_EVERY:
                    tx.add_state_snapshot(sid, seq, dumps(state, field="state"))
                    since = 0
        tx.set_session_state(sid, dumps(state, field="state"), since)

    def shared_state(self, tx: SqlTx, agent_id: str, user_id: str | None) -> dict[str, Any]:
        """The `agent:` state of an agent and, given a user, that user's `user:` state,
        each key with its prefix."""
        scopes = [("agent:", tx.shared_state("agent_state", agent_id, None))]
        if user_id is not None:
            scopes.insert(0, ("user:", tx.shared_state("user_state", agent_id, user_id)))
        return merged(scopes)

    def stream_shared_state(self, *, page: int = 500) -> Iterator[SharedValue]:
        """Every `user:` and `agent:` value in scope, a page at a time."""
        for table, scope in (("user_state", "user"), ("agent_state", "agent")):
            after: tuple[str, ...] = ()
            while True:
                with self.backend.read() as tx:
                    rows = tx.shared_state_page(table, self.agent_id, after, page)
                for row in rows:
                    if scope == "user":
                        yield SharedValue("user", row[0], row[1], row[2], row[3])
                    else:
                        yield SharedValue("agent", row[0], None, row[1], row[2])
                if len(rows) < page:
                    break
                after = tuple(row[:-1])

    def write_shared_state(self, values: Iterable[SharedValue]) -> int:
        """Set `user:` and `agent:` values (a restore, a copy), a page at a time, each
        page in a transaction; how many were written.

        Raises:
            AccessDenied: for a value of another agent than this handle's.
            InvalidInput: for a value a state delta could not have set (nothing of
                its page is written).
        """
        count = 0
        batch: list[tuple[SharedValue, bytes]] = []

        def flush() -> None:
            now = now_micros(self.clock)
            with self.backend.write() as tx:
                for value, data in batch:
                    table = "user_state" if value.scope == "user" else "agent_state"
                    tx.change_shared_state(
                        table, value.agent_id, value.user_id, {value.key: data}, now
                    )
            batch.clear()

        for value in values:
            batch.append((value, self._check_shared(value)))
            count += 1
            if len(batch) >= PAGE:
                flush()
        if batch:
            flush()
        return count

    def _check_shared(self, value: SharedValue) -> bytes:
        """Check a shared value as a state delta would have; return its JSON."""
        given: object = value
        if not isinstance(given, SharedValue) or value.scope not in ("user", "agent"):
            raise InvalidInput("must be SharedValue values of scope user or agent", field="state")
        check_text(value.agent_id, "agent_id", max_length=64)
        if value.agent_id != normalize_agent_id(value.agent_id):
            raise InvalidInput("must be a normalised agent id", field="agent_id")
        if self.agent_id is not None and value.agent_id != self.agent_id:
            raise AccessDenied(self.agent_id, f"agent:{value.agent_id}")
        if value.scope == "user":
            check_text(value.user_id, "user_id", max_length=256)
        elif value.user_id is not None:
            raise InvalidInput("agent: state belongs to no user", field="user_id")
        key: object = value.key
        if not isinstance(key, str) or not key:
            raise InvalidInput(f"state keys are non-empty strings, not {key!r}", field="state")
        field = f"state.{value.scope}:{value.key}"
        data = dumps(value.value, field=field)
        if len(data) > self.max_payload_bytes:
            raise InvalidInput(
                f"the value is {len(data)} bytes, over the limit of {self.max_payload_bytes}",
                field=field,
            )
        return data

    def leaf_state(self, session_id: str) -> dict[str, Any]:
        """A session's own state (its keys, without the shared scopes) at its leaf."""
        with self.backend.read() as tx:
            return tx.session_state(self.sid(tx, session_id)).state

    # --- compaction -----------------------------------------------------------------

    def plan_compaction(self, session_id: str, strategy: Strategy) -> CompactionPlan | None:
        """Decide what a compaction would summarise (a read transaction); `None` for
        nothing."""
        with self.backend.read() as tx:
            record = self.record(tx, session_id)
            return plan_compaction(tx, record.sid, record.session, strategy)

    def commit_compaction(self, plan: CompactionPlan, summary: str) -> CompactionResult:
        """Append the compaction entry of `plan` with `summary` (a write transaction)."""
        entry = NewEntry("compaction", compaction_payload(plan, summary))
        request = self.prepare_append(plan.session_id, entry)

        def work(tx: SqlTx, fresh: bool) -> CompactionResult:
            record = self.record(tx, plan.session_id, lock=True)
            check_still_valid(tx, record.sid, record.session, plan)
            appended = self.append_in(tx, request, fresh_ids=fresh)
            session = self.by_sid(tx, record.sid).session
            return CompactionResult(
                session, appended[0], plan.first_kept.seq, len(plan.dropped), plan.tokens_before
            )

        return self.write_appending(work)

    # --- sessions and keys ----------------------------------------------------------

    def new_session(
        self,
        agent_id: str,
        key: str | None,
        *,
        origin: Origin | None = None,
        title: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        fork_parent: Any = None,
        now: datetime | None = None,
        user_id: str | None = None,
    ) -> Session:
        """A session value for `insert_session`, its fields checked."""
        if origin is not None and not isinstance(origin, Origin):
            raise InvalidInput("must be an Origin", field="origin")
        if title is not None:
            check_text(title, "title")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidInput("must be a JSON object", field="metadata")
        meta = dict(metadata or {})
        dumps(meta, field="metadata")
        if user_id is not None:
            check_text(user_id, "user_id", max_length=256)
        when = now or self.clock.now()
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
            user_id=user_id,
        )

    def bind_new(self, tx: SqlTx, agent: str, key: str, new: Session) -> Session | None:
        """Make `new` the key's session unless it has one: `None` when `new` was bound,
        else the session that holds the key (and `new` is not kept).

        On a server database another process may bind the key between our look
        and our insert, and a third may delete that session again before we
        look once more; each turn of the loop settles one such race.
        """
        new_sid: int | None = None
        for _ in range(_BIND_ATTEMPTS):
            found = self.bound(tx, agent, key, lock=True)
            if found is not None:
                if new_sid is not None:
                    tx.delete_session(new_sid)
                return found.session
            if new_sid is None:
                new_sid = tx.insert_session(new)
            if tx.bind_if_unbound(agent, key, new_sid, to_micros(new.created_at)):
                return None
        raise StoreBusy(f"could not bind {key!r}: other writers kept changing it")

    def reset_in(
        self,
        tx: SqlTx,
        agent: str,
        key: str,
        *,
        origin: Origin | None,
        now: datetime,
        user_id: str | None = None,
    ) -> Session:
        """Start a new current session for the key, archiving the one it had (whose
        origin and user it keeps, unless given)."""
        old = self.bound(tx, agent, key, lock=True)
        if origin is None and old is not None:
            origin = old.session.origin
        user = user_id if user_id is not None or old is None else old.session.user_id
        new = self.new_session(agent, key, origin=origin, now=now, user_id=user)
        new_sid = tx.insert_session(new)
        if old is None and tx.bind_if_unbound(agent, key, new_sid, to_micros(now)):
            return new
        # The key had a session (or another process bound it meanwhile): ours replaces it.
        self.rebind(tx, agent, key, new_sid, now)
        return new

    def rebind(self, tx: SqlTx, agent: str, key: str, sid: int, now: datetime) -> None:
        """Make `sid` the key's current session; the one it replaces is archived."""
        old = tx.binding(agent, key, lock=True)
        tx.rebind(agent, key, sid, to_micros(now))
        if old is not None and old != sid:
            tx.update_session(old, now=to_micros(now), status="archived")

    def delete_in(self, tx: SqlTx, sid: int, *, active_at: int | None = None) -> bool:
        """Delete a session, its entries and its binding; with `active_at`, only if it has
        seen no activity since then. Locks its binding, then the session: every write
        takes bindings before sessions, so two writers never wait on each other in a circle.
        """
        tx.lock_bindings_of(sid)
        record = tx.session_by_sid(sid, lock=True)
        if record is None:
            return False
        self.visible(record.session)
        if active_at is not None and to_micros(record.session.active_at) != active_at:
            return False
        tx.delete_session(sid)
        return True

    # --- whole sessions: imports, restores, copies ----------------------------------

    def stream_sessions(self, *, page: int = 200) -> Iterator[tuple[Session, bool]]:
        """Every session in scope in the order they were stored, with whether it is
        its key's current session; read a page at a time."""
        after = 0
        while True:
            with self.backend.read() as tx:
                records = tx.sessions_after(after, page, self.agent_id)
                found = [(self.visible(r.session), tx.is_bound(r.sid)) for r in records]
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
        now = self.clock.now()
        with self.backend.write() as tx:
            if image.current and image.key is not None:
                tx.binding(image.agent_id, image.key, lock=True)  # bindings before sessions
            existing = tx.session_by_id(image.id)
            if existing is not None:
                if not replace:
                    raise SessionExists(image.id)
                self.visible(existing.session)
                self.delete_in(tx, existing.sid)
            session = self.new_session(
                image.agent_id,
                image.key,
                origin=image.origin,
                title=image.title,
                metadata=image.metadata,
                fork_parent=image.fork_parent,
                now=image.created_at,
                user_id=image.user_id,
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
            self.rebuild_state(tx, sid, image.leaf_seq)
            if image.current and image.key is not None:
                self.rebind(tx, image.agent_id, image.key, sid, now)
            return self.by_sid(tx, sid).session

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
        if self.agent_id is not None and image.agent_id != self.agent_id:
            raise AccessDenied(self.agent_id, image.id)

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
                max_payload_bytes=self.max_payload_bytes,
                verbatim=True,
            )
            batch.append((prepared, image))
            if len(batch) >= PAGE:
                flush()
        flush()
        return count
