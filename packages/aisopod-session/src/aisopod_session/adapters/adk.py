"""Google ADK's session service (`BaseSessionService`) on an aisopod store.

```python
from google.adk.runners import Runner
from aisopod_session.adapters.adk import AisopodSessionService

runner = Runner(agent=agent, app_name="support", session_service=AisopodSessionService())
```

How ADK's sessions map onto the store (and back, for every read):

- ADK's `app_name` is an agent (it must already be a valid agent id: lowercase
  letters, digits, `_` and `-`, so that the mapping is reversible); its
  `user_id` is the session's `user_id`; its session id is a session key of
  that agent, `agent:<app>:<user>:<session id>`, each id with `%`, `:`,
  whitespace, characters that do not print and those lowercasing would change
  written as `%` and the lowercase hex of their UTF-8 bytes (`User-1` ->
  `%55ser-1`). A deleted session's key can be used again.
- State: ADK's `app:` keys are the agent's `agent:` state, `user:` keys the
  user's `user:` state, `temp:` keys are never stored, and unprefixed keys
  are the session's (a session key that would read as another scope, such as
  `owner:key`, is kept with its first `:` written `%3a`, and `%` as `%25`).
  A value replaces the old one; `None` is stored.
- Events: each event is stored verbatim (its JSON, as ADK's own services
  store it: bytes as base64; every field comes back equal) in one entry. An
  event with text or tool calls is a native message (`user` for the user's
  content, else `assistant`; thoughts as thinking, function calls as tool
  calls, with the event's token usage); one holding function responses is a
  tool result per response (the event is kept in the first); any other event
  (state changes, transfers, ...) is a `custom` entry. So `context()`, search,
  the command line and export see ADK conversations, and tool calls keep
  their results.
- Time: an event's `timestamp` is the time of its append in the store (its
  entries' `created_at`, the session's `updated_at` and `active_at`, to the
  microsecond), so ADK's `last_update_time` is the session's `updated_at`:
  the last appended event's timestamp, or the creation time. An event's
  timestamp must lie between 1970 and 9999. Retention sees an ADK session
  as active when its last event says it was.
- Versions: ADK's storage update marker of a session is its id in the store
  and its `version`. An append is made only at that version, so a second
  writer holding a stale session gets ADK's `StaleSessionError` and writes
  nothing, with no timestamp rounding that could make a current session look
  stale; a session object without a marker (built by hand) is checked
  against `last_update_time` instead, and, as ADK's services do, refused
  only when the stored session has moved past its events (its last event
  is not the one the object ends with).
- Reads: `get_session` is the store's tail read of the key's conversation
  (the session row, its state and the last events, each event rebuilt from
  its stored JSON without validating it again). The service keeps the events
  of the sessions it read last (2,000 events in all): a session read again
  still reads its rows, and each event it read before, its stored JSON the
  same, is a deep copy of the one made then, in half the time.
  `list_sessions` reads only the session rows of the app (of one user,
  through the user index) and their `app:` and `user:` state. On a SQLite
  file, listings, user state and `get_session` with `num_recent_events` up
  to 100 are read on the calling thread (the async store's `read_small` and
  `read_rows`), through a read-only connection that never waits: where
  SQLite would wait for a lock it says so at once and the read goes to a
  worker thread, as every other read does (and every read on PostgreSQL).
  Appends go through the store's group committer, like every adapter's.

Deliberate differences from ADK's SQL services (and ADK's own contract tests
that fail because of them):

- `app_name` must be an agent id as it is (see above); ADK accepts any string.
- Events come back in the order they were appended, not sorted by their
  `timestamp` and then their id (`test_get_session_orders_tied_timestamps_by_id`:
  events with one timestamp, appended in reverse id order, come back in that
  order). `GetSessionConfig.after_timestamp` keeps the events whose timestamp
  is at or after it, and `num_recent_events` the last of those appended. The
  order of a conversation is the order it happened in; sorting by a
  timestamp the caller sets would reorder it.
- A state value that is no JSON data at all (a function, say) is stored as the
  text ADK's event serializer writes for it when it comes in an event's
  `state_delta`, as ADK's services do; in `create_session(state=...)` it is
  refused with `InvalidPayload` (ADK's services store its text).
- A session compacted through the store (`compact`) shows ADK the summary's
  window: the events before the compaction are not in `get_session`.
- Events that other writers appended (another framework's messages) are not
  ADK events and are left out of `get_session`; they stay in the store.

ADK's conformance tests (`tests/unittests/sessions/test_session_service.py` in
google/adk-python, their code, run outside this repository) pass on SQLite
and PostgreSQL but for the one above; `tests/adapters/test_adk.py` says how
to run them.

Requires the `adk` extra: `pip install 'aisopod-session[adk]'`.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import unquote

try:
    from google.adk.errors import StaleSessionError
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.events.event import Event
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session as AdkSession
except ImportError as _err:  # pragma: no cover - exercised in a test that hides ADK
    raise ImportError(
        "aisopod_session.adapters.adk needs Google ADK: pip install 'aisopod-session[adk]'",
        name=_err.name,
    ) from _err

import orjson
from pydantic_core import to_jsonable_python

from aisopod_session._async import in_worker, read_rows, read_small, submit_append
from aisopod_session._engine import Engine
from aisopod_session._entries import NewEntry
from aisopod_session._errors import (
    ConflictError,
    InvalidPayload,
    SessionNotFound,
    StoreUnavailable,
)
from aisopod_session._store import engine_of
from aisopod_session._tail import Decode, Memo, read_tail
from aisopod_session.adapters._adk_reads import listed_rows, session_row, shared_rows
from aisopod_session.adapters._common import (
    StoreHandle,
    StoreLike,
    keep,
    restore,
    searchable,
    storable,
)
from aisopod_session.adapters._pydantic_rebuild import construct, copies_of, rebuild
from aisopod_session.backends._sql import SqlTx
from aisopod_session.keys import normalize_agent_id
from aisopod_shared import InvalidInput, Message, TextPart, ThinkingPart, TokenUsage, ToolCallPart

__all__ = ["EVENT_KEY", "AisopodSessionService", "adk_key"]

T = TypeVar("T")

EVENT_KEY: Final = "adkEvent"
"""Where an entry keeps its event: a key of the message, or the `customType` of a
`custom` entry (whose `data` is the event)."""

_PART_KEY: Final = "adkPart"
"""Marks the tool results after the first of an event with several function
responses (the event itself is in the first)."""

_APP: Final = "app:"
_USER: Final = "user:"
_TEMP: Final = "temp:"
_AGENT: Final = "agent:"
_STALE: Final = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)
# A session key of ADK's that the store would read as a scope (`owner:key`).
_SCOPED = re.compile(r"^[A-Za-z_]+:")


class AisopodSessionService(BaseSessionService):
    """A Google ADK session service that keeps sessions in an aisopod store.

    Args:
        store: a `SessionStore`, an `AsyncSessionStore`, a store URL or file
            path, or `None` for the default store (`$AISOPOD_SESSION_DB`, else
            `~/.aisopod/sessions.db`). A URL's store is shared by every adapter
            on it in the process; `close()` lets go of it. A store handed in is
            never closed here.
        agent_id: serve only this app (agent): any other `app_name` is refused.
            By default, the agent the store handle is scoped to, else any.

    Every read is one call on the store's worker threads, but for the small ones
    SQLite can answer at once (see the module docstring), and every append goes to
    its group committer: the event loop never waits on the database. See the
    module docstring for the mapping and the deliberate differences from ADK's
    own services.
    """

    def __init__(self, store: StoreLike = None, *, agent_id: str | None = None) -> None:
        if agent_id is not None and not isinstance(agent_id, str):
            raise InvalidInput(f"must be a string, got {type(agent_id).__name__}", field="agent_id")
        self._handle = StoreHandle(store)
        agent = agent_id if agent_id is not None else self._handle.sync.agent_id
        self._only = normalize_agent_id(agent) if agent is not None else None
        self._closed = False
        self._memos = _Memos(_MEMO_EVENTS)

    def __repr__(self) -> str:
        return f"AisopodSessionService({self._handle!r})"

    async def __aenter__(self) -> AisopodSessionService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Let go of a store given as a URL (or the default); later calls raise
        `StoreUnavailable`."""
        self._closed = True
        self._memos.clear()
        self._handle.close()

    # --- the service --------------------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> AdkSession:
        """A new, empty session (its id stripped of whitespace; a new one when none).

        Raises:
            AlreadyExistsError: when the user has a session with this id in the app.
        """
        given = _session_id(session_id) if session_id is not None else ""
        where = self._where(app_name, user_id, given or str(uuid.uuid4()))
        delta = _store_delta(state or {}, "state")
        return await self._run(lambda engine: _create(engine, where, delta))

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> AdkSession | None:
        """The session with its state and events (`config` limits them), or `None`."""
        where = self._where(app_name, user_id, _session_id(session_id))
        if config is not None and not isinstance(config, GetSessionConfig):
            raise InvalidInput("must be a GetSessionConfig", field="config")
        limit = config.num_recent_events if config is not None else None
        after = config.after_timestamp if config is not None else None
        # A window of a few events is a small read; a whole session can be thousands
        # of rows: a worker thread's.
        memos = self._memos
        return await read_small(
            self._handle.async_store,
            limit,
            lambda engine: _get(engine, where, limit, after, memos),
        )

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The app's sessions (one user's, or every user's), with their state and without
        events, least recently updated first."""
        where = self._where(app_name, user_id if user_id is not None else "-", "-")
        user = where.user if user_id is not None else None
        sessions = await self._read(lambda engine: _list(engine, where, user))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events (nothing happens when there is none)."""
        where = self._where(app_name, user_id, _session_id(session_id))
        await self._run(lambda engine: _delete(engine, where))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The user's `user:` state in the app, keys without the prefix."""
        where = self._where(app_name, user_id, "-")
        state = await self._read(lambda engine: _user_state(engine, where))
        return state

    async def append_event(self, session: AdkSession, event: Event) -> Event:
        """Store the event (a partial one is not stored) and its state delta in one
        transaction, and add both to `session`.

        Raises:
            StaleSessionError: when the session changed in the store since `session`
                was read; nothing is written.
            SessionNotFoundError: when the session is not in the store (deleted).
            InvalidPayload, PayloadTooLarge: for an event the store cannot keep.
        """
        if not isinstance(session, AdkSession):
            raise InvalidInput(
                f"must be an ADK Session, got {type(session).__name__}", field="session"
            )
        if not isinstance(event, Event):
            raise InvalidPayload(f"must be an ADK Event, got {type(event).__name__}", field="event")
        if event.partial:
            return event
        where = self._where(session.app_name, session.user_id, _session_id(session.id))
        data = _event_data(event)
        entries = _entries_of(event, data)
        delta = _event_delta(event, data)
        now = _micros(event.timestamp)
        target = _read_marker(session._storage_update_marker)
        if target is None:
            seen = session.last_update_time
            last = session.events[-1].id if session.events else None
            target = await self._read(lambda engine: _current(engine, where, seen, last))
        session_id, version = target
        store = self._handle.async_store
        request = engine_of(store.sync).prepare_append(
            session_id, entries, state=delta, expected_version=version
        )
        try:
            # The event's time is the append's: the session's `updated_at`, ADK's
            # `last_update_time`, is the last event's timestamp, as ADK has it.
            await submit_append(store, request._replace(now=now))
        except ConflictError as err:
            raise StaleSessionError(_STALE) from err
        except SessionNotFound as err:
            raise SessionNotFoundError(f"Session {where.session_id} not found.") from err
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        session.last_update_time = _seconds(now)
        session._storage_update_marker = _marker(session_id, version + 1)
        return self._commit_event_to_session(session, event)

    # --- helpers ------------------------------------------------------------------------

    def _where(self, app_name: object, user_id: object, session_id: str) -> _Where:
        if self._closed:
            raise StoreUnavailable("AisopodSessionService is closed")
        if (
            not isinstance(app_name, str)
            or not app_name
            or normalize_agent_id(app_name) != app_name
        ):
            raise InvalidInput(
                f"{app_name!r}: an app name is an agent id (lowercase letters, digits, _ and -)",
                field="app_name",
            )
        if self._only is not None and app_name != self._only:
            raise InvalidInput(
                f"{app_name!r}: this service serves the app {self._only!r} only", field="app_name"
            )
        if not isinstance(user_id, str) or not user_id.strip():
            raise InvalidInput("a user id is a non-empty string", field="user_id")
        return _Where(app_name, user_id, session_id)

    async def _run(self, work: Callable[[Engine], T]) -> T:
        return await in_worker(self._handle.async_store, work)

    async def _read(self, work: Callable[[Engine], T]) -> T:
        """A read of a few rows: on this thread when SQLite can answer without waiting,
        else on a worker thread (`read_rows`)."""
        return await read_rows(self._handle.async_store, work)


