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
- `last_update_time` is the last appended event's timestamp (kept in the
  session's metadata under `adk`), the session's `version` its revision
  marker: a second writer holding a stale session gets ADK's
  `StaleSessionError` and writes nothing, and no timestamp rounding makes a
  current session look stale.

Deliberate differences from ADK's SQL services:

- `app_name` must be an agent id as it is (see above); ADK accepts any string.
- Events come back in the order they were appended, not sorted by their
  `timestamp`; `GetSessionConfig.after_timestamp` reads back from the newest
  event and stops at the first one older than it, so with timestamps that go
  backwards an older event appended later is returned while an earlier one
  that is newer is not.
- Events that other writers appended (another framework's messages) are not
  ADK events and are left out of `get_session`; they stay in the store.

Requires the `adk` extra: `pip install 'aisopod-session[adk]'`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
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

from aisopod_session._async import in_worker
from aisopod_session._engine import Engine
from aisopod_session._entries import NewEntry
from aisopod_session._errors import ConflictError, InvalidPayload, StoreUnavailable
from aisopod_session._model import Entry, Session
from aisopod_session._paths import path_tail
from aisopod_session._store import SessionStore
from aisopod_session._validate import merge_patch
from aisopod_session.adapters._common import (
    StoreHandle,
    StoreLike,
    is_missing,
    keep,
    restore,
    searchable,
    storable,
)
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

_META: Final = "adk"
_APP: Final = "app:"
_USER: Final = "user:"
_TEMP: Final = "temp:"
_AGENT: Final = "agent:"
_STALE: Final = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)
_PAGE: Final = 500
"""Entries per read while collecting events."""

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

    Every method is one call on the store's worker threads (the event loop
    never waits on the database). See the module docstring for the mapping and
    the deliberate differences from ADK's own services.
    """

    def __init__(self, store: StoreLike = None, *, agent_id: str | None = None) -> None:
        if agent_id is not None and not isinstance(agent_id, str):
            raise InvalidInput(f"must be a string, got {type(agent_id).__name__}", field="agent_id")
        self._handle = StoreHandle(store)
        agent = agent_id if agent_id is not None else self._handle.sync.agent_id
        self._only = normalize_agent_id(agent) if agent is not None else None
        self._closed = False

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
        return await self._run(lambda engine: _get(engine, where, limit, after))

    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The app's sessions (one user's, or every user's), with their state and without
        events, least recently updated first."""
        where = self._where(app_name, user_id if user_id is not None else "-", "-")
        user = where.user if user_id is not None else None
        sessions = await self._run(lambda engine: _list(engine, where, user))
        return ListSessionsResponse(sessions=sessions)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events (nothing happens when there is none)."""
        where = self._where(app_name, user_id, _session_id(session_id))
        await self._run(lambda engine: _delete(engine, where))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The user's `user:` state in the app, keys without the prefix."""
        where = self._where(app_name, user_id, "-")
        state = await self._run(lambda engine: _user_state(engine, where))
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
        delta = _event_delta(event)
        entries = _entries_of(event)
        marker = session._storage_update_marker
        seen = session.last_update_time
        version = await self._run(
            lambda engine: _append(engine, where, entries, delta, marker, seen, event.timestamp)
        )
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        session.last_update_time = event.timestamp
        session._storage_update_marker = str(version)
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


class _Where:
    """An ADK session's address, and its key in the store."""

    __slots__ = ("app", "key", "session_id", "user")

    def __init__(self, app: str, user: str, session_id: str) -> None:
        self.app = app
        self.user = user
        self.session_id = session_id
        self.key = adk_key(app, user, session_id)


def adk_key(app_name: str, user_id: str, session_id: str) -> str:
    """The session key of an ADK session (see the module docstring)."""
    return f"agent:{app_name}:{_escape(user_id)}:{_escape(session_id)}"


def _escape(text: str) -> str:
    return "".join(
        c if c not in "%:" and c.isprintable() and not c.isspace() and c.lower() == c else _hex(c)
        for c in text
    )


def _hex(c: str) -> str:
    return "".join(f"%{b:02x}" for b in c.encode("utf-8", "surrogatepass"))


