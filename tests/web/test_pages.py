"""The pages show what the store holds: the list, a conversation read from its
end and paged back, tool calls with their results, the tree, state, usage,
search, the live feed and the transcript."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import orjson

from aisopod_session import Message, SessionStore, TokenUsage
from tests.web.conftest import ClientFactory
from tests.web.hostile import Seeded, audit


def _page(session_id: str, query: str = "") -> str:
    return f"/sessions/{quote(session_id, safe='')}{query}"


def test_the_list_shows_sessions_newest_first_with_filters(
    seeded: Seeded, client: ClientFactory
) -> None:
    web = client()
    _, text = audit(web.get("/").text)
    assert text.index("ops only") < text.index("Release chat")
    _, only_ops = audit(web.get("/", params={"agent": "ops"}).text)
    assert "ops only" in only_ops
    assert "Release chat" not in only_ops
    _, by_prefix = audit(web.get("/", params={"key_prefix": "agent:main:telegram"}).text)
    assert "Release chat" in by_prefix
    assert "ops only" not in by_prefix
    first = web.get("/", params={"limit": "1"})
    older = re.search(r'href="(/\?[^"]*cursor=[^"]*)"', first.text)
    assert older is not None
    _, second = audit(web.get(older.group(1).replace("&amp;", "&")).text)
    assert "agent:main:web" in second
    assert "ops only" not in second


def test_a_session_opens_at_its_end_and_pages_back(seeded: Seeded, client: ClientFactory) -> None:
    web = client()
    response = web.get(_page(seeded.chat, "?view=log"))
    seqs = [int(s) for s in re.findall(r'<article [^>]*id="e(\d+)"', response.text)]
    # 110 messages, a compaction, a message taken back, 4 more: the last 50 entries,
    # less the tool result (115) shown inside its call (114).
    assert seqs == [s for s in range(67, 117) if s != 115]
    earlier = re.search(r'class="earlier" href="\?([^"]*)"', response.text)
    assert earlier is not None
    back = web.get(_page(seeded.chat, "?" + earlier.group(1).replace("&amp;", "&")))
    back_seqs = [int(s) for s in re.findall(r'<article [^>]*id="e(\d+)"', back.text)]
    assert back_seqs[-1] == seqs[0] - 1
    assert 'id="live"' not in back.text  # an earlier page does not follow new entries


def test_tool_calls_are_folded_with_their_results(seeded: Seeded, client: ClientFactory) -> None:
    response = client().get(_page(seeded.chat))
    tool = re.search(r'<details class="tool">(.*?)</details>', response.text, re.S)
    assert tool is not None
    assert "shell" in tool.group(1)
    assert "deploy --prod" in tool.group(1)
    assert "deployed version 7" in tool.group(1)
    assert response.text.count("deployed version 7") == 1  # not again as its own entry


def test_compactions_branches_and_state_are_visible(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    store.update_state(seeded.chat, {"mood": "calm"})
    web = client()
    _, path = audit(web.get(_page(seeded.chat)).text)
    assert "summary of the early questions" in path
    assert "a thought I take back" not in path  # abandoned: off the active path
    response = web.get(_page(seeded.chat, "?view=log"))
    _, log = audit(response.text)
    assert "a thought I take back" in log
    assert "branches from #" in log
    assert response.text.count('<li class="abandoned">') == 1
    assert response.text.count('<li class="active">') == 1
    # The tree links the abandoned branch to its own path, which has no live feed.
    link = re.search(r'<li class="abandoned">\s*<a href="([^"]+)"', response.text)
    assert link is not None
    branch = web.get(_page(seeded.chat, html.unescape(link.group(1))))
    _, branch_text = audit(branch.text)
    assert "a thought I take back" in branch_text
    assert "<strong>Branch to #" in branch.text
    assert 'id="live"' not in branch.text
    assert '"mood": "calm"' in log
    state = re.search(r"<h2>State</h2>.*?<pre>(.*?)</pre>", response.text, re.S)
    assert state is not None
    assert "mood" in state.group(1)
    before = web.get(_page(seeded.chat, "?at=2"))
    state_before = re.search(r"<h2>State at #2</h2>.*?<pre>(.*?)</pre>", before.text, re.S)
    assert state_before is not None
    assert state_before.group(1) == "{}"


def test_live_feed_returns_entries_after_a_seq(
    store: SessionStore, seeded: Seeded, client: ClientFactory
) -> None:
    web = client()
    page = web.get(_page(seeded.chat))
    after = re.search(r'data-after="(\d+)"', page.text)
    assert after is not None
    empty = web.get(_page(seeded.chat, f"/entries?after={after.group(1)}"))
    assert empty.headers["x-last-seq"] == after.group(1)
    assert "<article" not in empty.text
    store.append(seeded.chat, Message.user("a new question"))
    fresh = web.get(_page(seeded.chat, f"/entries?after={after.group(1)}"))
    assert "a new question" in fresh.text
    assert fresh.headers["x-last-seq"] == str(int(after.group(1)) + 1)


def test_the_transcript_is_a_download_not_a_page(seeded: Seeded, client: ClientFactory) -> None:
    response = client().get(_page(seeded.hostile, "/transcript.jsonl"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["content-disposition"].startswith("attachment;")
    lines = [orjson.loads(line) for line in response.text.splitlines()]
    assert lines[0]["type"] == "session"
    assert len(lines) > 10


def test_search_and_usage(store: SessionStore, seeded: Seeded, client: ClientFactory) -> None:
    store.append(seeded.chat, Message.assistant("priced", usage=TokenUsage(input=40, output=2)))
    web = client()
    response = web.get("/search", params={"q": "deploy"})
    assert f'href="/sessions/{quote(seeded.chat, safe="")}?view=log' in response.text
    assert "<mark>" in response.text
    usage = web.get("/usage")
    assert usage.status_code == 200
    assert "<svg" in usage.text
    today = store.clock.now().date().isoformat()
    assert f"<title>main · {today} · 42 tokens · 0.0000</title></rect>" in usage.text
    _, text = audit(usage.text)
    assert "Release chat" in text
    assert "ops" in text


def test_bad_parameters_are_400_and_unknown_sessions_404(
    seeded: Seeded, client: ClientFactory
) -> None:
    web = client()
    assert web.get(_page(seeded.chat, "?before=abc")).status_code == 400
    assert web.get(_page(seeded.chat, "?view=tree")).status_code == 400
    assert web.get("/", params={"status": "gone"}).status_code == 400
    assert web.get("/", params={"updated_after": "yesterday"}).status_code == 400
    assert web.get("/", params={"updated_before": "2026-13-01"}).status_code == 400
    bad_query = web.get("/search", params={"q": '"unclosed'})
    assert bad_query.status_code == 400
    assert "quote" in audit(bad_query.text)[1]
    assert web.get("/sessions/no-such-session").status_code == 404
    assert web.get("/api/sessions/no-such-session").json() == {"error": "not found"}
