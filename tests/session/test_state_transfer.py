"""Dumps, restores and copies carry state in all three scopes; checksums cover a session's own.

A session's state travels as its `state` entries (a store rebuilds the state
at every entry from them); `user:` and `agent:` state as values of their
own, after the sessions. Every store here is compared through the store's
API: the sessions' images and entries, their state at every entry, and the
shared values of every owner.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from aisopod_session import (
    REMOVE,
    AccessDenied,
    KeepLastTurns,
    Message,
    SessionExists,
    SessionStore,
    StoreUnavailable,
    TranscriptError,
    open_store,
)
from aisopod_session._state import SNAPSHOT_EVERY
from aisopod_session._store import engine_of
from aisopod_session.cli import main
from aisopod_session.transfer import (
    DUMP_FORMAT,
    _shared_state,
    copy_store,
    dump_store,
    read_images,
    restore_store,
    session_checksum,
)
from tests.session.conversation import conversation
from tests.session.postgres_schema import temporary_schema

OWNERS = [("user", "main", "ann"), ("user", "main", "bob"), ("user", "ops", "ann")]
AGENTS = ["main", "ops"]


def sync_of(store: Any) -> SessionStore:
    """The synchronous store the transfer functions take (under an async one)."""
    sync: SessionStore = store.sync if hasattr(store, "sync") else store
    return sync


def populate(store: Any) -> int:
    """Sessions of two agents and two users, with state in every scope: changes on
    branches, past a snapshot, before a compaction, in a fork and across a reset.
    Returns how many `user:` and `agent:` values the store holds."""
    ann = store.get_or_create("agent:main:main", user_id="ann")
    first = store.append(
        ann.id,
        Message.user("hi"),
        state={
            "topic": "tea",
            "user:tier": "gold",
            "agent:motd": "hello",
            "temp:scratch": 1,
        },
    )
    store.append(
        ann.id,
        Message.assistant("hello"),
        state={"step": 1, "user:prefs": {"b": 1, "a": [1.0, True, None, "é"]}},
    )
    branch_point = store.history(ann.id).entries[-1].seq
    store.append(ann.id, Message.user("more"), state={"step": 2, "topic": REMOVE})
    store.rewind(ann.id, branch_point)
    store.append(ann.id, Message.user("instead"), state={"step": "b", "nested": {"z": 1, "a": 2}})
    store.fork(ann.id, at_seq=first[-1].seq, key="agent:main:fork")

    bob = store.get_or_create("agent:main:bob", user_id="bob")
    conversation(store, bob.id, 3)
    for n in range(SNAPSHOT_EVERY + 6):
        store.update_state(bob.id, {"n": n, f"k{n % 5}": n, "user:seen": n})
    store.compact(bob.id, KeepLastTurns(1))
    store.append(bob.id, Message.user("after the summary"), state={"n": "last"})
    middle = store.history(bob.id, after=SNAPSHOT_EVERY // 2, limit=1).entries[0].seq
    store.rewind(bob.id, middle)
    store.update_state(bob.id, {"n": "rewound", "agent:count": 3})
    store.reset("agent:main:bob")  # the new session is bob's too

    group = store.get_or_create("agent:main:group")  # no user
    store.append(group.id, Message.user("all of us"), state={"agenda": ["a", "b"]})

    ops = store.for_agent("ops")
    theirs = ops.get_or_create("agent:ops:main", user_id="ann")
    ops.append(
        theirs.id,
        Message.user("status?"),
        state={"user:tier": "silver", "agent:motd": "ops here", "mode": "on call"},
    )
    # user:tier, prefs and seen; agent:motd and count of main; user:tier and agent:motd of ops
    return 7


def own_state(state: Any) -> dict[str, Any]:
    return {k: v for k, v in state.items() if not k.startswith(("user:", "agent:"))}


def picture(store: Any, *, shared: bool = True) -> dict[str, Any]:
    """Everything a store holds that a transfer must keep, read through its API."""
    sessions = {}
    for image, stream in read_images(sync_of(store)):
        entries = list(stream)
        states = [dict(store.state(image.id, at_seq=seq)) for seq in range(len(entries) + 1)]
        at_leaf = dict(store.state(image.id))
        if not shared:
            states, at_leaf = [own_state(s) for s in states], own_state(at_leaf)
        sessions[image.id] = {
            "image": image,
            "entries": entries,
            "state": at_leaf,
            "states": states,
            "branches": store.branches(image.id),
        }
    values: dict[str, Any] = {}
    if shared:
        values = {
            **{f"user {a} {u}": dict(store.user_state(u, a)) for _, a, u in OWNERS},
            **{f"agent {a}": dict(store.agent_state(a)) for a in AGENTS},
        }
    return {"sessions": sessions, "shared": values}


def checksums(store: Any) -> dict[str, str]:
    sync = sync_of(store)
    return {image.id: session_checksum(sync, image.id) for image, _ in read_images(sync)}


def dump_of(store: Any) -> bytes:
    out = io.BytesIO()
    dump_store(sync_of(store), out)
    return out.getvalue()


def records(dump: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in dump.splitlines()]


def lines_of(values: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(value) for value in values]


@pytest.fixture(name="empty_store", params=["sqlite", "postgres"])
def empty_store_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    """A store on an empty database of its own (a SQLite file, or a PostgreSQL schema)."""
    if request.param == "sqlite":
        with open_store(f"sqlite:///{tmp_path / 'empty.db'}") as store:
            yield store
        return
    dsn = request.getfixturevalue("postgres_dsn")
    with temporary_schema(dsn, f"t_{uuid.uuid4().hex[:12]}") as url, open_store(url) as store:
        yield store


@pytest.fixture(name="postgres_url")
def postgres_url_fixture(postgres_dsn: str) -> Iterator[str]:
    """The URL of an empty PostgreSQL schema of the test's own."""
    with temporary_schema(postgres_dsn, f"t_{uuid.uuid4().hex[:12]}") as url:
        yield url


