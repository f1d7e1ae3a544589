"""Branches: rewind moves the leaf, nothing is deleted; fork copies the active path."""

from __future__ import annotations

from typing import Any

import pytest

from aisopod_session import (
    ConflictError,
    ForkRef,
    InvalidInput,
    KeepLastTurns,
    NewEntry,
    SessionNotFound,
)
from aisopod_shared import Message
from tests.session.conversation import conversation


def _texts(entries: Any) -> list[str]:
    return [e.text for e in entries]


def test_rewind_then_append_starts_a_branch_and_keeps_the_old_one(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(t) for t in ("a", "b", "c", "d")])
    rewound = store.rewind(session.id, 2)
    assert rewound.leaf_seq == 2
    assert rewound.version == session.version + 2
    new = store.append(session.id, Message.user("x"))
    assert new[0].seq == 5
    assert new[0].parent_seq == 2
    assert _texts(store.path(session.id).entries) == ["a", "b", "x"]
    assert _texts(store.history(session.id).entries) == ["a", "b", "c", "d", "x"]
    branches = store.branches(session.id)
    assert [(b.leaf_seq, b.length, b.active) for b in branches] == [(4, 4, False), (5, 3, True)]
    assert branches[1].leaf_id == new[0].id


def test_branches_of_a_tree_with_several_forks_in_place(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(str(n)) for n in range(1, 6)])  # 1..5
    store.rewind(session.id, 3)
    store.append(session.id, [Message.user("6"), Message.user("7")])  # 6 <- 3, 7 <- 6
    store.rewind(session.id, 1)
    store.append(session.id, Message.user("8"))  # 8 <- 1
    store.rewind(session.id, 6)
    store.append(session.id, Message.user("9"))  # 9 <- 6
    got = [(b.leaf_seq, b.length, b.active) for b in store.branches(session.id)]
    assert got == [(5, 5, False), (7, 5, False), (8, 2, False), (9, 5, True)]
    assert _texts(store.path(session.id).entries) == ["1", "2", "3", "6", "9"]


def test_a_rewound_leaf_that_has_children_is_the_active_branch(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(str(n)) for n in range(1, 4)])
    store.rewind(session.id, 2)
    got = [(b.leaf_seq, b.length, b.active) for b in store.branches(session.id)]
    assert got == [(2, 2, True), (3, 3, False)]
    assert _texts(store.context(session.id).messages) == ["1", "2"]


def test_rewind_to_zero_starts_a_new_root(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user("a"), Message.user("b")])
    store.rewind(session.id, 0)
    assert store.path(session.id).entries == ()
    assert store.context(session.id).messages == ()
    entry = store.append(session.id, Message.user("again"))[0]
    assert entry.parent_seq is None
    assert _texts(store.path(session.id).entries) == ["again"]


def test_rewind_with_a_summary_records_the_abandoned_branch(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    appended = store.append(session.id, [Message.user("a"), Message.user("b"), Message.user("c")])
    store.rewind(session.id, 1, summary="tried b and c; dead end")
    path = store.path(session.id).entries
    assert [e.type for e in path] == ["message", "branch_summary"]
    assert path[1].payload == {"fromId": appended[2].id, "summary": "tried b and c; dead end"}
    context = store.context(session.id)
    assert [m.role for m in context.messages] == ["user", "branchSummary"]
    assert context.for_model()[1].text.endswith("tried b and c; dead end")


def test_bad_rewinds_are_rejected(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("a"))
    for bad in (-1, 2, "1", None):
        with pytest.raises(InvalidInput):
            store.rewind(session.id, bad)
    with pytest.raises(ConflictError):
        store.rewind(session.id, 0, expected_version=session.version)
    assert store.get(session.id).leaf_seq == 1


def test_fork_copies_the_active_path_and_leaves_the_source_alone(store: Any) -> None:
    session = store.get_or_create("agent:main:main", metadata={"m": 1})
    conversation(store, session.id, 3)
    store.rewind(session.id, 5)
    store.append(session.id, Message.user("on the branch"))
    source_before = store.get(session.id)
    history_before = store.history(session.id, after=0, limit=1000).entries
    path = store.path(session.id, last=1000).entries
    fork = store.fork(session.id)
    assert fork.id != session.id
    assert fork.fork_parent == ForkRef(session.id, source_before.leaf_seq)
    assert fork.key is None
    copied = store.history(fork.id, after=0, limit=1000).entries
    assert [e.seq for e in copied] == list(range(1, len(path) + 1))
    assert [e.parent_seq for e in copied] == [None, *range(1, len(path))]
    assert [(e.id, e.type, e.payload, e.created_at) for e in copied] == [
        (e.id, e.type, e.payload, e.created_at) for e in path
    ]
    assert fork.entry_count == len(path)
    assert fork.message_count == len(path)
    assert fork.usage == sum((e.usage for e in path if e.usage), type(fork.usage)())
    assert fork.leaf_seq == len(path)
    assert store.get(session.id) == source_before
    assert store.history(session.id, after=0, limit=1000).entries == history_before


def test_fork_at_an_earlier_entry_with_a_key(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(t) for t in "abcd"])
    old = store.get_or_create("agent:main:side")
    fork = store.fork(session.id, 2, key="agent:main:side", title="side quest")
    assert _texts(store.history(fork.id).entries) == ["a", "b"]
    assert fork.title == "side quest"
    assert store.current("agent:main:side").id == fork.id
    assert store.get(old.id).status == "archived"
    more = store.append(fork.id, Message.user("e"))
    assert more[0].seq == 3
    with pytest.raises(InvalidInput):
        store.fork(session.id, 99)