class _Where:
    """An ADK session's address, and its key in the store."""

    __slots__ = ("app", "key", "session_id", "user")

    def __init__(self, app: str, user: str, session_id: str, *, key: str | None = None) -> None:
        self.app = app
        self.user = user
        self.session_id = session_id
        self.key = adk_key(app, user, session_id) if key is None else key


def adk_key(app_name: str, user_id: str, session_id: str) -> str:
    """The session key of an ADK session (see the module docstring)."""
    return f"agent:{app_name}:{_escape(user_id)}:{_escape(session_id)}"


def _escape(text: str) -> str:
    # Most ids need nothing escaped, which these checks of the whole text tell at once:
    # printable leaves out every space but " " (the others are separators or controls).
    if (
        "%" not in text
        and ":" not in text
        and " " not in text
        and text.isprintable()
        and text.lower() == text
    ):
        return text
    return "".join(
        c if c not in "%:" and c.isprintable() and not c.isspace() and c.lower() == c else _hex(c)
        for c in text
    )


def _hex(c: str) -> str:
    return "".join(f"%{b:02x}" for b in c.encode("utf-8", "surrogatepass"))


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogatepass") if "%" in text else text


def _session_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("a session id is a non-empty string", field="session_id")
    return value.strip()


# --- state ------------------------------------------------------------------------------