def test_dump_and_restore_carry_state_in_every_scope(store: Any, empty_store: SessionStore) -> None:
    """restore(dump(store)) gives back the sessions with their users, the state at every
    entry of every branch, and every user: and agent: value."""
    shared = populate(store)
    dump = dump_of(store)
    assert records(dump)[0] == {"format": DUMP_FORMAT, "version": 2}
    kinds = [record.get("kind") for record in records(dump)[1:]]
    assert kinds[-shared:] == ["shared_state"] * shared  # after every session
    assert "shared_state" not in kinds[:-shared]
    report = restore_store(empty_store, io.BytesIO(dump))
    assert (report.shared_values, report.shared_kept) == (shared, 0)
    assert picture(empty_store) == picture(store)
    assert checksums(empty_store) == checksums(store)
    users = [image.user_id for image, _ in read_images(empty_store)]
    assert sorted(users, key=lambda user: user or "") == [None, "ann", "ann", "ann", "bob", "bob"]


def test_a_dump_reports_what_it_wrote(store: Any) -> None:
    shared = populate(store)
    report = dump_store(sync_of(store), io.BytesIO())
    assert report.sessions == 6
    assert report.shared_values == shared
    assert report.entries == sum(len(list(entries)) for _, entries in read_images(sync_of(store)))


def test_a_dump_of_chosen_sessions_holds_no_shared_state(store: Any) -> None:
    populate(store)
    session = store.current("agent:main:main")
    out = io.BytesIO()
    report = dump_store(sync_of(store), out, session_ids=[session.id])
    assert (report.sessions, report.shared_values) == (1, 0)
    assert "shared_state" not in [r.get("kind") for r in records(out.getvalue())]


def test_copy_to_postgresql_and_back_carries_every_scope(tmp_path: Path, postgres_url: str) -> None:
    """SQLite -> PostgreSQL -> SQLite keeps everything; copying again writes nothing and
    leaves every value as it was."""
    with (
        open_store(f"sqlite:///{tmp_path / 'source.db'}") as source,
        open_store(postgres_url) as middle,
        open_store(f"sqlite:///{tmp_path / 'back.db'}") as back,
    ):
        shared = populate(source)
        expected, sums = picture(source), checksums(source)
        there = copy_store(source, middle)
        home = copy_store(middle, back)
        for report in (there, home):
            assert (report.sessions, report.copied, report.skipped) == (6, 6, 0)
            assert (report.shared_values, report.shared_written) == (shared, shared)
            assert dict(report.checksums) == sums
        for store in (middle, back):
            assert picture(store) == expected
            assert checksums(store) == sums
        for src, dst in ((source, middle), (middle, back)):
            again = copy_store(src, dst)
            assert (again.copied, again.skipped) == (0, 6)
            assert (again.shared_values, again.shared_written) == (shared, 0)
            assert picture(dst) == expected


