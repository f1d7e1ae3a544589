"""The Google ADK adapter: ADK's `BaseSessionService` contract on the session store.

Each test runs on SQLite and PostgreSQL, one store per backend for the module
(every test uses app and user names of its own), and drives the service as
ADK's runner does: with real `Event`s, through the async API.

ADK's own contract tests, run against the adapter (their code stays theirs, out
of this repository). Last runs, with ADK 2.13.0:

- google/adk-python's tests at commit 0330145: the 24 tests that drive a
  service through `session_service` pass on SQLite and on PostgreSQL, also
  with every `get_session` made three times (the service keeps the events it
  read) and with the earlier results changed in place; the steps of the two
  tests that build `DatabaseSessionService` themselves (a marker-less session,
  a session whose clock drifted) give ADK's results when replayed on the
  adapter. That revision has no test of tied timestamps.
- at commit 11cc093: 41 of 43 passed on both, the two others being
  `test_get_session_orders_tied_timestamps_by_id[True-*]`, a deliberate
  difference listed in the adapter's docstring.

To run them:

1. Copy `tests/unittests/sessions/test_session_service.py` of google/adk-python
   to a folder outside the repository, e.g. `/tmp/adk-conformance/sessions/`
   (with an empty `__init__.py`), keeping the tests that take the
   `session_service` fixture and those that build a service with
   `get_session_service` (the others test ADK's own classes).
2. Where the file imports a `_conformance` module (11cc093 does), write it
   beside it: a `BACKENDS` list of one entry with no divergences, and an async
   `session_service` fixture that yields `AisopodSessionService(url)` on a
   fresh store, `url` a SQLite file in `tmp_path` or, when
   `AISOPOD_CONFORMANCE_BACKEND=postgres`, a schema of its own
   (`tests.session.postgres_schema.temporary_schema`). Where it defines its
   own `session_service` fixture over `get_session_service` (0330145 does),
   step 3 covers it; keep one of the fixture's parameters, since every one
   of them then builds the adapter.
3. In the folder above, a `conftest.py` that puts this repository on `sys.path`
   and, with an autouse fixture, monkeypatches the test module's
   `get_session_service` to build the same service; and a `pytest.ini` with
   `asyncio_mode = auto`.
4. Run it once per backend with this repository's environment:

       AISOPOD_CONFORMANCE_BACKEND=sqlite uv run --directory <repo> --group bench \
         --with pytest-asyncio python -m pytest -n 0 -p no:cacheprovider \
         --rootdir /tmp/adk-conformance -c /tmp/adk-conformance/pytest.ini \
         /tmp/adk-conformance/sessions

   and again with `AISOPOD_CONFORMANCE_BACKEND=postgres` and
   `AISOPOD_TEST_POSTGRES_DSN` set.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.adk.sessions.session import Session as AdkSession
from google.genai import types

from aisopod_session import (
    AsyncSessionStore,
    InvalidInput,
    InvalidPayload,
    PayloadTooLarge,
    SessionStore,
    StoreUnavailable,
    open_store,
)
from aisopod_session._store import engine_of
from aisopod_session._tail import Memo, read_tail
from aisopod_session.adapters.adk import EVENT_KEY, AisopodSessionService, _Memos, adk_key
from aisopod_session.transfer import export_transcript
from aisopod_shared import Message
from tests.adapters.conftest import BACKENDS
from tests.session.postgres_schema import temporary_schema

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture(name="store", scope="module", params=BACKENDS)
def store_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionStore]:
    """One store per backend for the module: the tests use names of their own."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("adk") / "sessions.db"
        with open_store(f"sqlite:///{path}") as store:
            yield store
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        with (
            temporary_schema(dsn, f"adk_{uuid.uuid4().hex[:12]}") as url,
            open_store(url) as store,
        ):
            yield store


@pytest.fixture(name="service")
def service_fixture(store: SessionStore) -> AisopodSessionService:
    return AisopodSessionService(store)


@pytest.fixture(name="app")
def app_fixture() -> str:
    """An app (agent) name no other test uses."""
    return f"app_{uuid.uuid4().hex[:10]}"


