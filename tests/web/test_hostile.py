"""Hostile sessions are shown, escaped, on every page: nothing in them becomes
markup, a script, an event handler, a link or an image that is not ours."""

from __future__ import annotations

from urllib.parse import quote

from aisopod_session.web._security import CSP
from aisopod_session.web._views import MAX_SHOWN
from tests.web.conftest import ClientFactory
from tests.web.hostile import CONTROL, HOSTILE_TEXTS, LONG_LINE, OPS_SECRET, Seeded, audit


def _pages(seeded: Seeded) -> list[str]:
    hostile = quote(seeded.hostile, safe="")
    return [
        "/",
        f"/sessions/{hostile}",
        f"/sessions/{hostile}?view=log",
        f"/sessions/{hostile}?at=3",
        f"/sessions/{hostile}/entries?after=0",
        f"/sessions/{hostile}/do/rewind",
        "/search?q=script",
        "/search?q=click",
        "/usage",
    ]


def test_every_page_escapes_hostile_content(seeded: Seeded, client: ClientFactory) -> None:
    web = client(allow_writes=True)
    for page in _pages(seeded):
        response = web.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-security-policy"] == CSP
        problems, _ = audit(response.text)
        assert problems == [], page


def test_the_hostile_session_is_shown_as_text(seeded: Seeded, client: ClientFactory) -> None:
    response = client().get(f"/sessions/{quote(seeded.hostile, safe='')}?view=log")
    _, text = audit(response.text)
    # The compaction kept the last turn; the whole log shows the rest as typed.
    for hostile in HOSTILE_TEXTS:
        assert hostile in text
    # A very long line is cut where a browser would stall; the rest is counted.
    assert LONG_LINE[:MAX_SHOWN] in text
    assert LONG_LINE[: MAX_SHOWN + 1] not in text
    assert f"{len(LONG_LINE) - MAX_SHOWN} more characters" in text
    # Controls and direction overrides are written as code points, never sent raw.
    assert "bell<U+0007> esc<U+001B>[31m del<U+007F> csi<U+009B> end" in text
    assert "invoice<U+202E>gnp.exe and <U+2066>isolated<U+2069>" in text
    assert not any(c in response.text for c in CONTROL if c not in "bel sctdiend[31m")
    assert "\u202e" not in response.text
    # Only the raster image is drawn; the SVG and the forged type are named, not shown.
    assert response.text.count("<img ") == 1
    assert "[image of type image/svg+xml, not shown]" in text
    assert OPS_SECRET not in text


def test_search_snippets_escape_the_matched_text(seeded: Seeded, client: ClientFactory) -> None:
    response = client().get("/search", params={"q": "click"})
    problems, text = audit(response.text)
    assert problems == []
    assert "<mark>click</mark>" in response.text
    # SQLite's snippet keeps the link's markup around the match (PostgreSQL's drops
    # tags); either way it is text.
    assert 'href="javascript:' in text or "click me" in text