def test_a_copy_run_again_writes_only_the_shared_values_that_changed(
    tmp_path: Path, postgres_url: str
) -> None:
    """Values changed in the source are written again; keys only the target has stay."""
    with (
        open_store(f"sqlite:///{tmp_path / 'source.db'}") as source,
        open_store(postgres_url) as target,
    ):
        shared = populate(source)
        copy_store(source, target)
        ann = source.current("agent:main:main")
        assert ann is not None
        source.update_state(ann.id, {"user:tier": "platinum", "agent:motd": REMOVE})
        target.update_state(ann.id, {"agent:only_here": True})
        again = copy_store(source, target)
        assert (again.shared_values, again.shared_written) == (shared - 1, 1)
        assert dict(target.user_state("ann", "main")) == dict(source.user_state("ann", "main"))
        assert target.user_state("ann", "main")["tier"] == "platinum"
        # a removal in the source is not one in the target: a copy adds and sets
        assert dict(target.agent_state("main")) == {"motd": "hello", "count": 3, "only_here": True}
        assert checksums(target) == checksums(source)


def test_a_shared_value_that_does_not_arrive_fails_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        open_store(f"sqlite:///{tmp_path / 'source.db'}") as source,
        open_store(f"sqlite:///{tmp_path / 'target.db'}") as target,
    ):
        populate(source)

        def lost(store: SessionStore, values: Iterable[Any]) -> int:
            return len(list(values))  # counted, never written

        monkeypatch.setattr(_shared_state, "write_shared_state", lost)
        with pytest.raises(StoreUnavailable, match="user:prefs of user ann of agent main"):
            copy_store(source, target)


def test_checksums_cover_the_user_and_the_state_at_the_leaf(
    tmp_path: Path, postgres_url: str
) -> None:
    """Equal across stores; different when only the user_id differs, or when the state
    kept at the leaf does (a copy then writes that session again)."""
    with (
        open_store(f"sqlite:///{tmp_path / 'source.db'}") as source,
        open_store(postgres_url) as copy,
        open_store(f"sqlite:///{tmp_path / 'other.db'}") as other,
    ):
        populate(source)
        copy_store(source, copy)
        sums = checksums(source)
        assert checksums(copy) == sums
        ann = source.current("agent:main:main")
        assert ann is not None

        # the same session, with another user
        lines = records(dump_of(source))
        for line in lines:
            if line.get("kind") == "session" and line["id"] == ann.id:
                line["user_id"] = "someone else"
        restore_store(other, lines_of(lines))
        differs = {sid for sid, sum_ in checksums(other).items() if sums[sid] != sum_}
        assert differs == {ann.id}

        # the same entries, with other state kept at the leaf
        with engine_of(copy).backend.write() as tx:
            ref = tx.session_ref(ann.id)
            assert ref is not None
            tx.set_session_state(ref.sid, orjson.dumps({"topic": "coffee"}), 0)
        assert copy.state(ann.id)["topic"] == "coffee"
        assert session_checksum(copy, ann.id) != sums[ann.id]
        again = copy_store(source, copy)
        assert (again.copied, again.skipped) == (1, 5)
        assert checksums(copy) == sums
        assert copy.state(ann.id)["topic"] == "tea"

        # and a change of state in the source is a change of its checksum
        source.update_state(ann.id, {"topic": "coffee"})
        assert session_checksum(source, ann.id) != sums[ann.id]


def test_a_scoped_stores_dump_holds_only_its_agents_state(
    store: Any, empty_store: SessionStore
) -> None:
    populate(store)
    ops = sync_of(store).for_agent("ops")
    dump = dump_of(ops)
    lines = records(dump)[1:]
    assert {line["agent_id"] for line in lines if line["kind"] != "entry"} == {"ops"}
    assert [line["key"] for line in lines if line["kind"] == "shared_state"] == ["tier", "motd"]
    report = restore_store(empty_store.for_agent("ops"), io.BytesIO(dump))
    assert (len(report.sessions), report.shared_values) == (1, 2)
    assert dict(empty_store.user_state("ann", "ops")) == {"tier": "silver"}
    assert dict(empty_store.agent_state("ops")) == {"motd": "ops here"}
    assert dict(empty_store.user_state("ann", "main")) == {}


def test_a_scoped_store_refuses_another_agents_shared_state(
    store: Any, empty_store: SessionStore
) -> None:
    """As it refuses another agent's sessions: nothing of the other agent is written."""
    populate(store)
    lines = records(dump_of(store))
    theirs = [lines[0], *(line for line in lines if line.get("kind") == "shared_state")]
    ops = empty_store.for_agent("ops")
    with pytest.raises(AccessDenied):
        restore_store(ops, lines_of(theirs))
    with pytest.raises(AccessDenied):
        restore_store(ops, io.BytesIO(dump_of(store)))  # main's sessions come first
    assert dict(empty_store.user_state("ann", "main")) == {}
    assert dict(empty_store.agent_state("main")) == {}
    with pytest.raises(AccessDenied):
        copy_store(sync_of(store), ops)