def text_event(role: str, text: str, **kwargs: Any) -> Event:
    return Event(
        invocation_id="inv",
        author="user" if role == "user" else "helper",
        content=types.Content(role=role, parts=[types.Part(text=text)]),
        **kwargs,
    )


def delta_event(delta: dict[str, Any], **kwargs: Any) -> Event:
    kwargs.setdefault("invocation_id", "inv")
    return Event(author="user", actions=EventActions(state_delta=delta), **kwargs)


def test_is_an_adk_session_service(service: AisopodSessionService) -> None:
    assert isinstance(service, BaseSessionService)


def test_create_get_delete(service: AisopodSessionService, app: str) -> None:
    """A created session reloads equal; after delete it is gone."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u1", state={"key": "value"})
        assert session.id
        assert session.state == {"key": "value"}
        assert session.events == []
        got = await service.get_session(app_name=app, user_id="u1", session_id=session.id)
        assert got == session
        await service.delete_session(app_name=app, user_id="u1", session_id=session.id)
        assert await service.get_session(app_name=app, user_id="u1", session_id=session.id) is None
        # Deleting what is not there does nothing; so does reading it.
        await service.delete_session(app_name=app, user_id="u1", session_id=session.id)
        assert await service.get_session(app_name=app, user_id="u1", session_id="nope") is None

    run(go())


def test_ids_are_stripped_and_duplicates_refused(service: AisopodSessionService, app: str) -> None:
    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u1", session_id="  s1 \n")
        assert session.id == "s1"
        with pytest.raises(AlreadyExistsError):
            await service.create_session(app_name=app, user_id="u1", session_id="s1")
        got = await service.get_session(app_name=app, user_id="u1", session_id=" s1 ")
        assert got == session
        # Another user's session of the same id is another session.
        other = await service.create_session(app_name=app, user_id="u2", session_id="s1")
        await service.append_event(session, text_event("user", "hi"))
        got_other = await service.get_session(app_name=app, user_id="u2", session_id="s1")
        assert got_other == other
        assert got_other.events == []

    run(go())


def test_events_round_trip_exactly(service: AisopodSessionService, app: str) -> None:
    """Every field of an event comes back equal, bytes included; the reloaded
    session equals the live one."""
    event = Event(
        invocation_id="invocation",
        author="user",
        content=types.Content(
            role="user",
            parts=[
                types.Part(text="look \x00 at this"),
                types.Part.from_bytes(data=b"\x00\xffimage", mime_type="image/png"),
            ],
        ),
        turn_complete=True,
        actions=EventActions(artifact_delta={"file": 0}, transfer_to_agent="agent", escalate=True),
        long_running_tool_ids={"tool1"},
        error_code="error_code",
        interrupted=True,
        grounding_metadata=types.GroundingMetadata(
            search_entry_point=types.SearchEntryPoint(sdk_blob=b"blob")
        ),
        usage_metadata=types.GenerateContentResponseUsageMetadata(
            prompt_token_count=1, candidates_token_count=1, total_token_count=2
        ),
        custom_metadata={"custom_key": "custom_value", "n": None},
        timestamp=1700000000.123456,
    )

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        await service.append_event(session, event)
        assert session.last_update_time == event.timestamp
        got = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert got is not None
        assert got == session
        assert got.events[0] == event

    run(go())


def test_state_scopes_map_to_the_store(
    service: AisopodSessionService, store: SessionStore, app: str
) -> None:
    """app: is the agent's state, user: the user's, temp: is never kept, other keys
    (even ones that look scoped) are the session's; values replace, None is stored."""

    async def go() -> None:
        s1 = await service.create_session(
            app_name=app,
            user_id="u1",
            state={"app:k": 1, "user:k": 2, "temp:k": 3, "k": {"a": 1}, "owner:k": 4, "%": 5},
        )
        assert s1.state == {"app:k": 1, "user:k": 2, "k": {"a": 1}, "owner:k": 4, "%": 5}
        event = delta_event({"k": {"b": 2}, "user:k": None, "temp:t": "x", "app:j": [1]})
        await service.append_event(s1, event)
        assert s1.state["temp:t"] == "x"  # for the rest of the invocation only
        assert "temp:t" not in (event.actions.state_delta or {})
        got = await service.get_session(app_name=app, user_id="u1", session_id=s1.id)
        assert got is not None
        assert got.state == {
            "app:k": 1,
            "app:j": [1],
            "user:k": None,
            "k": {"b": 2},
            "owner:k": 4,
            "%": 5,
        }
        s2 = await service.create_session(app_name=app, user_id="u2")
        assert s2.state == {"app:k": 1, "app:j": [1]}
        assert await service.get_user_state(app_name=app, user_id="u1") == {"k": None}
        assert await service.get_user_state(app_name=app, user_id="u3") == {}
        # The store's own API reads the same state.
        ours = store.current(adk_key(app, "u1", s1.id))
        assert ours is not None
        assert ours.user_id == "u1"
        assert store.state(ours.id)["k"] == {"b": 2}
        assert store.agent_state(app) == {"k": 1, "j": [1]}
        assert store.user_state("u1", app) == {"k": None}

    run(go())