def _unescape(text: str) -> str:
    return unquote(text, errors="surrogatepass")


def _session_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("a session id is a non-empty string", field="session_id")
    return value.strip()


# --- state ------------------------------------------------------------------------------


def _store_delta(state: object, field: str) -> dict[str, Any] | None:
    """ADK's state (or delta) as the store's delta: `app:` -> `agent:`, `temp:` dropped,
    session keys that would read as a scope escaped; values as ADK makes them JSON."""
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
            raise InvalidPayload(f"{key!r}: not JSON data ({err})", field=field) from err
    return out or None


def _event_delta(event: Event) -> dict[str, Any] | None:
    actions = event.actions
    if not actions.state_delta:
        return None
    return _store_delta(actions.state_delta, "event.actions.state_delta")


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


def _state_in(engine: Engine, tx: SqlTx, sid: int) -> dict[str, Any]:
    current = tx.session_state(sid)
    shared = engine.shared_state(tx, current.agent_id, current.user_id)
    return _adk_state({**current.state, **shared})


# --- events -----------------------------------------------------------------------------


def _entries_of(event: Event) -> list[Message | NewEntry]:
    """The entries that keep an event (see the module docstring)."""
    try:
        data = orjson.loads(event.model_dump_json(exclude_none=True))
    except (ValueError, TypeError) as err:
        raise InvalidPayload(f"the event is not JSON data: {err}", field="event") from err
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


def _event_of(entry: Entry) -> Event | None:
    """The event an entry keeps, or `None` (not an ADK event, or a later tool result
    of one)."""
    payload = entry.payload
    if entry.type == "message":
        message = payload.get("message")
        value = restore(message, EVENT_KEY)
    elif entry.type == "custom" and payload.get("customType") == EVENT_KEY:
        value = restore(payload, "data")
    else:
        return None
    if is_missing(value) or not isinstance(value, dict):
        return None
    try:
        text = orjson.dumps(value)
    except TypeError:  # NaN or a huge integer, kept encoded: the standard encoder
        text = json.dumps(value).encode()
    return Event.model_validate_json(text)


# --- the work, on a worker thread -------------------------------------------------------


def _adk_session(
    where: _Where, session: Session, state: dict[str, Any], events: list[Event]
) -> AdkSession:
    adk = AdkSession(
        id=where.session_id,
        app_name=where.app,
        user_id=where.user,
        state=state,
        events=events,
        last_update_time=_last_update(session),
    )
    adk._storage_update_marker = str(session.version)
    return adk