def test_an_old_dump_without_shared_state_still_restores(
    store: Any, empty_store: SessionStore
) -> None:
    """A version 1 dump (sessions and entries only) restores the sessions, their users
    and their own state at every entry."""
    populate(store)
    old = [
        {"format": DUMP_FORMAT, "version": 1},
        *(line for line in records(dump_of(store))[1:] if line["kind"] != "shared_state"),
    ]
    report = restore_store(empty_store, lines_of(old))
    assert (len(report.sessions), report.shared_values) == (6, 0)
    assert picture(empty_store, shared=False) == picture(store, shared=False)
    assert checksums(empty_store) == checksums(store)
    assert dict(empty_store.agent_state("main")) == {}


def test_a_dump_of_another_version_or_with_lines_out_of_place_is_refused(
    store: Any, empty_store: SessionStore
) -> None:
    populate(store)
    lines = records(dump_of(store))
    shared = next(line for line in lines if line.get("kind") == "shared_state")
    for bad, reason in (
        ([{"format": DUMP_FORMAT, "version": 3}], "dump version 3"),
        ([{"format": DUMP_FORMAT, "version": 1}, shared], "expected a session line"),
        ([lines[0], {**shared, "kind": "entry"}], "expected a session or shared_state line"),
    ):
        with pytest.raises(TranscriptError, match=reason):
            restore_store(empty_store, lines_of(bad))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"scope": "app"}, "scope is user or agent"),
        ({"user_id": None}, "a user value has a user_id"),
        ({"scope": "agent"}, "a user value has a user_id, an agent value none"),
        ({"key": ""}, "key must not be empty"),
        ({"key": 5}, "not a valid SharedValue line"),
    ],
)
def test_a_malformed_shared_state_line_is_named(
    tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    good: dict[str, Any] = {
        "kind": "shared_state",
        "scope": "user",
        "agent_id": "main",
        "user_id": "ann",
        "key": "tier",
        "value": "gold",
    }
    lines: list[dict[str, Any]] = [
        {"format": DUMP_FORMAT, "version": 2},
        good,
        {**good, "key": "x", **change},
    ]
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        with pytest.raises(TranscriptError, match=reason) as caught:
            restore_store(store, lines_of(lines), name="bad.jsonl")
        assert caught.value.line == 3


def test_a_restore_keeps_the_stores_shared_values_unless_told_to_replace(
    store: Any, empty_store: SessionStore
) -> None:
    shared = populate(store)
    dump = dump_of(store)
    mine = empty_store.get_or_create("agent:main:mine", user_id="ann")
    empty_store.update_state(mine.id, {"user:tier": "bronze", "user:own": 1})
    report = restore_store(empty_store, io.BytesIO(dump))
    assert (report.shared_values, report.shared_kept) == (shared - 1, 1)
    assert dict(empty_store.user_state("ann", "main"))["tier"] == "bronze"
    with pytest.raises(SessionExists):
        restore_store(empty_store, io.BytesIO(dump))
    again = restore_store(empty_store, io.BytesIO(dump), replace=True)
    assert (again.shared_values, again.shared_kept) == (shared, 0)
    assert dict(empty_store.user_state("ann", "main")) == {
        **store.user_state("ann", "main"),
        "own": 1,
    }


def test_the_cli_reports_shared_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """dump, restore and copy say how many user: and agent: values they moved."""
    db, restored, copied = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db", "c.db"))
    with open_store(db) as source:
        shared = populate(source)
        entries = sum(len(list(stream)) for _, stream in read_images(source))
    counts = f"6 sessions, {entries} entries, {shared} user: and agent: state values"
    dump = tmp_path / "all.jsonl"
    assert main(["--db", db, "dump", "-o", str(dump)]) == 0
    assert f"dumped {counts}\n" in capsys.readouterr().err
    assert main(["--db", restored, "restore", str(dump)]) == 0
    assert capsys.readouterr().out == f"restored {counts}\n"
    assert main(["--db", db, "copy", "--to", copied, "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["shared_values"], report["shared_written"]) == (shared, shared)
    assert main(["--db", db, "copy", "--to", copied]) == 0
    out = capsys.readouterr().out
    assert f"{shared} user: and agent: state values verified (0 written)" in out