def test_forks_lists_the_sessions_forked_from_a_session(store: Any, clock: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(t) for t in "abcd"])
    assert store.forks(session.id) == ()
    first = store.fork(session.id, 2)
    clock.advance(seconds=1)
    second = store.fork(session.id, key="agent:main:side")
    grandchild = store.fork(first.id)
    other = store.get_or_create("agent:main:other")
    store.fork(other.id)  # an empty session's fork has no parent
    assert [s.id for s in store.forks(session.id)] == [second.id, first.id]
    assert store.forks(session.id, limit=1) == (store.get(second.id),)
    assert [s.id for s in store.forks(first.id)] == [grandchild.id]
    assert store.forks(other.id) == ()
    assert [s.id for s in store.for_agent("main").forks(session.id)] == [second.id, first.id]
    store.delete(second.id)
    assert [s.id for s in store.forks(session.id)] == [first.id]
    with pytest.raises(InvalidInput):
        store.forks(session.id, limit=0)
    with pytest.raises(SessionNotFound):
        store.forks("no-such-session")


def test_a_fork_keeps_compaction_working(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    conversation(store, session.id, 5)
    store.compact(session.id, KeepLastTurns(1))
    store.append(session.id, NewEntry.model_change("other", "m-2"))
    fork = store.fork(session.id)
    original = store.context(session.id)
    copied = store.context(fork.id)
    assert copied.messages == original.messages
    assert copied.model == original.model
    assert store.get(fork.id).compaction_count == 1


def test_path_pages_backwards_along_the_branch(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(str(n)) for n in range(1, 8)])
    store.rewind(session.id, 4)
    store.append(session.id, [Message.user(str(n)) for n in range(8, 11)])  # 8,9,10 <- 4
    page = store.path(session.id, last=3)
    assert _texts(page.entries) == ["8", "9", "10"]
    page = store.path(session.id, last=3, before=page.cursor)
    assert _texts(page.entries) == ["2", "3", "4"]
    page = store.path(session.id, last=3, before=page.cursor)
    assert _texts(page.entries) == ["1"]
    assert page.cursor is None


def test_path_reads_any_branch_by_its_leaf(store: Any) -> None:
    """`leaf=` reads the branch ending at an entry (an abandoned tip, or the path to
    any entry), pages back along it, and refuses an entry that is not there."""
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(str(n)) for n in range(1, 6)])  # 1..5
    store.rewind(session.id, 2)
    store.append(session.id, [Message.user("6"), Message.user("7")])  # 6 <- 2
    assert _texts(store.path(session.id).entries) == ["1", "2", "6", "7"]
    abandoned = store.path(session.id, leaf=5, last=2)
    assert _texts(abandoned.entries) == ["4", "5"]
    assert _texts(store.path(session.id, cursor=abandoned.next).entries) == ["1", "2", "3"]
    assert _texts(store.path(session.id, leaf=3).entries) == ["1", "2", "3"]
    for leaf in (0, 8, -1):
        with pytest.raises(InvalidInput) as refused:
            store.path(session.id, leaf=leaf)
        assert refused.value.field == "leaf"
    with pytest.raises(InvalidInput):
        store.path(session.id, leaf=5, before=4)
