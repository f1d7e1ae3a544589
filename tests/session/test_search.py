"""Full-text search: the query language, filters, ranking, snippets, paging, safety."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aisopod_session import (
    AccessDenied,
    InvalidInput,
    InvalidPayload,
    NewEntry,
    SearchQueryError,
)
from aisopod_shared import ManualClock, Message


@pytest.fixture(name="searchable")
def searchable_fixture(store: Any, clock: ManualClock) -> Any:
    """Two agents' conversations about deploys, coffee and trips."""
    a = store.get_or_create("agent:main:telegram:direct:1")
    store.append(
        a.id,
        [
            Message.user("The deploy to staging failed again"),
            Message.assistant("Let me check the deployment logs for production"),
            Message.tool_result("c1", "ERROR: disk quota exceeded on staging"),
        ],
    )
    clock.advance(days=1)
    b = store.get_or_create("agent:main:slack:channel:c1")
    store.append(
        b.id,
        [
            Message.user("Café au lait, s'il vous plaît"),
            Message.assistant("Ordering coffee for the trip to Lisbon"),
            NewEntry.custom_message("note", "remember the deploy freeze on Friday"),
        ],
    )
    c = store.get_or_create("agent:ops:main")
    store.append(c.id, Message.user("deploy the ops dashboard"))
    return store


def _texts(page: Any, store: Any) -> list[str]:
    out = []
    for hit in page.hits:
        entry = next(e for e in store.history(hit.session_id).entries if e.seq == hit.seq)
        out.append(entry.text)
    return out


def test_words_must_all_match(searchable: Any) -> None:
    page = searchable.search("deploy staging")
    assert _texts(page, searchable) == ["The deploy to staging failed again"]


def test_phrases_prefixes_alternatives_and_exclusions(searchable: Any) -> None:
    store = searchable
    assert _texts(store.search('"deploy to staging"'), store) == [
        "The deploy to staging failed again"
    ]
    assert _texts(store.search('"staging to deploy"'), store) == []
    prefixed = set(_texts(store.search("deplo*"), store))
    assert "Let me check the deployment logs for production" in prefixed
    assert len(prefixed) == 4
    either = set(_texts(store.search("production OR lisbon"), store))
    assert either == {
        "Let me check the deployment logs for production",
        "Ordering coffee for the trip to Lisbon",
    }
    assert "The deploy to staging failed again" not in _texts(
        store.search("deplo* -staging"), store
    )


def test_matching_ignores_case_and_accents(searchable: Any) -> None:
    assert _texts(searchable.search("CAFE plait"), searchable) == ["Café au lait, s'il vous plaît"]


def test_tool_results_and_custom_messages_are_searchable(searchable: Any) -> None:
    assert len(searchable.search("quota").hits) == 1
    assert len(searchable.search("freeze").hits) == 1


def test_filters(searchable: Any, clock: ManualClock) -> None:
    store = searchable
    assert {h.agent_id for h in store.search("deploy").hits} == {"main", "ops"}
    assert {h.agent_id for h in store.search("deploy", agent_id="ops").hits} == {"ops"}
    assert len(store.search("deploy", key_prefix="agent:main:slack:").hits) == 1
    assert [h.role for h in store.search("staging", role="tool").hits] == ["tool"]
    first = store.current("agent:main:telegram:direct:1")
    assert {h.session_id for h in store.search("deploy", session_id=first.id).hits} == {first.id}
    start = clock.now() - timedelta(days=1, hours=1)
    assert len(store.search("deploy", before=start + timedelta(hours=2)).hits) == 1
    assert len(store.search("deploy", after=start + timedelta(hours=2)).hits) == 2


def test_hits_carry_session_seq_and_a_highlighted_snippet(searchable: Any) -> None:
    hit = searchable.search("lisbon").hits[0]
    assert hit.key == "agent:main:slack:channel:c1"
    assert hit.seq == 2
    assert hit.role == "assistant"
    assert "[Lisbon]" in hit.snippet
    custom = searchable.search("lisbon", highlight=("<b>", "</b>")).hits[0]
    assert "<b>Lisbon</b>" in custom.snippet
    with pytest.raises(InvalidInput):
        searchable.search("lisbon", highlight=("a, MaxWords=9", "b"))


def test_better_matches_rank_first(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(
        session.id,
        [
            Message.user("kubernetes is mentioned once in a long line about many other things"),
            Message.user("kubernetes kubernetes kubernetes"),
        ],
    )
    hits = store.search("kubernetes").hits
    assert [h.seq for h in hits] == [2, 1]
    assert hits[0].rank >= hits[1].rank


def test_pages_cover_every_hit_once(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, [Message.user(f"needle number {n}") for n in range(23)])
    seen: list[int] = []
    cursor = None
    while True:
        page = store.search("needle", limit=5, cursor=cursor)
        seen.extend(h.seq for h in page.hits)
        cursor = page.cursor
        if cursor is None:
            break
    assert sorted(seen) == list(range(1, 24))


def test_the_index_moves_with_the_data(store: Any) -> None:
    session = store.get_or_create("agent:main:main")
    store.append(session.id, Message.user("ephemeral marmalade"))
    assert len(store.search("marmalade").hits) == 1
    with pytest.raises(InvalidPayload):
        store.append(session.id, [Message.user("doomed marmalade"), Message.user("bad \x00")])
    assert len(store.search("doomed").hits) == 0
    store.delete(session.id)
    assert store.search("marmalade").hits == ()


@pytest.mark.parametrize(
    "query",
    [
        '"unclosed',
        "OR",
        "a OR",
        "OR b",
        "-only",
        '-"only this"',
        "",
        "   ",
        "!!!",
        "a" * 2000,
        "x OR -y",
        "a OR OR b",
        "pre fix*ed*",
        "nul\x00",
    ],
)
def test_malformed_queries_are_search_query_errors(searchable: Any, query: str) -> None:
    with pytest.raises(SearchQueryError):
        searchable.search(query)


def test_bad_search_arguments(searchable: Any) -> None:
    for kwargs in ({"limit": 0}, {"limit": 1000}, {"cursor": "x"}, {"cursor": "20000"}):
        with pytest.raises(InvalidInput):
            searchable.search("deploy", **kwargs)
    with pytest.raises(SearchQueryError):
        searchable.search(42)


def test_a_scoped_handle_searches_only_its_agent(searchable: Any) -> None:
    ops = searchable.for_agent("ops")
    assert {h.agent_id for h in ops.search("deploy").hits} == {"ops"}
    with pytest.raises(AccessDenied):
        ops.search("deploy", agent_id="main")


words = st.sampled_from(
    [
        "deploy",
        "staging",
        "café",
        "OR",
        "-",
        '"',
        "*",
        "-x",
        "(",
        ")",
        ":",
        "NEAR",
        "AND",
        "NOT",
        "^",
        "'",
        "\\",
        "déploy*",
        "ünï",
        "'; DROP",
    ]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.lists(words, max_size=6).map(" ".join) | st.text(max_size=40))
def test_any_query_is_answered_or_refused_cleanly(searchable: Any, query: str) -> None:
    try:
        page = searchable.search(query)
    except SearchQueryError:
        return
    assert all(hit.session_id for hit in page.hits)
