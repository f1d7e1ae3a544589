"""Results people loop over: pages and contexts iterate and index like their items,
and every page's `next` (and a history page's `previous`) is the one argument that
fetches the page after it."""

from __future__ import annotations

from typing import Any

import pytest

from aisopod_session import InvalidInput
from aisopod_shared import Message
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
