"""Results people loop over: pages and contexts iterate and index like their items,
and every page's `next` and `previous` is the one argument that fetches the page
after it or before it."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import Any

import pytest

from aisopod_session import InvalidInput
from aisopod_shared import ManualClock, Message
from tests.session.conversation import conversation


@pytest.fixture(name="session_id")
def session_id_fixture(store: Any) -> str:
    session = store.get_or_create("agent:main:main")
    for n in range(23):
        store.append(session.id, [Message.user(f"question {n} about lisbon")])
    return str(session.id)


def test_every_result_iterates_and_indexes_as_its_items(store: Any, session_id: str) -> None:
    other = store.get_or_create("agent:main:other")
    conversation(store, other.id, 2)
    sessions = store.list()
    assert list(sessions) == list(sessions.sessions)
    assert sessions[0] == sessions.sessions[0]
    history = store.history(session_id, last=5)
    assert [e.seq for e in history] == [19, 20, 21, 22, 23]
    assert (history[0], history[-1], len(history)) == (history.entries[0], history.entries[-1], 5)
    path = store.path(session_id, last=3)
    assert [e.seq for e in path] == [21, 22, 23]
    hits = store.search("lisbon", limit=4)
    assert list(hits) == list(hits.hits)
    assert hits[0].session_id == session_id
    context = store.context(other.id)
    assert list(context) == list(context.messages)
    assert (context[0].role, len(context)) == ("system", len(context.messages))


def test_next_and_previous_walk_the_history_with_one_argument(store: Any, session_id: str) -> None:
    page = store.history(session_id, limit=10)
    seqs = [[e.seq for e in page]]
    while page.next is not None:
        page = store.history(session_id, cursor=page.next, limit=10)
        seqs.append([e.seq for e in page])
    assert seqs == [list(range(14, 24)), list(range(4, 14)), [1, 2, 3]]
    assert page.previous == "after:3"
    forward = store.history(session_id, cursor=page.previous, limit=10)
    assert [e.seq for e in forward] == list(range(4, 14))
    assert forward.next == "after:13"
    assert forward.previous == "before:4"
    assert [e.seq for e in store.history(session_id, cursor=forward.next, limit=10)] == list(
        range(14, 24)
    )
    path = store.path(session_id, last=20)
    assert [e.seq for e in store.path(session_id, cursor=path.next, last=20)] == [1, 2, 3]


def test_list_and_search_pages_continue_from_next(store: Any, session_id: str) -> None:
    for n in range(3):
        store.get_or_create(f"agent:main:s{n}")
    first = store.list(limit=3)
    rest = store.list(limit=3, cursor=first.next)
    assert len({s.id for s in [*first, *rest]}) == 4
    hits = store.search("lisbon", limit=20)
    more = store.search("lisbon", limit=20, cursor=hits.next)
    assert len({h.seq for h in [*hits, *more]}) == 23


def walk_both_ways(
    read: Callable[[str | None], Any], item: Callable[[Any], Hashable]
) -> list[list[Hashable]]:
    """The pages `read` gives from the first by `next` to the end, checking that
    `previous` from there gives the same pages in reverse, back to the first."""
    page = read(None)
    assert page.previous is None
    forward = [[item(x) for x in page]]
    while page.next is not None:
        page = read(page.next)
        forward.append([item(x) for x in page])
    backward = [[item(x) for x in page]]
    while page.previous is not None:
        page = read(page.previous)
        backward.append([item(x) for x in page])
    assert backward == forward[::-1]
    # The first page, reached backwards, goes on forwards as it did the first time.
    assert [item(x) for x in read(page.next)] == forward[1]
    return forward


def test_list_pages_walk_forward_then_back_by_previous(store: Any, clock: ManualClock) -> None:
    for n in range(11):
        # Some sessions share an update time: the page boundary falls between them too.
        if n % 3 == 0:
            clock.advance(timedelta(seconds=1))
        store.get_or_create(f"agent:main:s{n}")
    every = [s.id for s in store.list(limit=100)]
    pages = walk_both_ways(lambda cursor: store.list(limit=3, cursor=cursor), lambda s: s.id)
    assert [len(page) for page in pages] == [3, 3, 3, 2]
    assert [session_id for page in pages for session_id in page] == every
    # A next cursor keeps the bare form lists gave before they had a previous.
    assert re.fullmatch(r"\d+\.\d+", store.list(limit=3).next)


def test_search_pages_walk_forward_then_back_by_previous(store: Any, session_id: str) -> None:
    every = [h.seq for h in store.search("lisbon", limit=100)]
    pages = walk_both_ways(
        lambda cursor: store.search("lisbon", limit=5, cursor=cursor), lambda h: h.seq
    )
    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert [seq for page in pages for seq in page] == every


@pytest.mark.parametrize(
    ("call", "cursor"),
    [
        # Each call's cursors, passed to another call.
        ("list", "before:3"),
        ("list", "after:3"),
        ("list", "20"),
        ("search", "1772366400000000.7"),
        ("search", "before:1772366400000000.7"),
        ("search", "after:3"),
        ("history", "1772366400000000.7"),
        ("history", "before:1772366400000000.7"),
        # And things that are no cursor at all.
        ("list", "1772366400000000."),
        ("list", "before:.7"),
        ("list", "1" * 19 + ".7"),
        ("list", 17),
        ("search", "-5"),
        ("search", "1" * 19),
        ("search", ["5"]),
    ],
)
def test_a_cursor_of_another_call_is_refused(
    store: Any, session_id: str, call: str, cursor: object
) -> None:
    arguments = {"list": (), "search": ("lisbon",), "history": (session_id,)}[call]
    with pytest.raises(InvalidInput) as caught:
        getattr(store, call)(*arguments, cursor=cursor)
    assert caught.value.field == "cursor"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cursor": "sideways:3"}, "cursor"),
        ({"cursor": "before:x"}, "cursor"),
        ({"cursor": 12}, "cursor"),
        ({"cursor": "before:3", "before": 5}, "cursor"),
        ({"cursor": "after:3", "last": 5}, "cursor"),
    ],
)
def test_a_cursor_that_is_not_one_is_refused(
    store: Any, session_id: str, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        store.history(session_id, **options)
    assert caught.value.field == field
    with pytest.raises(InvalidInput, match="pages backwards"):
        store.path(session_id, cursor="after:3")