def test_partial_events_are_not_stored(service: AisopodSessionService, app: str) -> None:
    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        await service.append_event(session, text_event("model", "typing", partial=True))
        assert session.events == []
        got = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert got is not None
        assert got.events == []

    run(go())


def test_get_session_config(service: AisopodSessionService, app: str) -> None:
    """num_recent_events and after_timestamp, alone and together."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        for i in range(1, 6):
            await service.append_event(session, delta_event({"i": i}, timestamp=float(i)))

        async def stamps(**config: Any) -> list[float]:
            got = await service.get_session(
                app_name=app, user_id="u", session_id=session.id, config=GetSessionConfig(**config)
            )
            assert got is not None
            return [e.timestamp for e in got.events]

        assert await stamps() == [1, 2, 3, 4, 5]
        assert await stamps(num_recent_events=0) == []
        assert await stamps(num_recent_events=3) == [3, 4, 5]
        assert await stamps(after_timestamp=4.0) == [4, 5]
        assert await stamps(after_timestamp=50.0) == []
        assert await stamps(num_recent_events=3, after_timestamp=4.0) == [4, 5]

    run(go())


def test_reads_again_give_new_equal_events(service: AisopodSessionService, app: str) -> None:
    """A session read again and again (its events kept between reads) gives equal
    events every time, as the window moves on, and new objects: what a caller changes
    in one read is in no other."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        for i in range(6):
            await service.append_event(
                session, text_event("user", f"m{i}", actions=EventActions(state_delta={"n": [i]}))
            )

        async def read(**config: Any) -> list[Event]:
            got = await service.get_session(
                app_name=app, user_id="u", session_id=session.id, config=GetSessionConfig(**config)
            )
            assert got is not None
            return got.events

        reads = [await read(num_recent_events=4) for _ in range(3)]
        assert reads[0] == reads[1] == reads[2] == session.events[-4:]
        changed = reads[2][-1]
        changed.actions.state_delta["n"].append("changed")
        assert changed.content is not None
        assert changed.content.parts is not None
        changed.content.parts[0].text = "changed"
        changed.timestamp = 0.0
        assert await read(num_recent_events=4) == session.events[-4:]
        assert not {id(e) for e in await read(num_recent_events=4)} & {id(e) for e in reads[2]}
        for i in range(6, 8):
            await service.append_event(session, text_event("model", f"m{i}"))
            assert await read(num_recent_events=4) == session.events[-4:]
            assert await read() == session.events
        # A window cut by time, again and again.
        after = session.events[5].timestamp
        for _ in range(3):
            assert await read(after_timestamp=after) == session.events[5:]
        # A new session under the same key has events of its own.
        await service.delete_session(app_name=app, user_id="u", session_id=session.id)
        again = await service.create_session(app_name=app, user_id="u", session_id=session.id)
        await service.append_event(again, text_event("user", "new"))
        for _ in range(3):
            assert await read(num_recent_events=4) == again.events

    run(go())


