"""Sessions and their keys: get_or_create, current, list, patch, reset, delete, scoping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import attrs
import pytest

from aisopod_session import (
    UNSET,
    AccessDenied,
    ConflictError,
    InvalidInput,
    Origin,
    SessionNotFound,
)
from aisopod_shared import ManualClock, Message
from tests.session.snapshot import snapshot

KEY = "agent:main:telegram:direct:123"


def test_get_or_create_makes_one_session_and_returns_it_again(store: Any) -> None:
    first = store.get_or_create(KEY, origin=Origin(channel="telegram", peer="123"))
    again = store.get_or_create(KEY)
    assert again.id == first.id
    assert first.agent_id == "main"
    assert first.key == KEY
    assert first.status == "active"
    assert first.version == 1
    assert first.entry_count == 0
    assert first.origin == Origin(channel="telegram", peer="123")


def test_a_request_key_without_agent_prefix_belongs_to_the_main_agent(store: Any) -> None:
    session = store.get_or_create("My-Chat")
    assert session.key == "agent:main:my-chat"
    assert store.current("agent:main:my-chat").id == session.id


def test_keys_that_normalise_alike_are_one_conversation(store: Any) -> None:
    a = store.get_or_create("Agent:Main:Telegram:Direct:123")
    b = store.get_or_create(KEY)
    assert a.id == b.id


def test_current_is_none_for_a_key_never_used(store: Any) -> None:
    assert store.current("agent:main:nobody") is None


def test_get_unknown_session_raises(store: Any) -> None:
    with pytest.raises(SessionNotFound):
        store.get("no-such-session")


def test_reset_archives_the_old_session_and_binds_a_new_one(store: Any) -> None:
    old = store.get_or_create(KEY, origin=Origin(channel="telegram"))
    store.append(old.id, Message.user("hello"))
    new = store.reset(KEY)
    assert new.id != old.id
    assert store.current(KEY).id == new.id
    archived = store.get(old.id)
    assert archived.status == "archived"
    assert archived.entry_count == 1
    assert new.origin == Origin(channel="telegram")
    assert [e.text for e in store.history(old.id).entries] == ["hello"]


def test_append_after_a_reset_goes_to_the_new_session(store: Any) -> None:
    old = store.get_or_create(KEY)
    store.reset(KEY)
    current = store.get_or_create(KEY)
    store.append(current.id, Message.user("after"))
    assert store.get(old.id).entry_count == 0
    assert store.get(current.id).entry_count == 1


def test_reset_of_an_unused_key_makes_its_first_session(store: Any) -> None:
    session = store.reset("agent:main:fresh")
    assert store.current("agent:main:fresh").id == session.id


def test_list_is_newest_activity_first_and_pages_with_a_cursor(
    store: Any, clock: ManualClock
) -> None:
    ids = []
    for n in range(7):
        clock.advance(seconds=1)
        ids.append(store.get_or_create(f"agent:main:chat-{n}").id)
    clock.advance(seconds=1)
    store.append(ids[2], Message.user("bump"))  # now the most recent
    expected = [ids[2], *reversed([i for i in ids if i != ids[2]])]
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list(limit=3, cursor=cursor)
        assert len(page) <= 3
        seen.extend(s.id for s in page.sessions)
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == expected


def test_list_pages_are_stable_when_times_tie(store: Any) -> None:
    ids = {store.get_or_create(f"agent:main:tie-{n}").id for n in range(5)}
    first = store.list(limit=2)
    second = store.list(limit=2, cursor=first.cursor)
    third = store.list(limit=2, cursor=second.cursor)
    got = [s.id for p in (first, second, third) for s in p.sessions]
    assert set(got) == ids
    assert len(got) == len(ids)
    assert third.cursor is None


def test_list_filters(store: Any, clock: ManualClock) -> None:
    t0 = clock.now()
    tg = store.get_or_create("agent:main:telegram:direct:1", origin=Origin(channel="telegram"))
    ops = store.get_or_create("agent:ops:discord:group:g", origin=Origin(channel="discord"))
    clock.advance(minutes=5)
    late = store.get_or_create("agent:main:slack:channel:c1", origin=Origin(channel="slack"))
    store.reset("agent:main:telegram:direct:1")

    def ids(**kw: Any) -> set[str]:
        return {s.id for s in store.list(**kw).sessions}

    assert len(ids()) == 4
    assert len(ids(agent_id="main")) == 3
    assert tg.id in ids(status="archived")
    assert tg.id not in ids(status="active")
    assert ids(channel="Telegram") == {tg.id, store.current("agent:main:telegram:direct:1").id}
    assert ids(key_prefix="agent:main:slack:") == {late.id}
    assert late.id in ids(updated_after=t0 + timedelta(minutes=1))
    assert tg.id not in ids(updated_after=t0 + timedelta(minutes=10))
    # tg was archived by the reset, at t0 + 5 minutes: only ops kept t0.
    assert ids(updated_before=t0 + timedelta(minutes=1)) == {ops.id}
    window = {
        "updated_after": t0 - timedelta(minutes=1),
        "updated_before": t0 + timedelta(minutes=1),
    }
    assert ids(**window) == {ops.id}
    assert ids(updated_after=t0, updated_before=t0) == set()
    assert ids(agent_id="main", updated_before=t0 + timedelta(minutes=1)) == set()
    assert len(ids(updated_before=t0 + timedelta(minutes=6))) == 4
    assert store.for_agent("main").list(updated_before=t0 + timedelta(minutes=1)).sessions == ()
    assert len(ids(key="agent:main:telegram:direct:1")) == 2


def test_patch_sets_title_and_merges_metadata(store: Any) -> None:
    session = store.get_or_create(KEY, metadata={"a": 1, "b": {"x": 1, "y": 2}, "c": 3})
    patched = store.patch(
        session.id,
        title="Weekend plans",
        metadata={"b": {"y": None, "z": 3}, "c": None, "d": [1, 2]},
    )
    assert patched.title == "Weekend plans"
    assert patched.metadata == {"a": 1, "b": {"x": 1, "z": 3}, "d": [1, 2]}
    assert patched.version == session.version + 1
    cleared = store.patch(session.id, title=None)
    assert cleared.title is None
    assert cleared.metadata == patched.metadata
    untouched = store.patch(session.id, title=UNSET)
    assert untouched.title is None


def test_patch_is_not_activity(store: Any, clock: ManualClock) -> None:
    session = store.get_or_create(KEY)
    clock.advance(hours=1)
    patched = store.patch(session.id, metadata={"k": "v"})
    assert patched.active_at == session.active_at
    assert patched.updated_at > session.updated_at


def test_patch_with_a_stale_version_conflicts_and_writes_nothing(store: Any) -> None:
    session = store.get_or_create(KEY)
    store.patch(session.id, title="one", expected_version=session.version)
    with pytest.raises(ConflictError) as caught:
        store.patch(session.id, title="two", expected_version=session.version)
    assert caught.value.expected == session.version
    assert caught.value.actual == session.version + 1
    assert store.get(session.id).title == "one"


def test_delete_removes_the_session_its_entries_and_its_binding(store: Any) -> None:
    session = store.get_or_create(KEY)
    store.append(session.id, [Message.user("a"), Message.assistant("b")])
    assert store.delete(session.id) is True
    assert store.delete(session.id) is False
    with pytest.raises(SessionNotFound):
        store.get(session.id)
    with pytest.raises(SessionNotFound):
        store.history(session.id)
    assert store.current(KEY) is None
    assert store.get_or_create(KEY).id != session.id


def test_a_scoped_handle_sees_only_its_agent(store: Any) -> None:
    mine = store.get_or_create("agent:ops:main")
    theirs = store.get_or_create("agent:main:main")
    ops = store.for_agent("ops")
    assert ops.get(mine.id).id == mine.id
    assert {s.id for s in ops.list().sessions} == {mine.id}
    assert ops.get_or_create("chat").key == "agent:ops:chat"
    attempts: list[Callable[[], Any]] = [
        lambda: ops.get(theirs.id),
        lambda: ops.history(theirs.id),
        lambda: ops.append(theirs.id, Message.user("x")),
        lambda: ops.patch(theirs.id, title="x"),
        lambda: ops.delete(theirs.id),
        lambda: ops.get_or_create("agent:main:main"),
        lambda: ops.current("agent:main:main"),
        lambda: ops.reset("agent:main:main"),
        lambda: ops.list(agent_id="main"),
        lambda: ops.for_agent("main"),
    ]
    for attempt in attempts:
        with pytest.raises(AccessDenied):
            attempt()
    assert store.get(theirs.id).title is None
    assert store.get(theirs.id).entry_count == 0


def test_list_limit_is_bounded(store: Any) -> None:
    with pytest.raises(InvalidInput):
        store.list(limit=0)
    with pytest.raises(InvalidInput):
        store.list(limit=1_000_000)
    with pytest.raises(InvalidInput):
        store.list(cursor="not-a-cursor")
    with pytest.raises(InvalidInput, match="updated_before"):
        store.list(updated_before="2026-01-01")
    with pytest.raises(InvalidInput, match="updated_after"):
        store.list(updated_after=datetime(2026, 1, 1))  # naive: ambiguous


def test_archive_marks_a_session_no_key_points_at(store: Any, clock: ManualClock) -> None:
    main = store.get_or_create(KEY)
    store.append(main.id, [Message.user("q"), Message.assistant("a")])
    fork = store.fork(main.id)
    clock.advance(minutes=1)
    archived = store.archive(fork.id, expected_version=fork.version)
    assert archived == attrs.evolve(
        fork, status="archived", version=fork.version + 1, updated_at=clock.now()
    )
    assert store.get(fork.id) == archived
    assert store.archive(fork.id) == archived  # already archived: nothing written
    assert [e.id for e in store.history(fork.id).entries] == [
        e.id for e in store.history(main.id).entries
    ]
    assert {s.id for s in store.list(status="archived").sessions} == {fork.id}
    assert store.for_agent("main").archive(fork.id) == archived


def test_archive_refuses_a_keys_current_session(store: Any) -> None:
    main = store.get_or_create(KEY)
    other = store.fork(main.id)
    before = snapshot(store)
    with pytest.raises(InvalidInput, match="reset the key") as caught:
        store.archive(main.id)
    assert caught.value.field == "session_id"
    with pytest.raises(ConflictError):
        store.archive(other.id, expected_version=other.version + 1)
    with pytest.raises(SessionNotFound):
        store.archive("no-such-session")
    assert snapshot(store) == before
    new = store.reset(KEY)
    assert store.archive(main.id) == store.get(main.id)  # the reset archived it
    assert store.get(main.id).status == "archived"
    assert store.current(KEY) == new