def _store_delta(
    state: object, field: str, written: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """ADK's state (or delta) as the store's delta: `app:` -> `agent:`, `temp:` dropped,
    session keys that would read as a scope escaped; values as ADK makes them JSON.
    A value that is no JSON data at all is refused, unless `written` (the delta as the
    event's JSON has it) holds what ADK wrote for it."""
    if not isinstance(state, Mapping):
        raise InvalidInput("must be a dict", field=field)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise InvalidInput(f"state keys are strings, not {key!r}", field=field)
        if key.startswith(_TEMP):
            continue
        if key.startswith(_APP):
            name = _AGENT + key[len(_APP) :]
        elif key.startswith(_USER):
            name = key
        elif "%" in key or _SCOPED.match(key):
            name = key.replace("%", "%25").replace(":", "%3a", 1)
        else:
            name = key
        try:
            out[name] = to_jsonable_python(value)
        except Exception as err:
            if written is not None and key in written:
                out[name] = written[key]  # ADK's own text for it, as its services keep
                continue
            raise InvalidPayload(f"{key!r}: not JSON data ({err})", field=field) from err
    return out or None


def _event_data(event: Event) -> dict[str, Any]:
    """The event as ADK's services store it (JSON data, values ADK cannot encode written
    as their text), without its `temp:` state, which is never stored."""
    try:
        data: dict[str, Any] = orjson.loads(event.model_dump_json(exclude_none=True))
    except (ValueError, TypeError) as err:
        raise InvalidPayload(f"the event is not JSON data: {err}", field="event") from err
    actions = data.get("actions")
    delta = actions.get("state_delta") if isinstance(actions, dict) else None
    if isinstance(actions, dict) and isinstance(delta, dict) and any(map(_is_temp, delta)):
        actions["state_delta"] = {k: v for k, v in delta.items() if not k.startswith(_TEMP)}
    return data


def _is_temp(key: str) -> bool:
    return key.startswith(_TEMP)


def _event_delta(event: Event, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The store's state delta of an event whose data (`_event_data`) is `data`."""
    if not event.actions.state_delta:
        return None
    actions = data.get("actions")
    written = actions.get("state_delta") if isinstance(actions, Mapping) else None
    return _store_delta(
        event.actions.state_delta,
        "event.actions.state_delta",
        written if isinstance(written, Mapping) else None,
    )


def _adk_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The store's state of a session (own keys, then prefixed shared ones) as ADK's."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith(_AGENT):
            out[_APP + key[len(_AGENT) :]] = value
        elif key.startswith(_USER):
            out[key] = value
        elif "%" in key:
            out[_unescape(key)] = value
        else:
            out[key] = value
    return out


# --- events -----------------------------------------------------------------------------


def _entries_of(event: Event, data: dict[str, Any]) -> list[Message | NewEntry]:
    """The entries that keep an event, given as its data (`_event_data`); see the module
    docstring."""
    kept = keep(data, EVENT_KEY)
    content = event.content
    parts = content.parts if content is not None and content.parts else []
    stamp = int(event.timestamp * 1000) if event.timestamp >= 0 else None
    responses = [p.function_response for p in parts if p.function_response is not None]
    if responses:
        entries: list[Message | NewEntry] = []
        for index, response in enumerate(responses):
            extra = kept if index == 0 else {_PART_KEY: index}
            entries.append(
                Message.tool_result(
                    searchable(response.id or response.name or ""),
                    _result_text(response.response),
                    tool_name=searchable(response.name) if response.name else None,
                    timestamp=stamp,
                    extra=extra,
                )
            )
        return entries
    native: list[TextPart | ThinkingPart | ToolCallPart] = []
    for part in parts:
        if part.text:
            text = searchable(part.text)
            native.append(ThinkingPart(text) if part.thought else TextPart(text))
        elif part.function_call is not None:
            call = part.function_call
            args = call.args if isinstance(call.args, dict) and storable(call.args) else {}
            native.append(
                ToolCallPart(
                    searchable(call.id or call.name or ""), searchable(call.name or ""), args
                )
            )
    if not native:
        return [NewEntry("custom", {"customType": EVENT_KEY, **keep(data, "data")})]
    role = "user" if (content is not None and content.role == "user") else "assistant"
    return [Message(role, tuple(native), usage=_usage(event), timestamp=stamp, extra=kept)]


def _result_text(response: object) -> str:
    if response is None:
        return ""
    if isinstance(response, Mapping) and set(response) == {"result"}:
        response = response["result"]
    if isinstance(response, str):
        return searchable(response)
    try:
        return searchable(json.dumps(to_jsonable_python(response), ensure_ascii=False))
    except Exception:
        return ""


def _usage(event: Event) -> TokenUsage | None:
    usage = event.usage_metadata
    if usage is None or role_of(event) == "user":
        return None
    cached = usage.cached_content_token_count or 0
    prompt = usage.prompt_token_count or 0
    output = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
    return TokenUsage(
        input=max(prompt - cached, 0),
        output=output,
        cache_read=cached,
        total=usage.total_token_count or prompt + output,
    )


def role_of(event: Event) -> str:
    """`user` for an event holding the user's content, else `assistant`."""
    content = event.content
    return "user" if content is not None and content.role == "user" else "assistant"


# --- the work: on a worker thread, or at once on the loop's (`read_small`, `read_rows`) ---------


def _marker(session_id: str, version: int) -> str:
    """ADK's storage update marker of a session: its id in the store and its version."""
    return f"{version}@{session_id}"


def _read_marker(marker: object) -> tuple[str, int] | None:
    """(session id, version) of a marker `_marker` made, else `None`."""
    if not isinstance(marker, str):
        return None
    version, _, session_id = marker.partition("@")
    if not session_id or not version.isdigit():
        return None
    return session_id, int(version)


def _seconds(micros: int) -> float:
    return micros / 1_000_000


def _micros(timestamp: float) -> int:
    """An event's timestamp as the store's time of its append."""
    if not 0 <= timestamp < _LATEST:  # NaN too
        raise InvalidPayload(
            f"the event's timestamp must be seconds since 1970 before 9999, got {timestamp!r}",
            field="event.timestamp",
        )
    return round(timestamp * 1_000_000)


_LATEST: Final = 253_402_300_800  # 9999-12-31T23:59:59Z + 1s, as POSIX seconds


def _adk_session(
    where: _Where,
    session_id: str,
    version: int,
    updated_at: int,
    state: dict[str, Any],
    events: list[Event],
) -> AdkSession:
    # Every value is made here, of the right type: nothing to validate.
    return construct(
        AdkSession,
        {
            "id": where.session_id,
            "app_name": where.app,
            "user_id": where.user,
            "state": state,
            "events": events,
            "last_update_time": _seconds(updated_at),
        },
        _storage_update_marker=_marker(session_id, version),
    )


def _create(engine: Engine, where: _Where, delta: dict[str, Any] | None) -> AdkSession:
    stored, agent = engine.key(where.key)
    new = engine.new_session(agent, stored, user_id=where.user)
    request = engine.prepare_append(new.id, [], state=delta) if delta else None

    def work(tx: SqlTx, fresh: bool) -> AdkSession:
        if engine.bind_new(tx, agent, stored, new) is not None:
            raise AlreadyExistsError(f"Session with id {where.session_id} already exists.")
        if request is not None:
            engine.append_in(tx, request, fresh_ids=fresh)
        row = session_row(tx, agent, stored)
        assert row is not None  # bound just now, in this transaction
        state = _with_shared(row.state, shared_rows(tx, agent, where.user))
        return _adk_session(where, row.bound.id, row.version, row.updated_at, state, [])

    return engine.write_appending(work)


def _get(
    engine: Engine, where: _Where, limit: int | None, after: float | None, memos: _Memos
) -> AdkSession | None:
    stored, agent = engine.key(where.key)
    # Entries never change and the tail read starts from the leaf this row names, so
    # the statements need no shared snapshot (see `_tail`).
    with engine.backend.read_statement() as tx:
        row = session_row(tx, agent, stored)
        if row is None or row.user_id != where.user:
            return None
        # A session read before keeps its events between reads (`_Memos`); a window
        # cut by time does not (what it takes of an entry depends on `after`).
        memo = memos.of(row.bound.id) if after is None else None
        decode = _copies if memo is not None else _decoder(after)
        makers = read_tail(tx, row.bound, limit, decode, kinds=_EVENT_KINDS, memo=memo)
        state = _with_shared(row.state, shared_rows(tx, agent, where.user))
    if memo is not None:
        memos.read(row.bound.id, memo)
    # Only the window's events are made (the tail read may look at a few more).
    events = [make() for make in makers]
    return _adk_session(where, row.bound.id, row.version, row.updated_at, state, events)


_Make = Callable[[], Event]
"""What makes an event read (a new object at each call)."""


def _decoder(after: float | None) -> Decode[_Make]:
    """The tail read's decoder of a session read for the first time (or since `after`):
    what makes an entry's event from its JSON data, for one read (none older than
    `after`)."""

    def decode(kind: str, payload: Any) -> list[_Make] | None:
        data = _kept_event(kind, payload)
        if data is None:
            return None
        stamp = data.get("timestamp")
        if after is not None and isinstance(stamp, int | float) and stamp < after:
            return None
        return [functools.partial(rebuild, Event, data)]

    return decode


def _copies(kind: str, payload: Any) -> list[_Make] | None:
    """The tail read's decoder of a session read before, whose events are kept for the
    reads after (`_Memos`): what makes copies of an entry's event, made once."""
    data = _kept_event(kind, payload)
    return None if data is None else [copies_of(rebuild(Event, data))]


class _Memos:
    """The events of the sessions read last, kept between reads (`_tail.Memo`): the
    same window is read on every turn of a conversation, one or a few events further.

    A session's first read makes its events as usual, for one read, and starts its
    memo; from the second on, each event is made once for the reads after (with what
    to copy of it: ~20 µs for a text event, against ~5 to make it from its data) and
    copied at each read (~3 µs). The memos of the sessions read least recently go
    when they hold more than `budget` events in all (about 5 KB each for a text
    event, its stored JSON included). Reads may run on worker threads at once: the
    bookkeeping holds a lock.
    """

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._lock = threading.Lock()
        self._memos: OrderedDict[str, tuple[Memo[_Make], int]] = OrderedDict()
        self._held = 0

    def of(self, session_id: str) -> Memo[_Make] | None:
        """The memo of a session (its id in the store) read before, else `None` (one is
        started for the next read)."""
        with self._lock:
            found = self._memos.get(session_id)
            if found is None:
                self._memos[session_id] = (Memo(), 0)
                return None
            self._memos.move_to_end(session_id)
            return found[0]

    def read(self, session_id: str, memo: Memo[_Make]) -> None:
        """Account for what a read left in `memo`, letting go of the least recently read
        memos past the budget."""
        with self._lock:
            found = self._memos.get(session_id)
            if found is None or found[0] is not memo:
                return  # let go of while it was read
            self._held += len(memo) - found[1]
            self._memos[session_id] = (memo, len(memo))
            while self._held > self._budget and self._memos:
                _, (_, held) = self._memos.popitem(last=False)
                self._held -= held

    def clear(self) -> None:
        with self._lock:
            self._memos.clear()
            self._held = 0


_MEMO_EVENTS: Final = 2_000
"""The most events a service keeps between reads (`_Memos`)."""


_EVENT_KINDS: Final = frozenset({"message", "custom"})
"""The entry types `_kept_event` takes events from (a state change is neither)."""


def _kept_event(kind: str, payload: Any) -> dict[str, Any] | None:
    """The event (its JSON data) an entry keeps, or `None` (not an ADK event, or a
    later tool result of one)."""
    # Payloads are parsed JSON: a JSON object is a dict. Most entries read are messages
    # or state changes, told apart here by their type alone. This runs for every entry
    # a read decodes.
    if kind == "message":
        value = restore(payload.get("message"), EVENT_KEY) if type(payload) is dict else None
    elif kind == "custom" and type(payload) is dict and payload.get("customType") == EVENT_KEY:
        value = restore(payload, "data")
    else:
        return None
    return value if type(value) is dict else None  # `restore` found none: not a dict


def _with_shared(
    own: Mapping[str, Any], shared: Iterable[tuple[str, str | None, str, Any]]
) -> dict[str, Any]:
    """A session's state as ADK's: its own keys, then the app's and its user's."""
    state = _adk_state(own)
    for scope, _, key, value in shared:
        state[(_APP if scope == "agent" else _USER) + key] = value
    return state


def _list(engine: Engine, where: _Where, user: str | None) -> list[AdkSession]:
    prefix = f"agent:{where.app}:" + (f"{_escape(user)}:" if user is not None else "")
    with engine.backend.read_statement() as tx:
        rows = list(listed_rows(tx, where.app, prefix, user))
        shared = list(shared_rows(tx, where.app, user)) if rows else []
    app_state = {_APP + key: value for scope, _, key, value in shared if scope == "agent"}
    user_states: dict[str | None, dict[str, Any]] = {}
    for scope, owner, key, value in shared:
        if scope == "user":
            user_states.setdefault(owner, {})[_USER + key] = value
    out: list[tuple[int, str, str, AdkSession]] = []
    for row in rows:
        ids = _ids_of(where.app, row.key, row.user_id)
        if ids is None:
            continue
        adk_user, adk_id = ids
        state = _adk_state(row.state)
        state.update(app_state)
        state.update(user_states.get(adk_user, {}))
        here = _Where(where.app, adk_user, adk_id, key="")
        adk = _adk_session(here, row.id, row.version, row.updated_at, state, [])
        out.append((row.updated_at, adk_user, adk_id, adk))
    out.sort(key=lambda listed: listed[:3])
    return [listed[3] for listed in out]


def _ids_of(app: str, key: str, user: str) -> tuple[str, str] | None:
    """The ADK user and session id of a session key `adk_key` made, else `None`."""
    prefix = f"agent:{app}:"
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split(":")
    if len(parts) != 2 or _unescape(parts[0]) != user:
        return None
    return user, _unescape(parts[1])


def _delete(engine: Engine, where: _Where) -> None:
    stored, agent = engine.key(where.key)
    with engine.backend.write() as tx:
        record = engine.bound(tx, agent, stored, lock=True)
        if record is not None and record.session.user_id == where.user:
            engine.delete_in(tx, record.sid)


def _user_state(engine: Engine, where: _Where) -> dict[str, Any]:
    with engine.backend.read_statement() as tx:
        rows = shared_rows(tx, where.app, where.user, agent=False)
        return {key: value for _, _, key, value in rows}


def _current(engine: Engine, where: _Where, seen: float, last_event: str | None) -> tuple[str, int]:
    """(session id, version) of the key's session, for a writer that holds no marker:
    refused when the session changed after `seen`, its last update time, unless its
    events are still those the writer holds (`last_event`, the id of its last one, or
    `None` for none): the check ADK's own services make of such a session."""
    stored, agent = engine.key(where.key)
    with engine.backend.read_statement() as tx:
        row = session_row(tx, agent, stored)
        if row is None or row.user_id != where.user:
            raise SessionNotFoundError(f"Session {where.session_id} not found.")
        if _seconds(row.updated_at) > seen + 1e-6:
            latest = read_tail(tx, row.bound, 1, _decoder(None), kinds=_EVENT_KINDS)
            stored_last = latest[0]().id if latest else None
            if stored_last != last_event:
                raise StaleSessionError(_STALE)
    return row.bound.id, row.version