def test_a_rewound_session_shows_its_branch(
    service: AisopodSessionService, store: SessionStore, app: str
) -> None:
    """Rewound through the store to an earlier event, then given a state change alone
    (an entry that is no event, where the path jumps), a session shows the events on
    its branch, read after read."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        for i in range(4):
            await service.append_event(
                session, text_event("user", f"m{i}", actions=EventActions(state_delta={"i": i}))
            )
        ours = store.current(adk_key(app, "u", session.id))
        assert ours is not None
        for _ in range(2):  # the events are kept between reads before the rewind
            await service.get_session(app_name=app, user_id="u", session_id=session.id)
        store.rewind(ours.id, 4)  # after the second event and its state change
        store.update_state(ours.id, {"x": 1})
        again = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert again is not None
        await service.append_event(again, text_event("model", "m4"))
        expected = [*session.events[:2], again.events[-1]]
        for config in [None, GetSessionConfig(num_recent_events=2)] * 3:
            got = await service.get_session(
                app_name=app, user_id="u", session_id=session.id, config=config
            )
            assert got is not None
            assert got.events == (expected if config is None else expected[-2:])
            assert got.state == {"i": 1, "x": 1}

    run(go())


def test_a_tail_memo_decodes_each_entry_once(store: SessionStore, app: str) -> None:
    """A tail read given a memo of the session decodes only the entries the read that
    filled it did not; given a memo of another session, it decodes them all again (the
    payloads differ) and reads what is there."""
    engine = engine_of(store)
    decoded: list[str] = []

    def decode(kind: str, payload: Any) -> list[str] | None:
        if kind != "message":
            return None
        text = str(payload["message"]["content"])  # a user's text
        decoded.append(text)
        return [text]

    def tail(key: str, memo: Memo[str]) -> list[str]:
        stored, agent = engine.key(key)
        with engine.backend.read_statement() as tx:
            bound = engine.bound_session(tx, agent, stored)
            assert bound is not None
            return read_tail(tx, bound, 2, decode, kinds={"message"}, memo=memo)

    keys = [f"agent:{app}:one", f"agent:{app}:two"]
    for key in keys:
        session = store.get_or_create(key)
        store.append(session.id, [Message.user(f"{key[-3:]}{i}") for i in range(3)])
    memo: Memo[str] = Memo()
    # (A read looks at a few more entries than its window: those are decoded too.)
    assert tail(keys[0], memo) == ["one1", "one2"]
    assert decoded == ["one2", "one1", "one0"]
    assert tail(keys[0], memo) == ["one1", "one2"]
    assert decoded == ["one2", "one1", "one0"]  # nothing decoded again
    store.append(store.get_or_create(keys[0]).id, Message.user("one3"))
    assert tail(keys[0], memo) == ["one2", "one3"]
    assert decoded == ["one2", "one1", "one0", "one3"]
    decoded.clear()
    assert tail(keys[1], memo) == ["two1", "two2"]
    assert decoded == ["two2", "two1", "two0"]


def test_a_tail_memo_sizes_the_first_page(store: SessionStore, app: str) -> None:
    """A read given a memo sizes its first page from the share of items among the rows
    the memo's read went through: a window of messages each followed by a state change
    is one statement, where the first read took more."""
    engine = engine_of(store)
    session = store.get_or_create(f"agent:{app}:paged")
    for i in range(30):
        store.append(session.id, Message.user(f"m{i}"), state={"i": i})

    def decode(kind: str, payload: Any) -> list[str] | None:
        return [str(payload["message"]["content"])] if kind == "message" else None

    def tail(memo: Memo[str]) -> tuple[list[str], int]:
        stored, agent = engine.key(f"agent:{app}:paged")
        with engine.backend.read_statement() as tx:
            bound = engine.bound_session(tx, agent, stored)
            assert bound is not None
            statements = 0
            read = tx.stored_path_payloads

            def counted(*args: Any) -> Any:
                nonlocal statements
                statements += 1
                return read(*args)

            tx.stored_path_payloads = counted  # type: ignore[method-assign,assignment]
            return read_tail(tx, bound, 10, decode, kinds={"message"}, memo=memo), statements

    memo: Memo[str] = Memo()
    expected = [f"m{i}" for i in range(20, 30)]
    assert tail(memo) == (expected, 2)
    assert tail(memo) == (expected, 1)


def test_the_events_kept_between_reads_have_a_budget() -> None:
    """The memos of the sessions read least recently go when they hold more events than
    the budget; a session read for the first time starts one."""
    memos = _Memos(budget=5)

    def read(session_id: str, events: int) -> bool:
        """A read of `events` events: whether the session had a memo."""
        memo = memos.of(session_id)
        if memo is None:
            return False
        memo.entries = dict.fromkeys(range(events), ("", None, None))
        memos.read(session_id, memo)
        return True

    assert not read("a", 3)
    assert read("a", 3)
    assert not read("b", 2)
    assert read("b", 2)  # 5 held: within the budget
    assert read("a", 3)  # a is the most recently read
    assert not read("c", 1)
    assert read("c", 1)  # 6 held: b, the least recently read, goes
    assert not read("b", 2)
    assert read("a", 3)
    memos.clear()
    assert not read("a", 3)


def test_events_keep_their_append_order(service: AisopodSessionService, app: str) -> None:
    """Events come back as they were appended, whatever their timestamps (a deliberate
    difference: ADK's SQL services sort by timestamp, then id); after_timestamp keeps
    every event at or after it, and num_recent_events the last of those."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        for name, stamp in [("z", 100.0), ("a", 100.0), ("m", 50.0), ("b", 200.0)]:
            await service.append_event(
                session, Event(author="user", id=name, invocation_id="i", timestamp=stamp)
            )

        async def ids(**config: Any) -> list[str]:
            got = await service.get_session(
                app_name=app, user_id="u", session_id=session.id, config=GetSessionConfig(**config)
            )
            assert got is not None
            return [e.id for e in got.events]

        assert await ids() == ["z", "a", "m", "b"]
        assert await ids(after_timestamp=100.0) == ["z", "a", "b"]
        assert await ids(after_timestamp=100.0, num_recent_events=2) == ["a", "b"]
        assert await ids(num_recent_events=2) == ["m", "b"]

    run(go())


def test_a_writer_without_a_marker(service: AisopodSessionService, app: str) -> None:
    """A session object built by hand (no storage marker) appends when its
    last_update_time is current, and is stale when the session moved on after it."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        await service.append_event(session, delta_event({"k": 1}))
        by_hand = AdkSession(
            id=session.id, app_name=app, user_id="u", last_update_time=session.last_update_time
        )
        await service.append_event(by_hand, delta_event({"k": 2}))
        late = AdkSession(
            id=session.id, app_name=app, user_id="u", last_update_time=session.last_update_time
        )
        with pytest.raises(StaleSessionError):
            await service.append_event(late, delta_event({"k": 3}))
        got = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert got is not None
        assert got.state == {"k": 2}
        assert len(got.events) == 2

    run(go())


def test_a_writer_without_a_marker_whose_events_are_current(
    service: AisopodSessionService, app: str
) -> None:
    """A session object without a marker whose clock lags the store's but whose events
    are the stored ones is current, as ADK's services have it; once the store holds an
    event it has not seen, it is stale."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        await service.append_event(session, delta_event({"k": 1}))
        session._storage_update_marker = None
        session.last_update_time -= 0.0001
        await service.append_event(session, delta_event({"k": 2}))
        other = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert other is not None
        await service.append_event(other, delta_event({"k": 3}))
        session._storage_update_marker = None
        session.last_update_time -= 0.0001
        with pytest.raises(StaleSessionError):
            await service.append_event(session, delta_event({"k": 4}))
        got = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert got is not None
        assert got.state == {"k": 3}
        assert [e.id for e in got.events] == [e.id for e in other.events]

    run(go())


def test_state_values_adk_cannot_encode(service: AisopodSessionService, app: str) -> None:
    """In an event, such a value is kept as the text ADK's serializer writes for it (as
    ADK's services keep it); given to create_session, it is refused."""

    def not_data() -> int:
        return 1

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        await service.append_event(session, delta_event({"callback": not_data, "ok": 2}))
        got = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert got is not None
        assert got.state["ok"] == 2
        assert isinstance(got.state["callback"], str)
        assert got.events[0].actions.state_delta == got.state
        with pytest.raises(InvalidPayload):
            await service.create_session(app_name=app, user_id="u", state={"f": not_data})
        listed = (await service.list_sessions(app_name=app, user_id="u")).sessions
        assert [s.id for s in listed] == [session.id]

    run(go())


def test_last_update_time_is_the_events_timestamp(service: AisopodSessionService, app: str) -> None:
    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        when = session.last_update_time + 10
        await service.append_event(session, text_event("user", "hi", timestamp=when))
        assert session.last_update_time == when
        got = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert got is not None
        assert got.last_update_time == when
        listed = (await service.list_sessions(app_name=app, user_id="u")).sessions
        assert [s.last_update_time for s in listed] == [when]

    run(go())


def test_a_stale_writer_is_refused_and_writes_nothing(
    service: AisopodSessionService, app: str
) -> None:
    async def go() -> None:
        original = await service.create_session(app_name=app, user_id="u")
        await service.append_event(original, delta_event({"sk1": "v1"}))
        fresh = await service.get_session(app_name=app, user_id="u", session_id=original.id)
        assert fresh is not None
        await service.append_event(fresh, delta_event({"sk2": "v2"}))
        with pytest.raises(StaleSessionError, match="modified in storage"):
            await service.append_event(original, delta_event({"sk3": "v3"}, invocation_id="x"))
        final = await service.get_session(app_name=app, user_id="u", session_id=original.id)
        assert final is not None
        assert len(final.events) == 2
        assert final.state == {"sk1": "v1", "sk2": "v2"}

    run(go())


def test_concurrent_writers_one_wins(service: AisopodSessionService, app: str) -> None:
    """Two copies of one session appending at once: one succeeds, one is stale."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        for i in range(4):
            latest = await service.get_session(app_name=app, user_id="u", session_id=session.id)
            assert latest is not None
            a, b = latest.model_copy(deep=True), latest.model_copy(deep=True)
            results = await asyncio.gather(
                service.append_event(a, delta_event({f"k{i}": "a"})),
                service.append_event(b, delta_event({f"k{i}": "b"})),
                return_exceptions=True,
            )
            assert sorted(type(r).__name__ for r in results) == ["Event", "StaleSessionError"]
        final = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert final is not None
        assert len(final.events) == 4

    run(go())


def test_no_false_stale_from_timestamps(service: AisopodSessionService, app: str) -> None:
    """A current session is never stale, whatever its timestamps say (ADK #3717)."""

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        await service.append_event(session, text_event("user", "a", timestamp=2e9))
        session.last_update_time -= 0.0001  # a float round trip gone wrong
        await service.append_event(session, text_event("user", "b", timestamp=1.0))
        got = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert got is not None
        assert [e.content.parts[0].text for e in got.events if e.content and e.content.parts] == [
            "a",
            "b",
        ]

    run(go())


def test_append_to_a_deleted_session_is_refused(service: AisopodSessionService, app: str) -> None:
    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        await service.delete_session(app_name=app, user_id="u", session_id=session.id)
        with pytest.raises(SessionNotFoundError):
            await service.append_event(session, text_event("user", "hi"))
        assert await service.get_session(app_name=app, user_id="u", session_id=session.id) is None

    run(go())


def test_list_sessions(service: AisopodSessionService, store: SessionStore, app: str) -> None:
    """One user's sessions or every user's, with state, without events, oldest first;
    sessions other writers made under the agent are not listed."""

    async def go() -> None:
        for user, sid in [("u1", "a"), ("u1", "b"), ("u2", "c")]:
            session = await service.create_session(
                app_name=app, user_id=user, session_id=sid, state={"key": sid}
            )
            await service.append_event(session, text_event("user", sid))
        store.get_or_create(f"agent:{app}:telegram:direct:42", user_id="u1")
        one = (await service.list_sessions(app_name=app, user_id="u1")).sessions
        assert [(s.id, s.state, s.events) for s in one] == [
            ("a", {"key": "a"}, []),
            ("b", {"key": "b"}, []),
        ]
        every = (await service.list_sessions(app_name=app)).sessions
        assert [(s.user_id, s.id) for s in every] == [("u1", "a"), ("u1", "b"), ("u2", "c")]
        assert (await service.list_sessions(app_name=app, user_id="nobody")).sessions == []

    run(go())


def test_ids_keep_case_and_odd_characters(service: AisopodSessionService, app: str) -> None:
    async def go() -> None:
        names = [("User", "S-1"), ("user", "s-1"), ("a:b", "c"), ("a", "b:c"), ("ü %", "x\ty")]
        for user, sid in names:
            await service.create_session(app_name=app, user_id=user, session_id=sid)
        listed = (await service.list_sessions(app_name=app)).sessions
        assert sorted((s.user_id, s.id) for s in listed) == sorted(names)

    run(go())


def test_conversations_are_visible_to_the_store(
    service: AisopodSessionService, store: SessionStore, app: str
) -> None:
    """Text, tool calls and tool results are native messages: context, search and
    export work on ADK sessions."""
    word = f"zebra{uuid.uuid4().hex[:8]}"

    async def go() -> AdkSession:
        session = await service.create_session(app_name=app, user_id="u")
        await service.append_event(session, text_event("user", f"find the {word}"))
        call = types.FunctionCall(id="c1", name="lookup", args={"q": word})
        await service.append_event(
            session,
            Event(
                invocation_id="inv",
                author="helper",
                content=types.Content(role="model", parts=[types.Part(function_call=call)]),
            ),
        )
        responses = [
            types.Part(
                function_response=types.FunctionResponse(
                    id="c1", name="lookup", response={"result": "found"}
                )
            ),
            types.Part(
                function_response=types.FunctionResponse(id="c2", name="other", response={"x": 1})
            ),
        ]
        await service.append_event(
            session,
            Event(
                invocation_id="inv",
                author="helper",
                content=types.Content(role="user", parts=responses),
            ),
        )
        await service.append_event(session, text_event("model", "here it is"))
        await service.append_event(session, delta_event({"done": True}))
        return session

    session = run(go())
    ours = store.current(adk_key(app, "u", session.id))
    assert ours is not None
    messages = store.context(ours.id).messages
    assert [m.role for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert messages[2].tool_call_id == "c1"
    assert store.search(word, session_id=ours.id).hits
    out = io.StringIO()
    assert export_transcript(store, ours.id, out) >= 6
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any(EVENT_KEY in (line.get("message") or {}) for line in lines)
    # And the events read back all the same.
    got = run(service.get_session(app_name=app, user_id="u", session_id=session.id))
    assert got == session


def test_bad_input_changes_nothing(
    service: AisopodSessionService, store: SessionStore, app: str
) -> None:
    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u")
        with pytest.raises(InvalidPayload):
            await service.append_event(session, {"author": "user"})  # type: ignore[arg-type]
        with pytest.raises(InvalidInput):
            await service.append_event("s", text_event("user", "x"))  # type: ignore[arg-type]
        with pytest.raises(PayloadTooLarge):
            await service.append_event(session, text_event("user", "x" * (17 * 1024 * 1024)))
        with pytest.raises(InvalidInput):
            await service.append_event(session, delta_event({"k": float("nan")}))
        with pytest.raises(InvalidInput):
            await service.create_session(app_name="Not An Id", user_id="u")
        with pytest.raises(InvalidInput):
            await service.create_session(app_name=app, user_id=" ")
        with pytest.raises(InvalidInput):
            await service.get_session(app_name=app, user_id="u", session_id="")
        got = await service.get_session(app_name=app, user_id="u", session_id=session.id)
        assert got == session
        assert got.events == []

    run(go())
    ours = store.current(adk_key(app, "u", session_id_of(store, app)))
    assert ours is not None
    assert ours.entry_count == 0


def session_id_of(store: SessionStore, app: str) -> str:
    (only,) = store.list(agent_id=app).sessions
    assert only.key is not None
    return only.key.rsplit(":", 1)[1]


def test_a_runner_keeps_its_conversation(store: SessionStore, app: str, tmp_path: Path) -> None:
    """ADK's own Runner, on a model that answers without a network."""
    from google.adk.agents import LlmAgent
    from google.adk.models.base_llm import BaseLlm
    from google.adk.models.llm_response import LlmResponse
    from google.adk.runners import Runner

    class Echo(BaseLlm):
        async def generate_content_async(self, llm_request: Any, stream: bool = False) -> Any:
            seen = sum(1 for c in llm_request.contents if c.role == "user")
            yield LlmResponse(
                content=types.Content(role="model", parts=[types.Part(text=f"turn {seen}")])
            )

    service = AisopodSessionService(store)
    agent = LlmAgent(name="helper", model=Echo(model="echo"), instruction="be brief")
    runner = Runner(agent=agent, app_name=app, session_service=service)

    async def go() -> list[str]:
        session = await service.create_session(app_name=app, user_id="u")
        answers = []
        for text in ["one", "two"]:
            message = types.Content(role="user", parts=[types.Part(text=text)])
            async for event in runner.run_async(
                user_id="u", session_id=session.id, new_message=message
            ):
                if event.content and event.content.parts and event.content.parts[0].text:
                    answers.append(event.content.parts[0].text)
        return answers

    assert run(go())[-1] == "turn 2"


async def finished_at_once(coroutine: Coroutine[Any, Any, T]) -> tuple[bool, T]:
    """Drive `coroutine` to its end as the event loop would, and say whether it ended in
    its first step: without waiting for anything (a worker thread, say)."""
    first = True
    while True:
        try:
            waited = coroutine.send(None)
        except StopIteration as done:
            return first, done.value
        first = False
        if waited is None:  # a bare yield: the loop runs once
            await asyncio.sleep(0)
        else:  # a future it waits on: resumed once it is done, as a task would be
            await asyncio.wait([waited])


def test_small_reads_of_a_sqlite_file_need_no_worker_thread(
    service: AisopodSessionService, store: SessionStore, app: str
) -> None:
    """On a SQLite file, listings, user state and a window of up to 100 events are read
    at once on the event loop's thread (SQLite answers them without waiting); a whole
    session, and every read on PostgreSQL, go to a worker thread. The answers are the
    same either way."""
    on_file = store.url.startswith("sqlite://")

    async def go() -> None:
        session = await service.create_session(app_name=app, user_id="u", state={"user:k": 1})
        for n in range(3):
            await service.append_event(session, text_event("user", f"message {n}"))
        listed = await finished_at_once(service.list_sessions(app_name=app, user_id="u"))
        assert listed[0] is on_file
        assert [s.id for s in listed[1].sessions] == [session.id]
        user_state = await finished_at_once(service.get_user_state(app_name=app, user_id="u"))
        assert user_state == (on_file, {"k": 1})
        for config, small in [
            (GetSessionConfig(num_recent_events=2), True),
            (GetSessionConfig(num_recent_events=100), True),
            (GetSessionConfig(num_recent_events=101), False),
            (None, False),
        ]:
            at_once, got = await finished_at_once(
                service.get_session(app_name=app, user_id="u", session_id=session.id, config=config)
            )
            assert at_once is (on_file and small)
            assert got is not None
            limit = config.num_recent_events if config is not None else None
            assert got.events == session.events[-limit if limit else 0 :]
            assert got.state == session.state
        # A writer without a marker reads the session's version the same way.
        stale = session.model_copy(deep=True)
        stale._storage_update_marker = None
        appended = await finished_at_once(
            service.append_event(stale, text_event("user", "no marker"))
        )
        assert appended[0] is False  # the append itself goes to the group committer

    run(go())


@pytest.mark.parametrize("handed", ["sync", "async"])
def test_a_store_its_owner_closed_refuses_reads(store_url: str, handed: str) -> None:
    """Once the store handed in is closed by its owner, every read says so, the ones
    made at once included."""
    sync = open_store(store_url)
    given: SessionStore | AsyncSessionStore = (
        sync if handed == "sync" else AsyncSessionStore.borrowing(sync)
    )
    service = AisopodSessionService(given)
    try:
        session = run(service.create_session(app_name="app", user_id="u"))
        run(service.append_event(session, text_event("user", "hi")))
        given.close()
        reads: list[Coroutine[Any, Any, Any]] = [
            service.list_sessions(app_name="app", user_id="u"),
            service.get_user_state(app_name="app", user_id="u"),
            service.get_session(
                app_name="app",
                user_id="u",
                session_id=session.id,
                config=GetSessionConfig(num_recent_events=5),
            ),
        ]
        for read in reads:
            with pytest.raises(StoreUnavailable, match="closed"):
                run(read)
    finally:
        run(service.close())
        sync.close()