def _last_update(session: Session) -> float:
    meta = session.metadata.get(_META)
    value = meta.get("lastUpdateTime") if isinstance(meta, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return session.updated_at.timestamp()


def _create(engine: Engine, where: _Where, delta: dict[str, Any] | None) -> AdkSession:
    stored, agent = engine.key(where.key)
    now = engine.clock.now()
    new = engine.new_session(
        agent,
        stored,
        user_id=where.user,
        metadata={_META: {"lastUpdateTime": now.timestamp()}},
        now=now,
    )
    request = engine.prepare_append(new.id, [], state=delta) if delta else None

    def work(tx: SqlTx, fresh: bool) -> AdkSession:
        if engine.bind_new(tx, agent, stored, new) is not None:
            raise AlreadyExistsError(f"Session with id {where.session_id} already exists.")
        if request is not None:
            engine.append_in(tx, request, fresh_ids=fresh)
        record = engine.bound(tx, agent, stored)
        assert record is not None  # bound just now, in this transaction
        return _adk_session(where, record.session, _state_in(engine, tx, record.sid), [])

    return engine.write_appending(work)


def _get(
    engine: Engine, where: _Where, limit: int | None, after: float | None
) -> AdkSession | None:
    stored, agent = engine.key(where.key)
    with engine.backend.read() as tx:
        record = engine.bound(tx, agent, stored)
        if record is None or record.session.user_id != where.user:
            return None
        session = record.session
        events: list[Event] = []
        if limit != 0:
            events = _tail_events(tx, record.sid, session, limit, after)
        return _adk_session(where, session, _state_in(engine, tx, record.sid), events)


def _tail_events(
    tx: SqlTx, sid: int, session: Session, limit: int | None, after: float | None
) -> list[Event]:
    """The last `limit` events (all for `None`) of the active path, none older than
    `after`, oldest first; read back a page at a time from the leaf."""
    found: list[Event] = []
    leaf = session.leaf_seq
    page = min(max(2 * limit + 2, 8), _PAGE) if limit is not None else _PAGE
    while leaf > 0:
        entries = [
            entry
            for start, end in path_tail(tx, sid, leaf, page)
            for entry in tx.entries_between(sid, session.id, start, end)
        ]
        for entry in reversed(entries):
            event = _event_of(entry)
            if event is None:
                continue
            if after is not None and event.timestamp < after:
                found.reverse()
                return found
            found.append(event)
            if limit is not None and len(found) >= limit:
                found.reverse()
                return found
        first = entries[0] if entries else None
        leaf = (tx.parent_of(sid, first.seq) or 0) if first is not None else 0
        page = _PAGE
    found.reverse()
    return found


def _list(engine: Engine, where: _Where, user: str | None) -> list[AdkSession]:
    prefix = f"agent:{where.app}:" + (f"{_escape(user)}:" if user is not None else "")
    store_list: list[Session] = []
    cursor: str | None = None
    store = SessionStore(engine)
    while True:
        page = store.list(
            agent_id=where.app, user_id=user, key_prefix=prefix, limit=1000, cursor=cursor
        )
        store_list.extend(page.sessions)
        if page.cursor is None:
            break
        cursor = page.cursor
    out: list[tuple[float, str, str, AdkSession]] = []
    with engine.backend.read() as tx:
        for session in store_list:
            ids = _ids_of(where.app, session)
            if ids is None or session.status == "archived":
                continue
            adk_user, adk_id = ids
            here = _Where.__new__(_Where)
            here.app, here.user, here.session_id, here.key = where.app, adk_user, adk_id, ""
            try:
                sid = engine.sid(tx, session.id)
            except LookupError:  # deleted since the listing
                continue
            adk = _adk_session(here, session, _state_in(engine, tx, sid), [])
            out.append((adk.last_update_time, adk_user, adk_id, adk))
    out.sort(key=lambda row: row[:3])
    return [row[3] for row in out]


def _ids_of(app: str, session: Session) -> tuple[str, str] | None:
    """The ADK user and session id of a session `adk_key` named, else `None`."""
    key = session.key
    user = session.user_id
    if key is None or user is None:
        return None
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
    with engine.backend.read() as tx:
        return dict(tx.shared_state("user_state", where.app, where.user))


def _append(
    engine: Engine,
    where: _Where,
    entries: list[Message | NewEntry],
    delta: dict[str, Any] | None,
    marker: str | None,
    seen: float,
    timestamp: float,
) -> int:
    """Append an event's entries and state delta to the session, if `marker` (else
    `seen`, its last update time) is still current; the session's new version."""
    stored, agent = engine.key(where.key)
    request = engine.prepare_append("", entries, state=delta, key=(stored, agent))

    def work(tx: SqlTx, fresh: bool) -> int:
        record = engine.bound(tx, agent, stored, lock=True)
        if record is None or record.session.user_id != where.user:
            raise SessionNotFoundError(f"Session {where.session_id} not found.")
        session = record.session
        if marker is not None:
            if marker != str(session.version):
                raise StaleSessionError(_STALE)
        elif _last_update(session) > seen + 1e-6:
            raise StaleSessionError(_STALE)
        try:
            engine.append_in(
                tx,
                request._replace(session_id=session.id, key=None, expected_version=session.version),
                fresh_ids=fresh,
            )
        except ConflictError as err:  # pragma: no cover - the row is locked
            raise StaleSessionError(_STALE) from err
        meta = merge_patch(session.metadata, {_META: {"lastUpdateTime": timestamp}})
        tx.update_session(record.sid, now=request.now, metadata=meta)
        return engine.by_sid(tx, record.sid).session.version

    return engine.write_appending(work)
